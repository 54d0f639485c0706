"""A sweep's cells: the Cartesian product of `--vary KEY V1,V2,...` over one params file, validated up front.

Every value is read as YAML, like `-p` (`1`, `true`, `null`, `{max_num_batched_tokens: 2048}`); commas inside
brackets or braces do not split values. A cell's name is its varied values (`num_speculative_tokens-2`,
`method-ngram_num_speculative_tokens-3`): it names the cell's run folder. Everything a cell would refuse
(an unknown key, a wrong type, a key the sweep sets itself) is refused before any engine starts (exit 2).
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from workbench.core.errors import BadInputError, ParamsError
from workbench.core.params import CaseParams, load_params, parse_override

SET_BY_THE_SWEEP = ("reference_record", "reference_wait_s", "reuse_reference", "store_reference",
                    "reference_cache_dir")
"""Params keys the sweep sets in each cell to share one reference per key: not for `--vary` or `-p`."""

_UNSAFE = re.compile(r"[^\w.-]+")


class SweepCellSpec(BaseModel):
    """One cell: its name, the values of the varied keys, and the overrides it runs with (`-p` and those values)."""

    name: str
    values: dict[str, Any]
    params_file: Path
    overrides: dict[str, Any]
    tensor_parallel_size: int = 1


def split_values(raw: str) -> list[str]:
    """`V1,V2,...` split at the commas outside brackets, braces and quotes; pieces stripped."""
    pieces, depth, quote, current = [], 0, "", ""
    for char in raw:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            pieces.append(current.strip())
            current = ""
            continue
        current += char
    pieces.append(current.strip())
    return pieces


def parse_vary(pairs: list[tuple[str, str]] | list[list[str]]) -> dict[str, list[Any]]:
    """`--vary KEY V1,V2,...` pairs -> {KEY: [values]}, in the order given; bad input raises (exit 2)."""
    vary: dict[str, list[Any]] = {}
    for key, raw in pairs:
        if key not in CaseParams.model_fields:
            raise ParamsError(f"--vary {key}: unknown params key; known keys: {', '.join(CaseParams.model_fields)}",
                              key=key)
        if key in SET_BY_THE_SWEEP:
            raise ParamsError(f"--vary {key}: set by `workbench sweep` itself (one reference per reference key)",
                              key=key)
        if key in vary:
            raise ParamsError(f"--vary {key}: given twice; list every value once: --vary {key} V1,V2,...", key=key)
        pieces = split_values(raw)
        if not raw.strip() or any(not piece for piece in pieces):
            raise ParamsError(f"--vary {key} {raw!r}: an empty value; give V1,V2,... (a YAML null is `null`)",
                              key=key)
        values = [parse_override(key, piece)[1] for piece in pieces]
        seen = [json.dumps(v, sort_keys=True, default=str) for v in values]
        if len(set(seen)) != len(seen):
            raise ParamsError(f"--vary {key} {raw!r}: a value is listed twice", key=key)
        vary[key] = values
    return vary


def _slug(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    return _UNSAFE.sub("-", text).strip("-") or "empty"


def cell_name(values: dict[str, Any], fallback: str) -> str:
    """The run folder name of a cell: KEY-VALUE joined by `_` (the case's name when nothing varies)."""
    return "_".join(f"{key}-{_slug(value)}" for key, value in values.items()) or fallback


def build_cells(params_file: Path, vary: dict[str, list[Any]], overrides: dict[str, Any]) -> list[SweepCellSpec]:
    """The Cartesian product of the varied values (first key slowest), each cell's params validated."""
    for key in overrides:
        if key in SET_BY_THE_SWEEP:
            raise ParamsError(f"-p {key}: set by `workbench sweep` itself (one reference per reference key)", key=key)
        if key in vary:
            raise ParamsError(f"-p {key}: also varied (--vary {key}); give it one way", key=key)
    cells: list[SweepCellSpec] = []
    for combination in itertools.product(*vary.values()):
        values = dict(zip(vary, combination))
        name = cell_name(values, params_file.stem)
        cell_overrides = {**overrides, **values}
        try:
            params = load_params(params_file, cell_overrides)
        except ParamsError as exc:
            raise ParamsError(f"cell {name}: {exc}", key=exc.key, path=exc.path) from exc
        cells.append(SweepCellSpec(name=name, values=values, params_file=params_file, overrides=cell_overrides,
                                   tensor_parallel_size=params.tensor_parallel_size))
    names = [c.name for c in cells]
    clash = next((n for n in names if names.count(n) > 1), None)
    if clash is not None:
        raise BadInputError(f"--vary: two cells would both be named {clash!r} (values that differ only in "
                            "characters a folder name cannot hold); write the values differently", key="--vary")
    return cells
