"""A built wheel carries the notebooks, the params cases and the model, and runs the demo by case name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO

pytestmark = pytest.mark.vllm


def test_wheel_runs_the_default_case_by_name_from_another_folder(tmp_path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(REPO),
                    "-w", str(wheels)], check=True, capture_output=True, text=True, timeout=600)
    wheel = next(wheels.glob("mtp_workbench-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:  # a wheel is its own install layout
        names = set(archive.namelist())
        archive.extractall(site)
    for needed in ("workbench/resources/notebooks/mtp_correctness.ipynb", "workbench/resources/params/tiny-qwen3_5-cpu.yaml",
                   "workbench/resources/models/tiny-qwen3_5-mtp/model.safetensors",
                   "workbench/data/gsm8k/test.jsonl", "workbench/templates/workbench_report/index.html.j2"):
        assert needed in names, needed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}  # the unpacked wheel, not the checkout, provides `workbench`
    where = subprocess.run([sys.executable, "-c", "import workbench; print(workbench.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where
    result = subprocess.run([sys.executable, "-m", "workbench.cli", "run", "tiny-qwen3_5-cpu", "-p", "num_questions", "3",
                             "-p", "output_match_prompts", "4", "-p", "min_acceptance_length", "null"],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dirs = list((elsewhere / "results").glob("tiny-qwen3_5-cpu-*"))
    assert len(run_dirs) == 1, "the run folder goes under ./results of the folder the command runs in"
    summary = json.loads((run_dirs[0] / "summary.json").read_text())
    assert summary["passed"] is True and summary["params"]["model"].startswith(str(site))
