"""The real notebook through real papermill, real vLLM (CPU) and real nbconvert, on the shipped tiny model."""

from __future__ import annotations

import json
import re

import pytest

from conftest import TINY_PARAMS, run_cli
from workbench.core.params import load_params

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def passing_run(tmp_path_factory):
    """The default case at its default size, exactly as `make demo` runs it (issue 10: it must pass on every CPU)."""
    out = tmp_path_factory.mktemp("runs") / "pass"
    result = run_cli("run", str(TINY_PARAMS), "--out", str(out))
    return result, out


def test_default_case_passes_at_default_size_and_leaves_a_full_record(passing_run) -> None:
    result, out = passing_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in ("mtp_correctness.ipynb", "report.html", "summary.json", "params.yaml", "questions.csv",
                 "records/reference.json", "records/speculative.json", "records/prompts.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    defaults = load_params(TINY_PARAMS)
    assert summary["passed"] is True and summary["num_questions"] == defaults.num_questions
    assert summary["output_match"]["total"] == defaults.output_match_prompts
    assert summary["versions"]["vllm"] == "0.32.0"
    spec = summary["speculative"]
    # a trained MTP layer: drafts are made and a good share accepted (random weights give ~0)
    assert spec["counters"]["num_drafts"] > 0
    assert 0.3 < spec["acceptance_rate"] <= 1.0
    assert spec["acceptance_length"] == pytest.approx(1 + spec["acceptance_rate"])  # k = 1


def test_speculative_greedy_output_equals_reference_up_to_near_ties(passing_run) -> None:
    """The shipped model, real weights: MTP must not change greedy output beyond bf16 near-ties (issues 5, 10).

    Every mismatch is classified from both engines' recorded top logprobs; near-ties are re-derived here
    from the records, so the summary's classification is checked against the raw engine output.
    """
    _, out = passing_run
    ref = json.loads((out / "records" / "reference.json").read_text())
    spec = json.loads((out / "records" / "speculative.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    margin = summary["output_match"]["tie_margin"]
    same = ties = 0
    for r, s in zip(ref["output_match"], spec["output_match"]):
        assert len(r["top_logprobs"]) == len(r["token_ids"]) and len(s["top_logprobs"]) == len(s["token_ids"])
        if r["completion"] == s["completion"]:
            same += 1
            continue
        at = next(i for i, (a, b) in enumerate(zip(r["token_ids"], s["token_ids"])) if a != b)
        ref_ids = {e["id"] for e in r["top_logprobs"][at]}
        spec_ids = {e["id"] for e in s["top_logprobs"][at]}
        gap = r["top_logprobs"][at][0]["logprob"] - r["top_logprobs"][at][1]["logprob"]
        ties += s["token_ids"][at] in ref_ids and r["token_ids"][at] in spec_ids and gap <= margin
    total = len(ref["output_match"])
    assert (summary["output_match"]["matched"], summary["output_match"]["near_ties"]["total"]) == (same, ties)
    assert same + ties >= 0.95 * total, f"{same} identical + {ties} near-ties of {total}"
    assert ref["llm_kwargs"].get("load_format") is None  # real weights, not dummy


def test_chat_prompts_control_invalid_rate_and_async_check_on_the_real_model(passing_run) -> None:
    """Issue 13 on the real engine: upstream's chat prompts as vLLM rendered them, the noise floor re-derived
    from the records, invalid rates, and the async-scheduling check skipped (never passed) on CPU."""
    _, out = passing_run
    summary = json.loads((out / "summary.json").read_text())
    prompts = json.loads((out / "records" / "prompts.json").read_text())
    ref = json.loads((out / "records" / "reference.json").read_text())
    spec = json.loads((out / "records" / "speculative.json").read_text())
    match = summary["output_match"]
    assert match["prompt_format"] == prompts["output_match_format"] == "chat"
    for row, r, s in zip(prompts["output_match"], ref["output_match"], spec["output_match"], strict=True):
        # llm.chat's own rendering in the engine is the one written to prompts.json before it started
        assert r["prompt"] == s["prompt"] == row["prompt"]
        assert row["prompt"] == "<|im_start|>user\n" + row["messages"][0]["content"] + \
            "<|im_end|>\n<|im_start|>assistant\n"
    control = ref["output_match_control"]
    differ = {i for i, (a, b) in enumerate(zip(ref["output_match"], control, strict=True))
              if a["completion"] != b["completion"]}
    assert match["control"]["total"] == len(control) == match["total"]
    assert match["control"]["matched"] == match["total"] - len(differ)
    assert match["control"]["batch_size"] == ref["control_batching"]["batch_size"] < match["total"]
    for mismatch in json.loads((out / "output_match.json").read_text())["mismatches"]:
        assert mismatch["in_control"] == (mismatch["prompt_id"] in differ)
    for label, record in (("reference", ref), ("speculative", spec)):
        no_digit = sum(not re.search(r"\d", r["completion"]) for r in record["gsm8k"]) / len(record["gsm8k"])
        assert summary[label]["invalid_rate"]["upstream"] >= no_digit
        assert set(summary[label]["invalid_rate"]) == {"upstream", "strict", "flexible"}
    check = {c["name"]: c for c in summary["checks"]}["async_scheduling"]
    assert spec["device_type"] == "cpu" and spec["async_scheduling"] is False
    assert check["status"] == "skipped" and "CPU" in check["message"]
    html = (out / "report.html").read_text()
    # the match table's control columns, every scorer's invalid rate, and the mismatch table's engine-noise column
    assert "control share" in html and "invalid rate" in html and "also in control" in html


def test_report_is_self_contained_and_hides_code(passing_run) -> None:
    _, out = passing_run
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 4  # accuracy, acceptance, per-position, disagreement
    assert "pipeline.run_engine(" not in html  # input cells hidden
    assert "switched off" in html and "skipped" in html  # threshold 0: accuracy checks shown as skipped
    classes = {m["class"] for m in json.loads((out / "output_match.json").read_text())["mismatches"]}
    assert all(name in html for name in classes)  # the mismatch table names each mismatch's class
    assert "reference top logprobs" in html
    assert not re.search(r"<script[^>]*src=", html)  # opens offline: no web-loaded scripts


def test_each_engines_start_is_broken_down_from_its_own_log(passing_run) -> None:
    """Issue 16 on the real engines: each start by phase, read from vLLM's lines in that engine's own log, adding up
    to its measured start; no compile-cache verdict for eager engines; the report draws it."""
    _, out = passing_run
    summary = json.loads((out / "summary.json").read_text())
    for label in ("reference", "speculative"):
        phases = summary[label]["start_breakdown"]
        assert sum(phases.values()) == pytest.approx(summary[label]["timings"]["init_s"], rel=0.10)
        assert phases["weights_load"] > 0 and phases["profile_kv_cache_warmup"] > 0, phases  # vLLM's own lines
        assert summary[label]["start_cache_hit"] is None  # enforce_eager: nothing compiled
        record = json.loads((out / "records" / f"{label}.json").read_text())
        log = re.sub(r"\x1b\[[0-9;]*m", "", (out / "logs" / f"{label}.log").read_text())
        assert record["start_log"] and all(line in log for line in record["start_log"])
        # on the CPU vLLM's engine core keeps its own process (OpenMP binding needs it): it logs as EngineCore
        assert summary[label]["engine_in_process"] is False and "(EngineCore pid=" in log
    notebook = json.loads((out / "mtp_correctness.ipynb").read_text())
    [cell] = [c for c in notebook["cells"] if "figures.start_breakdown(" in "".join(c["source"])]
    assert any("image/png" in output.get("data", {}) for output in cell["outputs"])


def test_the_real_report_opens_with_its_verdict_and_environment(passing_run, tmp_path) -> None:
    """Issue 17 on the real notebook: verdict first, the environment recorded at run time, numbers for people, no
    stray stderr (the next test opens it in headless Chromium: it loads nothing and logs no error)."""
    _, out = passing_run
    summary = json.loads((out / "summary.json").read_text())
    env = summary["environment"]
    assert env["hardware"]["name"] and env["git_commit"] and env["wall_s"] > 0 and env["started_at"]
    html = (out / "report.html").read_text()
    assert html.index('class="wb-verdict') < html.index("<b>Case</b>")
    assert "Generating test split" not in html and "examples/s" not in html  # datasets' progress bars
    assert not re.search(r">-?\d+\.\d{6,}<", html), "a float printed with six decimals"
    assert ">NaN<" not in html and "carries none" in html  # why few prompts carry per-request counts


def test_the_real_report_in_chromium(passing_run, tmp_path) -> None:
    from cdp import Browser, find_chromium

    _, out = passing_run
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium on this machine (make test installs Debian's chromium where apt-get can)")
    browser = Browser(chromium, tmp_path / "profile")
    try:
        page = browser.page().open((out / "report.html").as_uri())
        page.screenshot(tmp_path / "report.png")
        assert not page.leaving and not page.errors, (page.leaving, page.errors)
        assert page.evaluate("document.body.innerText.trim().split('\\n')[0]").startswith("PASSED")
    finally:
        browser.close()


def test_threshold_099_fails_with_exit_1_and_report_shows_it(tmp_path) -> None:
    out = tmp_path / "fail"
    result = run_cli("run", str(TINY_PARAMS), "-p", "threshold", "0.99", "-p", "num_questions", "4",
                     "-p", "output_match_prompts", "4", "-p", "match_mode", "exact", "--out", str(out))
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "reference_accuracy" in result.stdout and "0.9900" in result.stdout
    html = (out / "report.html").read_text()
    assert "AssertionError" in html and "speculative_accuracy" in html
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is False
    assert {c["name"]: c["status"] for c in summary["checks"]}["reference_accuracy"] == "failed"
    # -p match_mode exact: judged on identical texts only, upstream's count, whatever the near-ties
    match, check = summary["output_match"], {c["name"]: c for c in summary["checks"]}["output_match"]
    assert match["mode"] == "exact" and match["judged_matched"] == match["matched"]
    assert check["observed"] == pytest.approx(match["matched"] / 4) and match["required_matches"] == 4
    assert check["status"] == ("passed" if match["matched"] == 4 else "failed")


def test_engine_failure_exits_3_and_keeps_report(tmp_path) -> None:
    """An engine that cannot start (context longer than the model allows) is an infrastructure error."""
    out = tmp_path / "broken"
    result = run_cli("run", str(TINY_PARAMS), "-p", "num_questions", "2", "-p", "output_match_prompts", "2",
                     "-p", "max_model_len", "999999", "-p", "engine_timeout_s", "600", "--out", str(out))
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is False and "EngineError" in summary["error"]
    assert (out / "report.html").is_file() and (out / "records" / "prompts.json").is_file()


def test_engine_core_in_the_engine_child_on_request(tmp_path) -> None:
    """Issue 16: `engine_in_process true` builds vLLM's engine core inside the engine child (the GPU default), so no
    EngineCore process starts, and the run still generates, drafts, accepts and passes on the real model."""
    out = tmp_path / "inproc"
    result = run_cli("run", str(TINY_PARAMS), "-p", "num_questions", "8", "-p", "engine_in_process", "true",
                     "-p", "reuse_reference", "false", "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    for label in ("reference", "speculative"):
        record = json.loads((out / "records" / f"{label}.json").read_text())
        log = (out / "logs" / f"{label}.log").read_text()
        assert record["engine_in_process"] is True and summary[label]["engine_in_process"] is True
        assert "EngineCore pid=" not in log and record["orphans_killed"] == []
    assert summary["speculative"]["counters"]["num_drafts"] > 0 and summary["speculative"]["acceptance_rate"] > 0.3
