"""Shared fixtures. Tests marked `vllm` start real vLLM engines on the CPU (minutes each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RECORDED = Path(__file__).resolve().parent / "data" / "recorded_run"
TINY_PARAMS = REPO / "params" / "tiny-qwen3_5-cpu.yaml"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a hub
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WORKBENCH_CI_OUTPUTS", "off")  # the tests' runs never annotate the CI job running the suite
# the tests' finished references go to a cache of their own, never the user's ~/.cache (a test that reuses one
# points at its own folder)
os.environ.setdefault("WORKBENCH_REFERENCE_CACHE", tempfile.mkdtemp(prefix="workbench-reference-cache-"))


def load_recorded() -> dict:
    """Engine records replayed from a real run of the tiny model (8 questions, 10 match prompts)."""
    return {name: json.loads((RECORDED / f"{name}.json").read_text()) for name in ("reference", "speculative", "prompts")}


@pytest.fixture
def recorded() -> dict:
    """Engine records replayed from a real run of the tiny model (8 questions, 10 match prompts)."""
    return load_recorded()


def run_cli(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    """Run `workbench ...` exactly as a user would, in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def recorded_context(recorded: dict, run_dir: Path, params_file: Path = TINY_PARAMS, **overrides):
    """A correctness run context of the recorded run's size (8 questions, 10 match prompts), its records
    carrying the question ids as `run_engines` attaches them."""
    from workbench.correctness import pipeline

    # the recorded run is of the first stand-in (acceptance length 1.62): its gate was 1.59
    ctx = pipeline.prepare(params_file, {"num_questions": 8, "output_match_prompts": 10, "min_acceptance_length": 1.59,
                                         **overrides}, run_dir)
    for label in ("reference", "speculative"):
        for row, question in zip(recorded[label]["gsm8k"], ctx.questions):
            row["question_id"] = question.question_id
    return ctx


def finish_recorded_run(recorded: dict, run_dir: Path, params_file: Path = TINY_PARAMS, speculative: dict | None = None,
                        **overrides) -> Path:
    """A correctness run folder built by the real stages from recorded engine outputs (`speculative`: another
    speculative record in place of the recorded one)."""
    from workbench.correctness import pipeline

    ctx = recorded_context(recorded, run_dir, params_file, **overrides)
    spec = speculative if speculative is not None else recorded["speculative"]
    table = pipeline.score(ctx, recorded["reference"], spec)
    match = pipeline.compare_outputs(ctx, recorded["reference"], spec)
    pipeline.build_summary(ctx, recorded["reference"], spec, table, match, pipeline.acceptance(spec))
    return ctx.run_dir


@pytest.fixture
def finished_run(tmp_path, recorded) -> Path:
    """A correctness run folder built by the real stages from the recorded engine outputs (no engine)."""
    return finish_recorded_run(recorded, tmp_path / "run")
