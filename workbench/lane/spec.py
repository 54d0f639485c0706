"""A lane file: the cases a CI lane runs, declared in YAML (lm-eval style), validated before anything starts.

    description: upstream's Qwen3.5 lane
    overrides: {num_questions: 200}        # every case (a case's own and -p on the command line win)
    max_parallel_cases: 3                  # cases run at once (those sharing a reference wait for it)
    cases:
      - params: ../params/qwen3_5-hybrid.yaml   # relative to the lane file, or a packaged case name
      - name: ngram-lookup
        params: ../params/qwen3_5-hybrid-ngram-lookup.yaml
        overrides: {num_questions: 100}
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workbench.core.errors import ParamsError
from workbench.core.params import CaseParams
from workbench.core.resources import resolve_case

_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")


class LaneCaseSpec(BaseModel):
    """One case of a lane: a params file (or packaged case) and its overrides."""

    model_config = ConfigDict(extra="forbid")

    params: str
    name: str | None = Field(None, description="the case's name in the lane (default: the params file's stem)")
    overrides: dict[str, Any] = Field(default_factory=dict)


class LaneSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    overrides: dict[str, Any] = Field(default_factory=dict, description="params overrides for every case")
    max_parallel_cases: int = Field(3, ge=1, description="cases run at once")
    cases: list[LaneCaseSpec] = Field(min_length=1)


class LaneCase(BaseModel):
    """A lane case resolved: its name, params file and the overrides it runs with."""

    name: str
    params_file: Path
    overrides: dict[str, Any]


def _resolve_params(value: str, lane_file: Path) -> Path:
    beside = (lane_file.parent / value).resolve()
    return beside if beside.is_file() else resolve_case(value)


def load_lane(path: Path, cli_overrides: dict[str, Any] | None = None) -> tuple[LaneSpec, list[LaneCase]]:
    """Read and validate a lane file; every case's params are validated too (bad input: exit 2, naming it)."""
    from workbench.core.params import load_params

    if not path.is_file():
        raise ParamsError(f"{path}: lane file not found", path=path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec = LaneSpec.model_validate(data)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}", path=path) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ParamsError(f"{path}: key {where!r}: {first['msg']}", key=where, path=path) from exc
    cases: list[LaneCase] = []
    for index, entry in enumerate(spec.cases):
        try:
            params_file = _resolve_params(entry.params, path)
        except ParamsError as exc:
            raise ParamsError(f"{path}: cases[{index}].params: {exc}", key=f"cases[{index}].params", path=path) from exc
        name = entry.name or params_file.stem
        if not _NAME.match(name):
            raise ParamsError(f"{path}: cases[{index}].name {name!r}: letters, digits, '.', '_' and '-' only "
                              "(it names the case's run folder)", key=f"cases[{index}].name", path=path)
        overrides = {**spec.overrides, **entry.overrides, **(cli_overrides or {})}
        unknown = sorted(set(overrides) - set(CaseParams.model_fields))
        if unknown:
            raise ParamsError(f"{path}: cases[{index}] ({name}): unknown params key {unknown[0]!r}",
                              key=unknown[0], path=path)
        load_params(params_file, overrides)
        cases.append(LaneCase(name=name, params_file=params_file, overrides=overrides))
    seen: set[str] = set()
    for case in cases:
        if case.name in seen:
            raise ParamsError(f"{path}: two cases are named {case.name!r}; give one a `name:`", key="cases", path=path)
        seen.add(case.name)
    return spec, cases
