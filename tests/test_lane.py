"""Lanes (several cases, one reference engine per reference key) and the reference cache (issue 15)."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY_PARAMS, recorded_context, run_cli

SMALL = {"num_questions": 8, "output_match_prompts": 10}


def _lane_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lane.yaml"
    path.write_text(text)
    return path


def _key(overrides: dict | None = None, params: Path = TINY_PARAMS):
    from workbench.correctness.pipeline import case_reference_key

    return case_reference_key(params, {**SMALL, **(overrides or {})})


# ------------------------------------------------------------------ the reference key


def test_the_reference_key_changes_with_what_decides_the_reference_and_only_with_that(tmp_path, monkeypatch) -> None:
    from workbench.core import fingerprint

    base = _key().digest()
    assert _key({"num_speculative_tokens": 3, "min_acceptance_length": 2.0}).digest() == base  # speculative only
    assert _key({"max_model_len": 1024}).digest() != base  # an engine argument
    assert _key({"num_questions": 9}).digest() != base  # the prompts
    assert _key({"output_match_max_tokens": 12}).digest() != base  # the sampling
    assert _key({"workload": "churn"}).digest() != base
    assert _key({"engine_in_process": True}).digest() != base  # where the engine core runs: how batches form
    assert _key({"cache_dir": str(tmp_path / "compile")}).digest() == base  # caches change start times only
    # a changed model file: the same params pointing at a copy whose weights differ by one byte
    model = tmp_path / "model"
    shutil.copytree(REPO / "models" / "tiny-qwen3_5-mtp", model)
    params = tmp_path / "params.yaml"
    params.write_text(TINY_PARAMS.read_text().replace("model: ../models/tiny-qwen3_5-mtp", f"model: {model}"))
    assert _key(params=params).digest() == base  # same files, another folder: the same reference
    weights = next(model.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert _key(params=params).digest() != base
    # another vLLM, another machine
    real_versions = fingerprint.engine_versions()
    monkeypatch.setattr("workbench.correctness.reference_cache.engine_versions",
                        lambda: {**real_versions, "vllm": "0.0.1"})
    assert _key().digest() != base
    monkeypatch.undo()
    monkeypatch.setattr("workbench.correctness.reference_cache.hardware",
                        lambda: fingerprint.Hardware(device="cuda", name="NVIDIA B200 x1"))
    assert _key().digest() != base


# ------------------------------------------------------------------ the reference cache


def _finished_reference(recorded: dict, tmp_path: Path, **overrides):
    """A run folder whose reference finished (the recorded one), stored in the cache by the pipeline's own step."""
    from workbench.correctness import pipeline

    ctx = recorded_context(recorded, tmp_path / "first", **overrides)
    # recorded elsewhere: the engine arguments as this checkout's reference engine would get them
    reference = {**recorded["reference"], "llm_kwargs": pipeline.llm_kwargs(ctx.params, "reference")}
    (ctx.run_dir / "records" / "reference.json").write_text(json.dumps(reference))
    pipeline._store_reference(ctx)
    return ctx


