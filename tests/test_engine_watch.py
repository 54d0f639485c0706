"""The parent's watch over an engine child, with stand-in children (no vLLM): how a stuck start is ended."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from workbench.core import engine
from workbench.core.errors import EngineError


@dataclass
class StandInJob:
    label: str
    record_path: str
    log_path: str
    message: str


def stuck_after_logging(job: StandInJob) -> None:
    """A child that logs as vLLM does when its core fails to start, then never ends (as on the H100 pair)."""
    with open(job.log_path, "a", encoding="utf-8") as log:
        log.write(job.message + "\n")
    time.sleep(600)


def _watch(tmp_path: Path, message: str, monkeypatch, timeout_s: float) -> tuple[object, float]:
    monkeypatch.setattr(engine, "DEATH_GRACE_S", 1.0)
    log = tmp_path / "reference.log"
    log.write_text("(EngineCore pid=1) ERROR [core.py:1330] EngineCore failed to start.\n")  # an earlier run's
    job = StandInJob("reference", str(tmp_path / "reference.json"), str(log), message)
    running = engine.start_engine_job(job, stuck_after_logging)
    started = time.perf_counter()
    result = engine.wait_engine_jobs([running], timeout_s=timeout_s, stall_s=None)[0]
    assert not running.process.is_alive() and not running.tree.alive()
    return result, time.perf_counter() - started


def test_a_start_vllm_reports_failed_ends_in_seconds_not_at_the_stall_timeout(tmp_path, monkeypatch) -> None:
    result, waited = _watch(tmp_path, "(EngineCore pid=7) ERROR [core.py:1330] EngineCore failed to start.",
                            monkeypatch, timeout_s=60.0)
    assert isinstance(result, EngineError), result
    assert "EngineCore failed to start" in str(result) and "reference engine died" in str(result)
    assert waited < 20.0, f"stopped after {waited:.0f} s, expected the 1 s grace, not the 60 s timeout"


def test_an_earlier_runs_start_failure_in_the_same_log_is_not_this_engines(tmp_path, monkeypatch) -> None:
    result, waited = _watch(tmp_path, "(EngineCore pid=7) INFO still loading", monkeypatch, timeout_s=5.0)
    assert isinstance(result, EngineError) and "timed out" in str(result), result
    assert waited >= 4.5
