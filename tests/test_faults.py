"""Faults, cancels and bad input (issue 12): each ends quickly, cleanly and truthfully, with nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import REPO, TINY_PARAMS, run_cli
from workbench.core.case_header import case_header
from workbench.core.errors import BadInputError, RunFolderError
from workbench.core.params import load_params
from workbench.core.processes import ProcessTree, command_line
from workbench.core.rundir import RunFolderLock, claim_run_folder, new_run_dir

SMALL = ["-p", "num_questions", "40", "-p", "output_match_prompts", "4"]


# ------------------------------------------------------------------ bad input: exit 2 before any engine


@pytest.mark.parametrize("override, key", [
    (["-p", "method", "foo"], "'method'"),
    (["-p", "max_model_len", "256"], "'max_model_len'"),
    (["-p", "engine_kwargs", "{no_such_engine_arg: 1}"], "'engine_kwargs.no_such_engine_arg'"),
    (["-p", "dataset", "/nowhere/gsm8k"], "'dataset'"),
    (["-p", "output_match_prompts", "3000"], "'output_match_prompts'"),
    (["-p", "threshold", "0", "-p", "min_acceptance_length", "null", "-p", "output_match_prompts", "0"],
     "every check is switched off"),
])
def test_bad_input_is_refused_before_any_engine(tmp_path, override, key) -> None:
    started = time.perf_counter()
    result = run_cli("run", str(TINY_PARAMS), *override, "--out", str(tmp_path / "run"))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert key in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists(), "nothing may start, not even the run folder"
    assert time.perf_counter() - started < 60


def test_allow_no_checks_gets_past_the_refusal(tmp_path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    lock = RunFolderLock(folder)  # a run holds the folder: the command stops there, after the params checks
    try:
        result = run_cli("run", str(TINY_PARAMS), "-p", "threshold", "0", "-p", "min_acceptance_length", "null",
                         "-p", "output_match_prompts", "0", "--allow-no-checks", "--out", str(folder))
    finally:
        lock.release()
    assert result.returncode == 2 and "another run is writing" in result.stderr, result.stderr


def test_a_model_path_relative_to_the_current_folder_is_local(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    params = load_params(TINY_PARAMS, {"model": "models/tiny-qwen3_5-mtp"})
    assert Path(params.model).is_dir() and Path(params.model).is_absolute()  # never sent to a hub as an id


# ------------------------------------------------------------------ run folders are exclusive


def test_new_run_folders_never_collide(tmp_path) -> None:
    folders = {new_run_dir(TINY_PARAMS, tmp_path) for _ in range(5)}  # same second
    assert len(folders) == 5 and all(f.is_dir() for f in folders)


def test_a_second_run_into_a_locked_folder_is_refused(tmp_path) -> None:
    folder, lock = claim_run_folder(tmp_path / "run", TINY_PARAMS)
    try:
        with pytest.raises(BadInputError, match="another run is writing"):
            claim_run_folder(folder, TINY_PARAMS, force=True)
        result = run_cli("run", str(TINY_PARAMS), "--out", str(folder))
        assert result.returncode == 2 and "another run is writing" in result.stderr
    finally:
        lock.release()


def test_a_finished_folder_is_refused_unless_forced_and_force_clears_it(tmp_path) -> None:
    folder = tmp_path / "run"
    (folder / "records").mkdir(parents=True)
    (folder / "summary.json").write_text('{"passed": true}')
    (folder / "records" / "reference.json").write_text("{}")
    with pytest.raises(BadInputError, match="already holds a run .*--force"):
        claim_run_folder(folder, TINY_PARAMS)
    assert (folder / "summary.json").exists()  # refused: nothing touched
    claimed, lock = claim_run_folder(folder, TINY_PARAMS, force=True)
    lock.release()
    assert claimed == folder.resolve() and not any(folder.iterdir()), "stale records and an old 'passed' are gone"


def test_out_that_is_a_file_is_bad_input_and_an_unwritable_one_an_error(tmp_path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    result = run_cli("run", str(TINY_PARAMS), "--out", str(target))
    assert result.returncode == 2 and "not a folder" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(RunFolderError):
        claim_run_folder(Path("/proc/workbench-cannot-write-here"), TINY_PARAMS)
    result = run_cli("run", str(TINY_PARAMS), "--out", "/proc/workbench-cannot-write-here")
    assert result.returncode == 3 and "cannot create the run folder" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------ report safety


def test_case_header_escapes_params_text() -> None:
    html = case_header("c<x>", "<img src=x onerror=alert(1)>", [("source", "<script>alert(2)</script>")])
    assert "<img" not in html and "<script>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;script&gt;" in html


# ------------------------------------------------------------------ faults that need the real engine


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _engine_cores(tree: ProcessTree, label: str) -> list[psutil.Process]:
    """The EngineCore processes of one engine (its child carries the engine's label in its environment)."""
    cores = []
    for process in tree.alive():
        try:
            if "EngineCore" in command_line(process) and \
                    psutil.Process(process.ppid()).environ().get("WORKBENCH_ENGINE") == label:
                cores.append(process)
        except (psutil.Error, OSError):
            continue
    return cores


@pytest.fixture
def start():
    """Start `workbench run` as a user would, remembering every process below it; stop leftovers afterwards."""
    started: list[tuple[subprocess.Popen, ProcessTree]] = []

    def launch(out: Path, *extra: str) -> tuple[subprocess.Popen, ProcessTree]:
        command = subprocess.Popen([sys.executable, "-m", "workbench.cli", "run", str(TINY_PARAMS), *SMALL, *extra,
                                    "--out", str(out)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        started.append((command, ProcessTree(command.pid)))
        return started[-1]

    yield launch
    for command, tree in started:
        if command.poll() is None:
            command.kill()
        tree.kill()
        tree.stop()


@pytest.mark.vllm
@pytest.mark.parametrize("sig, code_name", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")])
def test_a_cancel_stops_every_process_and_says_cancelled(tmp_path, start, sig, code_name) -> None:
    out = tmp_path / "run"
    command, tree = start(out, "-p", "description", "<img src=x onerror=alert(1)>")
    _wait_for(lambda: _engine_cores(tree, "reference") and _engine_cores(tree, "speculative"), 180, "both engines")
    sent = time.time()
    command.send_signal(sig)
    stdout, stderr = command.communicate(timeout=60)
    assert command.returncode == 4, stdout[-2000:] + stderr[-2000:]
    assert time.time() - sent < 15, "a cancel must end the run within 15 s"
    assert "Traceback" not in stderr and "CANCELLED" in stderr
    assert not tree.alive(), f"no process of the run may outlive the command: {tree.alive()}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "cancelled" and summary["passed"] is False and code_name in summary["error"]
    html = (out / "report.html").read_text()
    assert "CANCELLED" in html and (out / "records" / "prompts.json").is_file()  # what finished is kept
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html  # params text escaped


@pytest.mark.vllm
def test_a_killed_engine_core_is_reported_as_engine_died(tmp_path, start) -> None:
    out = tmp_path / "run"
    # one engine after the other: the reference has finished when the speculative engine's core is killed
    command, tree = start(out, "-p", "num_questions", "100", "-p", "parallel_engines", "false")
    core = _wait_for(lambda: _engine_cores(tree, "speculative"), 300, "the speculative EngineCore")[0]
    _wait_for(lambda: (out / "logs" / "speculative.log").exists() and
              "Avg prompt throughput" in (out / "logs" / "speculative.log").read_text(), 300, "generation")
    core.kill()
    killed = time.time()
    stdout, stderr = command.communicate(timeout=300)
    assert command.returncode == 3, stdout[-2000:] + stderr[-2000:]
    assert time.time() - killed < 60
    assert "engine died" in stderr and "Traceback" not in stderr.split("[workbench] ERROR")[-1].splitlines()[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "error" and "speculative engine died" in summary["error"]
    assert (out / "records" / "reference.json").is_file(), "the finished reference engine's record stays"
    assert "ERROR" in (out / "report.html").read_text()
    assert not tree.alive()


@pytest.mark.vllm
def test_a_killed_kernel_is_an_error_with_nothing_left_behind(tmp_path, start) -> None:
    out = tmp_path / "run"
    command, tree = start(out)
    _wait_for(lambda: _engine_cores(tree, "reference"), 180, "the engines")
    kernel = next(p for p in psutil.Process(command.pid).children(recursive=True) if "ipykernel" in " ".join(p.cmdline()))
    kernel.kill()
    stdout, stderr = command.communicate(timeout=120)
    assert command.returncode == 3, stdout[-2000:] + stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "error" and "Dead" in summary["error"]
    assert "ERROR" in (out / "report.html").read_text()
    assert not tree.alive(), "engines of a dead kernel are stopped too"


# ------------------------------------------------------------------ calibrate on broken run folders


@pytest.mark.parametrize("damage, message", [
    (lambda run: (run / "questions.csv").write_text(""), "questions.csv: empty"),
    (lambda run: (run / "summary.json").write_text('{"reference": 3}'), "not a RunSummary"),
    (lambda run: (run / "summary.json").write_text(
        json.dumps({**json.loads((run / "summary.json").read_text()), "error": "EngineError: boom"})),
     "ended in an error"),
])
def test_calibrate_refuses_a_broken_run_folder_with_exit_2(finished_run, tmp_path, capsys, damage, message) -> None:
    from workbench.cli import main

    damage(finished_run)
    assert main(["calibrate", str(finished_run), "--out", str(tmp_path / "calibration")]) == 2
    err = capsys.readouterr().err
    assert message in err and str(finished_run) in err and "Traceback" not in err


@pytest.mark.vllm
def test_an_engine_timeout_is_an_error_with_nothing_left_behind(tmp_path, start) -> None:
    out = tmp_path / "run"
    command, tree = start(out, "-p", "engine_timeout_s", "12")
    stdout, stderr = command.communicate(timeout=180)
    assert command.returncode == 3, stdout[-2000:] + stderr[-2000:]
    assert "timed out after 12 s" in stderr and "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "error" and "timed out" in summary["error"]
    assert not tree.alive(), "the engines' EngineCore and workers end with the command"


@pytest.mark.vllm
def test_a_full_disk_is_an_infrastructure_error_without_a_truncated_summary(tmp_path, start) -> None:
    disk = tmp_path / "small-disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=150k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        command, tree = start(disk / "run", "-p", "num_questions", "20")
        stdout, stderr = command.communicate(timeout=300)
        assert command.returncode == 3, stdout[-2000:] + stderr[-2000:]
        assert "No space left on device" in stderr and "Traceback" not in stderr
        summary = disk / "run" / "summary.json"
        assert not summary.exists() or json.loads(summary.read_text())  # whole or absent, never truncated
        assert not tree.alive()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