def test_a_stored_reference_is_reused_by_a_run_with_the_same_key_only(recorded, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_REFERENCE_CACHE", str(tmp_path / "cache"))
    first = _finished_reference(recorded, tmp_path)
    stored = Path(first.reference_source.stored)
    assert stored.is_file() and stored.is_relative_to(tmp_path / "cache")
    second = recorded_context(recorded, tmp_path / "second", reuse_reference=True)
    assert second.reused_reference is not None
    assert second.reference_source.kind == "cache" and second.reference_source.record == str(stored)
    assert second.reference_source.run_dir == str(first.run_dir)
    assert json.loads((second.run_dir / "records" / "reference.json").read_text())["gsm8k"][0]["completion"] == \
        recorded["reference"]["gsm8k"][0]["completion"]
    # without --reuse-reference, or with another prompt set, the reference engine runs again
    assert recorded_context(recorded, tmp_path / "third").reused_reference is None
    other = recorded_context(recorded, tmp_path / "fourth", reuse_reference=True, output_match_prompts=9)
    assert other.reused_reference is None and other.reference_source.kind == "computed"


def test_the_summary_names_where_the_reference_came_from(recorded, tmp_path, monkeypatch) -> None:
    from workbench.correctness import pipeline
    from workbench.records import load_summary

    monkeypatch.setenv("WORKBENCH_REFERENCE_CACHE", str(tmp_path / "cache"))
    _finished_reference(recorded, tmp_path)
    ctx = recorded_context(recorded, tmp_path / "reusing", reuse_reference=True)
    table = pipeline.score(ctx, recorded["reference"], recorded["speculative"])
    match = pipeline.compare_outputs(ctx, recorded["reference"], recorded["speculative"])
    pipeline.build_summary(ctx, recorded["reference"], recorded["speculative"], table, match,
                           pipeline.acceptance(recorded["speculative"]))
    source = load_summary(ctx.run_dir).reference_source
    assert source.kind == "cache" and source.run_dir == str(tmp_path / "first")


def test_a_follower_waits_for_the_shared_reference_and_gives_up_after_reference_wait_s(recorded, tmp_path) -> None:
    from workbench.core.errors import EngineError
    from workbench.correctness import pipeline

    pending = tmp_path / "entry" / "records" / "reference.json"
    ctx = recorded_context(recorded, tmp_path / "follower", reference_record=str(pending), reference_wait_s=1.5)
    assert ctx.pending_reference == pending and ctx.reference_source.kind == "lane"
    started = time.monotonic()
    with pytest.raises(EngineError, match="did not appear within reference_wait_s"):
        pipeline.wait_for_reference(ctx)
    assert 1.4 < time.monotonic() - started < 10


# ------------------------------------------------------------------ lane files and plans


def test_bad_lane_files_are_refused_before_anything_starts(tmp_path, capsys) -> None:
    from workbench.cli import main

    cases = {
        "cases: []": "cases",
        "cases:\n  - params: nowhere.yaml": "cases[0].params",
        f"cases:\n  - params: {TINY_PARAMS}\n    overrides: {{num_questionz: 3}}": "num_questionz",
        f"cases:\n  - params: {TINY_PARAMS}\n  - params: {TINY_PARAMS}": "two cases are named",
        f"cases:\n  - params: {TINY_PARAMS}\n    name: 'a b'": "cases[0].name",
        f"colour: red\ncases:\n  - params: {TINY_PARAMS}": "colour",
    }
    for text, expected in cases.items():
        lane = _lane_file(tmp_path, text)
        out = tmp_path / "out"
        assert main(["lane", str(lane), "--out", str(out)]) == 2, text
        err = capsys.readouterr().err
        assert expected in err and str(lane) in err and "Traceback" not in err
        assert not out.exists(), "nothing is created for a lane that is refused"


def test_cases_sharing_a_reference_key_get_one_leader_and_a_cached_key_none(tmp_path, monkeypatch) -> None:
    from workbench.lane.runner import plan_lane
    from workbench.lane.spec import load_lane

    monkeypatch.setenv("WORKBENCH_REFERENCE_CACHE", str(tmp_path / "cache"))
    lane = _lane_file(tmp_path, f"""
overrides: {json.dumps(SMALL)}
cases:
  - {{params: {TINY_PARAMS}, name: k1}}
  - {{params: {TINY_PARAMS}, name: k3, overrides: {{num_speculative_tokens: 3}}}}
  - {{params: {TINY_PARAMS}, name: other-prompts, overrides: {{num_questions: 9}}}}
""")
    _, cases = load_lane(lane)
    plan = plan_lane(cases, reuse=True, lane_cache=tmp_path / "lane-cache")
    roles = {c.case.name: c.role for c in plan.cases}
    assert roles == {"k1": "leader", "k3": "follower", "other-prompts": "leader"} and plan.keys == 2
    follower = next(c for c in plan.cases if c.role == "follower")
    assert follower.leader == "k1" and follower.overrides["reference_wait_s"] > 0
    assert follower.overrides["reference_record"] == str(plan.cases[0].record)
    # once k1's key is in the cache, both of its cases reuse it and start no reference engine
    entry = plan.cases[0].record.parent.parent
    (entry / "records").mkdir(parents=True)
    plan.cases[0].record.write_text("{}")
    again = plan_lane(cases, reuse=True, lane_cache=tmp_path / "lane-cache")
    assert [c.role for c in again.cases] == ["cached", "cached", "leader"]
    # --no-reuse: the shared cache is not read; the lane's leaders store into the lane's own cache
    fresh = plan_lane(cases, reuse=False, lane_cache=tmp_path / "lane-cache")
    assert [c.role for c in fresh.cases] == ["leader", "follower", "leader"]
    assert fresh.cases[0].overrides["reference_cache_dir"] == str(tmp_path / "lane-cache")


def test_a_leader_that_ends_without_a_reference_stops_its_followers(tmp_path, monkeypatch) -> None:
    """Run by the lane's own loop, with stand-in commands: the leader fails at once, the follower would wait."""
    from workbench.lane import runner
    from workbench.lane.spec import load_lane

    monkeypatch.setenv("WORKBENCH_REFERENCE_CACHE", str(tmp_path / "cache"))
    lane = _lane_file(tmp_path, f"""
overrides: {json.dumps(SMALL)}
cases:
  - {{params: {TINY_PARAMS}, name: leader}}
  - {{params: {TINY_PARAMS}, name: follower, overrides: {{num_speculative_tokens: 3}}}}
""")
    _, cases = load_lane(lane)
    scripts = {"leader": "import sys; sys.exit(3)",
               "follower": "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(4))\n"
                           "time.sleep(120)"}
    monkeypatch.setattr(runner, "_command", lambda planned, run_dir: [sys.executable, "-c", scripts[planned.case.name]])
    started = time.monotonic()
    summary = runner.run_lane(lane, "", cases, tmp_path / "out", echo=lambda line: None)
    assert time.monotonic() - started < 30, "the follower is stopped, not left waiting"
    outcome = {c.name: c for c in summary.cases}
    assert outcome["leader"].exit_code == 3
    assert outcome["follower"].exit_code == 3 and "leader" in outcome["follower"].error
    assert summary.exit_code == 3 and not summary.passed
    assert json.loads((tmp_path / "out" / "lane.json").read_text())["exit_code"] == 3


def test_the_lane_exit_code_is_the_worst_case() -> None:
    from workbench.lane.runner import lane_exit_code

    assert lane_exit_code([0, 0], False) == 0
    assert lane_exit_code([0, 1], False) == 1
    assert lane_exit_code([1, 3, 0], False) == 3
    assert lane_exit_code([3, 1], False) == 3
    assert lane_exit_code([0, 0], True) == 4


def test_the_lane_report_escapes_what_came_from_lane_files(tmp_path) -> None:
    from workbench.lane.report import write_report
    from workbench.records import LaneCaseOutcome, LaneSummary

    summary = LaneSummary(lane="x.yaml", description="<script>alert(1)</script>", reference_runs=1, reference_keys=1,
                          cases=[LaneCaseOutcome(name="c1", params="p", run_dir=str(tmp_path / "c1"), exit_code=1,
                                                 passed=False, error="<img src=x onerror=alert(2)>")], exit_code=1)
    page = write_report(summary, tmp_path).read_text()
    assert "<script>alert" not in page and "&lt;script&gt;" in page and "<img src=x" not in page
    assert page.index("FAILED") < page.index("<h1>"), "the verdict comes first"
    assert 'href="c1/report.html"' in page and "http" not in page.replace("http-equiv", "")


# ------------------------------------------------------------------ the real tiny model


@pytest.mark.vllm
def test_the_tiny_cpu_lane_starts_one_reference_engine_and_a_rerun_none(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_REFERENCE_CACHE", str(tmp_path / "cache"))
    lean = ["-p", "num_questions", "10", "-p", "output_match_prompts", "8", "-p", "required_match_share", "0.5"]
    first = run_cli("lane", "lanes/tiny-cpu.yaml", *lean, "--out", str(tmp_path / "first"),
                    "--junit-xml", str(tmp_path / "first.xml"))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    lane = json.loads((tmp_path / "first" / "lane.json").read_text())
    assert lane["reference_runs"] == 1 and lane["reference_keys"] == 1 and len(lane["cases"]) == 2
    k1, k3 = (tmp_path / "first" / c["name"] for c in lane["cases"])
    assert (k1 / "logs" / "reference.log").exists() and not (k3 / "logs" / "reference.log").exists()
    # the follower compared against the very completions the leader's engine produced
    leader_ref = json.loads((k1 / "records" / "reference.json").read_text())
    follower_ref = json.loads((k3 / "records" / "reference.json").read_text())
    assert [r["token_ids"] for r in follower_ref["output_match"]] == [r["token_ids"] for r in leader_ref["output_match"]]
    assert json.loads((k3 / "summary.json").read_text())["reference_source"]["kind"] == "lane"
    assert json.loads((k3 / "summary.json").read_text())["params"]["num_speculative_tokens"] == 3
    # the lane's JUnit file: a testsuite per case, a testcase per check with its verdict
    from junitparser import Failure, JUnitXml, Skipped

    from workbench.records import load_summary

    suites = {suite.name: suite for suite in JUnitXml.fromfile(str(tmp_path / "first.xml"))}
    assert set(suites) == {"tiny-mtp-k1", "tiny-mtp-k3"}
    for name, suite in suites.items():
        summary = load_summary(tmp_path / "first" / name)
        cases = {case.name: case for case in suite}
        assert list(cases) == [c.name for c in summary.checks] and summary.checks
        for check in summary.checks:
            kinds = [type(r) for r in cases[check.name].result]
            assert kinds == {"passed": [], "failed": [Failure], "skipped": [Skipped]}[check.status], check
    page = (tmp_path / "first" / "report.html").read_text()
    assert "tiny-mtp-k1/report.html" in page and "tiny-mtp-k3/report.html" in page
    # the same lane again: the cached reference serves both cases, no reference engine starts
    second = run_cli("lane", "lanes/tiny-cpu.yaml", *lean, "--out", str(tmp_path / "second"))
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    lane = json.loads((tmp_path / "second" / "lane.json").read_text())
    assert lane["reference_runs"] == 0 and lane["reused_from_cache"] == 2


@pytest.mark.parametrize("lane_file", sorted((REPO / "lanes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_lane_loads_with_its_cases_params(lane_file: Path) -> None:
    from workbench.core.params import load_params
    from workbench.lane.spec import load_lane

    _, cases = load_lane(lane_file, {})
    assert len(cases) >= 2 and len({case.name for case in cases}) == len(cases)
    for case in cases:
        params = load_params(case.params_file, case.overrides)
        assert params.num_speculative_tokens >= 1, case.name
