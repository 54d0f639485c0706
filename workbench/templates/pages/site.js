/* Sorting (click a column) and filtering (case, verdict) of the site's tables. Inline: nothing is loaded. */
(function () {
  "use strict";
  function key(row, index) {
    var cell = row.cells[index];
    if (!cell) { return ""; }
    return cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
  }
  function compare(x, y) {
    var nx = parseFloat(x), ny = parseFloat(y);
    var numeric = x !== "" && y !== "" && !isNaN(nx) && !isNaN(ny) && isFinite(x) && isFinite(y);
    if (numeric) { return nx - ny; }
    if (x === "" || y === "") { return x === y ? 0 : (x === "" ? 1 : -1); }
    return x.localeCompare(y);
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var headers = table.tHead ? table.tHead.rows[table.tHead.rows.length - 1].cells : [];
    Array.prototype.forEach.call(headers, function (th, index) {
      th.addEventListener("click", function () {
        var direction = th.getAttribute("data-dir") === "asc" ? "desc" : "asc";
        Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("data-dir"); });
        th.setAttribute("data-dir", direction);
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var order = compare(key(a, index), key(b, index));
          return direction === "asc" ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  var byCase = document.getElementById("filter-case");
  var byVerdict = document.getElementById("filter-verdict");
  var table = document.getElementById("runs");
  if (!byCase || !byVerdict || !table) { return; }
  function apply() {
    var rows = table.tBodies[0].rows, shown = 0;
    Array.prototype.forEach.call(rows, function (row) {
      var hide = (byCase.value && row.getAttribute("data-case") !== byCase.value) ||
                 (byVerdict.value && row.getAttribute("data-verdict") !== byVerdict.value);
      row.hidden = Boolean(hide);
      if (!hide) { shown += 1; }
    });
    document.getElementById("shown").textContent = shown + " of " + rows.length + " runs shown";
  }
  byCase.addEventListener("change", apply);
  byVerdict.addEventListener("change", apply);
  apply();
}());
