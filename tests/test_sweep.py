"""Sweeps (issue 18): the cells, bad input, one reference per key, exit codes, worker folders, Ray, the real model."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY_PARAMS, run_cli
from workbench.sweep.executors import CellJob, CellResult
from workbench.sweep.spec import build_cells, parse_vary, split_values

SMALL = {"num_questions": 8, "output_match_prompts": 10}
LEAN = ["-p", "num_questions", "10", "-p", "output_match_prompts", "8", "-p", "required_match_share", "0.5"]


def _free_port() -> int:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        return free.getsockname()[1]


# ------------------------------------------------------------------ cells


def test_the_cells_are_the_cartesian_product_named_by_their_values() -> None:
    vary = parse_vary([("method", "mtp,ngram"), ("num_speculative_tokens", "1,2,3")])
    cells = build_cells(TINY_PARAMS, vary, {"num_questions": 8})
    assert [c.name for c in cells] == [f"method-{m}_num_speculative_tokens-{k}" for m in ("mtp", "ngram")
                                       for k in (1, 2, 3)]
    assert cells[4].values == {"method": "ngram", "num_speculative_tokens": 2}
    assert cells[4].overrides == {"num_questions": 8, "method": "ngram", "num_speculative_tokens": 2}
    # values are YAML, and commas inside braces or quotes do not split them
    assert split_values("{a: 1, b: 2},{},'x,y'") == ["{a: 1, b: 2}", "{}", "'x,y'"]
    kwargs = parse_vary([("engine_kwargs", "{max_num_batched_tokens: 2048, enable_chunked_prefill: true},{}")])
    assert kwargs == {"engine_kwargs": [{"max_num_batched_tokens": 2048, "enable_chunked_prefill": True}, {}]}
    named = build_cells(TINY_PARAMS, kwargs, {})
    assert [c.name for c in named] == ["engine_kwargs-enable_chunked_prefill-true-max_num_batched_tokens-2048",
                                       "engine_kwargs-empty"]
    # nothing varied: one cell, named after the case
    assert [c.name for c in build_cells(TINY_PARAMS, {}, {})] == [TINY_PARAMS.stem]


@pytest.mark.parametrize("args, named", [
    (["--vary", "num_speculative_tokenz", "1,2"], "num_speculative_tokenz"),
    (["--vary", "num_speculative_tokens", ""], "empty value"),
    (["--vary", "num_speculative_tokens", "1,,2"], "empty value"),
    (["--vary", "num_speculative_tokens", "1,1"], "listed twice"),
    (["--vary", "num_speculative_tokens", "1", "--vary", "num_speculative_tokens", "2"], "given twice"),
    (["--vary", "num_speculative_tokens", "0,1"], "num_speculative_tokens-0"),
    (["--vary", "reference_record", "a,b"], "set by `workbench sweep`"),
    (["-p", "reuse_reference", "true"], "set by `workbench sweep`"),
    (["--vary", "num_speculative_tokens", "1,2", "-p", "num_speculative_tokens", "3"], "also varied"),
    (["--vary", "method", "mtp,not_a_method"], "not_a_method"),
    (["--executor", "slurm"], "invalid choice"),
    (["--ray-address", "127.0.0.1:6379"], "needs --executor ray"),
    (["--executor", "ray", "--ray-address", "UNREACHABLE"], "unreachable"),
    (["--executor", "ray", "--ray-address", "no-port-here"], "HOST:PORT"),
])
def test_bad_input_is_refused_before_anything_starts(args, named, tmp_path, capsys, monkeypatch) -> None:
    from workbench.cli import main

    def no_engine(*_args, **_kwargs):
        raise AssertionError("the sweep was about to run its cells")

    monkeypatch.setattr("workbench.sweep.runner.run_sweep", no_engine)
    args = [a.replace("UNREACHABLE", f"127.0.0.1:{_free_port()}") for a in args]  # a port nothing listens on
    out = tmp_path / "sweep"
    started = time.monotonic()
    assert main(["sweep", str(TINY_PARAMS), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err
    assert not out.exists(), "nothing is created for a sweep that is refused"
    assert time.monotonic() - started < 60


def test_cells_of_one_reference_key_share_one_leader_and_another_key_gets_its_own(tmp_path) -> None:
    from workbench.sweep.runner import plan_cells

    cells = build_cells(TINY_PARAMS, parse_vary([("max_num_seqs", "16,256"), ("num_speculative_tokens", "1,2")]),
                        SMALL)
    jobs = {job.name: job for job in plan_cells(cells, tmp_path / "sweep")}
    assert len({job.key for job in jobs.values()}) == 2, "max_num_seqs is an argument of the reference engine too"
    assert {name: job.role for name, job in jobs.items()} == {
        "max_num_seqs-16_num_speculative_tokens-1": "leader", "max_num_seqs-16_num_speculative_tokens-2": "follower",
        "max_num_seqs-256_num_speculative_tokens-1": "leader", "max_num_seqs-256_num_speculative_tokens-2": "follower"}
    follower = jobs["max_num_seqs-256_num_speculative_tokens-2"]
    assert follower.leader == "max_num_seqs-256_num_speculative_tokens-1"
    assert follower.overrides["reference_record"] == str(follower.record)
    assert follower.overrides["store_reference"] is False
    assert follower.record.is_relative_to(tmp_path / "sweep" / "reference-cache"), "the sweep's own cache"
    leader = jobs[follower.leader]
    assert leader.overrides["reuse_reference"] is False and leader.overrides["store_reference"] is True


# ------------------------------------------------------------------ sweep.json and the exit code


class FakeExecutor:
    """Each cell "runs" by copying a finished run folder (recorded engine outputs) and exiting as told."""

    name = "local"

    def __init__(self, finished_run: Path, codes: dict[str, int], reference_in: set[str]) -> None:
        self.finished_run, self.codes, self.reference_in = finished_run, codes, reference_in

    def run(self, jobs, out, echo, cancelled):
        results = {}
        for job in jobs:
            code = self.codes[job.name]
            if code != 3:  # an error before its summary: no run folder
                shutil.copytree(self.finished_run, out / job.name)
                if job.name in self.reference_in:
                    (out / job.name / "logs").mkdir(exist_ok=True)
                    (out / job.name / "logs" / "reference.log").write_text("engine log")
            results[job.name] = CellResult(exit_code=code, wall_s=1.0, device="cpu",
                                           error="lost" if code == 3 else None)
        return results


@pytest.mark.parametrize("codes, expected", [((0, 0, 0), 0), ((0, 1, 0), 1), ((1, 3, 0), 3), ((3, 1, 1), 3)])
def test_the_sweep_exit_code_is_the_worst_cell_and_sweep_json_holds_every_cell(codes, expected, finished_run,
                                                                               tmp_path) -> None:
    from workbench.records import load_summary, load_sweep_summary
    from workbench.sweep.runner import run_sweep

    vary = parse_vary([("num_speculative_tokens", "1,2,3")])
    cells = build_cells(TINY_PARAMS, vary, SMALL)
    names = [c.name for c in cells]
    executor = FakeExecutor(finished_run, dict(zip(names, codes)), reference_in={names[0]})
    out = tmp_path / "sweep"
    summary = run_sweep(TINY_PARAMS, vary, SMALL, cells, executor, out, echo=lambda line: None)
    assert summary.exit_code == expected and summary.passed == (expected == 0)
    written = load_sweep_summary(out)
    assert written.exit_code == expected and [c.exit_code for c in written.cells] == list(codes)
    assert [c.values for c in written.cells] == [{"num_speculative_tokens": k} for k in (1, 2, 3)]
    recorded = load_summary(finished_run)
    for cell, code in zip(written.cells, codes):
        assert cell.run_dir == str(out / cell.name) and cell.passed == (code == 0)
        if code == 3:
            assert cell.status == "error" and cell.error == "lost" and cell.acceptance_length is None
            continue
        assert cell.acceptance_length == recorded.speculative.acceptance_length
        assert cell.acceptance_rate_per_position == recorded.speculative.acceptance_rate_per_position
        assert cell.output_match.matched == recorded.output_match.matched
        assert cell.speedup == pytest.approx(recorded.speculative.timings.output_tokens_per_s
                                             / recorded.reference.timings.output_tokens_per_s)
    assert written.reference_runs == (0 if codes[0] == 3 else 1), "counted from the run folders' reference logs"
    assert written.fastest_passing == next((n for n, c in zip(names, codes) if c == 0), None)


# ------------------------------------------------------------------ the local executor's loop (stand-in cells)


@pytest.mark.parametrize("gpus", [[], ["0", "1", "2"]], ids=["cpu-one-at-a-time", "three-gpus-at-once"])
def test_a_leader_without_a_reference_fails_its_followers_and_gpus_are_handed_out(gpus, tmp_path, monkeypatch) -> None:
    """The leader exits 3 at once without storing a reference; its follower would wait two minutes for it. With
    one slot the follower never starts; with three GPUs every cell starts at once, each on its own GPU, and the
    follower is stopped. A cell of another key runs either way."""
    from workbench.sweep import executors

    scripts = {"leader": "import sys, time; time.sleep(0.5); sys.exit(3)",
               "follower": "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(4))\n"
                           "time.sleep(120)",
               "other": "import os; print(os.environ.get('CUDA_VISIBLE_DEVICES', 'none'))"}

    def stand_in(params_file, overrides, run_dir, log, env=None):
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            return subprocess.Popen([sys.executable, "-c", scripts[run_dir.name]], stdout=out,
                                    env={**os.environ, **(env or {})})

    monkeypatch.setattr(executors, "start_cell", stand_in)
    record = tmp_path / "sweep" / "reference-cache" / "k" / "records" / "reference.json"
    jobs = [CellJob(name="leader", params_file=TINY_PARAMS, overrides={}, role="leader", key="a", record=record),
            CellJob(name="follower", params_file=TINY_PARAMS, overrides={}, role="follower", key="a",
                    leader="leader", record=record),
            CellJob(name="other", params_file=TINY_PARAMS, overrides={}, role="leader", key="b",
                    record=tmp_path / "elsewhere.json")]
    lines: list[str] = []
    started = time.monotonic()
    results = executors.LocalExecutor(gpus=gpus, poll_s=0.1).run(jobs, tmp_path / "sweep", lines.append, [])
    assert time.monotonic() - started < 60, "the follower is stopped, not left waiting"
    assert results["leader"].exit_code == 3
    assert results["follower"].exit_code == 3 and "leader ended without a reference" in results["follower"].error
    assert results["other"].exit_code == 0
    follower_started = any(line.startswith("[sweep] follower: started") for line in lines)
    assert follower_started == bool(gpus)
    printed = (tmp_path / "sweep" / "logs" / "other.out").read_text().strip()
    assert printed == (results["other"].device.split()[-1] if gpus else os.environ.get("CUDA_VISIBLE_DEVICES", "none"))
    if gpus:
        assert sorted(result.device for result in results.values()) == ["cuda 0", "cuda 1", "cuda 2"]


def test_a_cancelled_sweep_stops_its_cells_and_still_writes_sweep_json(tmp_path, monkeypatch) -> None:
    """SIGTERM mid-sweep (a CI cancel): the running cell is stopped, the queued one never starts, exit 4."""
    import signal
    import threading

    from workbench.records import load_sweep_summary
    from workbench.sweep import executors
    from workbench.sweep.runner import run_sweep

    def stand_in(params_file, overrides, run_dir, log, env=None):
        log.parent.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                                 "signal.signal(signal.SIGTERM, lambda *a: sys.exit(4))\ntime.sleep(120)"])

    monkeypatch.setattr(executors, "start_cell", stand_in)
    vary = parse_vary([("num_speculative_tokens", "1,2")])
    cells = build_cells(TINY_PARAMS, vary, SMALL)
    before = signal.getsignal(signal.SIGTERM)
    threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
    started = time.monotonic()
    summary = run_sweep(TINY_PARAMS, vary, SMALL, cells, executors.LocalExecutor(gpus=[], poll_s=0.1),
                        tmp_path / "sweep", echo=lambda line: None)
    assert time.monotonic() - started < 60
    assert summary.exit_code == 4 and load_sweep_summary(tmp_path / "sweep").exit_code == 4
    assert [c.exit_code for c in summary.cells] == [4, 4]
    assert "cancelled (SIGTERM)" in summary.cells[0].error and "before this cell started" in summary.cells[1].error
    assert signal.getsignal(signal.SIGTERM) == before, "the sweep's handler is gone once it ends"


# ------------------------------------------------------------------ folders sent back by workers


def _worker_folder(root: Path) -> None:
    """A cell and a reference-cache entry as a worker leaves them under its temporary root."""
    cell = root / "k2"
    (cell / "logs").mkdir(parents=True)
    (cell / "logs" / "speculative.log").write_text("log")
    source = {"kind": "cache", "record": f"{root}/reference-cache/abc/records/reference.json",
              "run_dir": f"{root}/k1", "key": "abc"}
    (cell / "summary.json").write_text(json.dumps({"schema_version": 1, "reference_source": source,
                                                   "error": f"{root}x is not under the root"}))
    (cell / "params.yaml").write_text(f"model: /models/m\nreference_record: {root}/reference-cache/abc/records/"
                                      "reference.json\n")
    (root / "logs").mkdir()
    (root / "logs" / "k2.out").write_text("output")


def test_the_driver_unpacks_a_workers_folder_and_rewrites_the_workers_paths(tmp_path) -> None:
    from workbench.core.errors import RunFolderError
    from workbench.sweep.archive import pack, relocate, unpack

    root = tmp_path / "worker" / "sweep-x"
    _worker_folder(root)
    data = pack(root, ["k2", "logs/k2.out", "reference-cache"])  # the worker stored no cache entry: skipped
    out = tmp_path / "driver" / "sweep-x"
    assert unpack(data, out) == ["k2", "logs"]
    assert (out / "k2" / "logs" / "speculative.log").read_text() == "log"
    assert (out / "logs" / "k2.out").read_text() == "output"
    relocate([out / "k2" / "summary.json", out / "k2" / "params.yaml"], {str(root): str(out)})
    summary = json.loads((out / "k2" / "summary.json").read_text())
    assert summary["reference_source"]["record"] == f"{out}/reference-cache/abc/records/reference.json"
    assert summary["reference_source"]["run_dir"] == f"{out}/k1"
    assert summary["error"] == f"{root}x is not under the root", "only paths under the root move"
    params = (out / "k2" / "params.yaml").read_text()
    assert f"reference_record: {out}/reference-cache" in params and "model: /models/m" in params
    # an archive whose members would land outside the sweep folder is refused whole
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(root / "logs" / "k2.out", arcname="ok.txt")
        archive.add(root / "logs" / "k2.out", arcname="../escaped.txt")
    with pytest.raises(RunFolderError, match="escaped"):
        unpack(buffer.getvalue(), tmp_path / "victim")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "victim" / "ok.txt").exists()


# ------------------------------------------------------------------ Ray: a lost worker (no vLLM)


def _ray_processes() -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if "raylet" in line or "gcs_server" in line]


def test_a_lost_ray_worker_fails_its_cell_and_those_waiting_for_its_reference_not_the_sweep(tmp_path) -> None:
    """On a local Ray cluster the test's executor starts (and stops): one cell's task kills its own worker."""
    pytest.importorskip("ray")
    from workbench.sweep.ray_executor import RayExecutor

    def task(cell, reference=None):  # defined here, so Ray ships it by value to its workers
        import os
        import signal
        import tempfile
        from pathlib import Path

        from workbench.sweep.archive import pack
        from workbench.sweep.ray_executor import TaskResult

        if cell.name == "lost":
            os.kill(os.getpid(), signal.SIGKILL)
        root = Path(tempfile.mkdtemp()) / cell.sweep
        (root / cell.name).mkdir(parents=True)
        (root / cell.name / "role.txt").write_text(f"{cell.role} {reference!r}")
        return TaskResult(exit_code=0, root=str(root), archive=pack(root, [cell.name])), b""

    def job(name, role, key, leader=None):
        return CellJob(name=name, params_file=TINY_PARAMS, overrides={}, role=role, key=key, leader=leader)

    before = set(_ray_processes())
    executor = RayExecutor(task=task)
    out = tmp_path / "sweep"
    try:
        executor.check([])
        assert executor.cpus_per_cell == os.cpu_count(), "a CPU cell takes a whole node: one at a time"
        results = executor.run([job("ok", "leader", "a"), job("lost", "leader", "b"), job("waits", "follower", "b",
                                                                                          leader="lost")],
                               out, echo=lambda line: None, cancelled=[])
    finally:
        executor.close()
    assert results["ok"].exit_code == 0 and (out / "ok" / "role.txt").read_text() == "leader None"
    assert results["lost"].exit_code == 3 and "Ray task failed" in results["lost"].error
    assert results["waits"].exit_code == 3 and not (out / "waits").exists()
    assert "lost" in (out / "logs" / "lost.out").read_text() or "died" in (out / "logs" / "lost.out").read_text()
    time.sleep(2)
    assert set(_ray_processes()) <= before, "the local cluster is stopped with the sweep"


# ------------------------------------------------------------------ the real tiny model


def _cells(sweep_dir: Path) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads((sweep_dir / "sweep.json").read_text())["cells"]}


def _start_ray_head(log: Path) -> tuple[subprocess.Popen, int]:
    """A Ray head node on 127.0.0.1 (`ray start --head --block`, stopped by SIGTERM), up to three attempts: Ray's
    raylet gives its dashboard agent 15 s to start, which a busy machine can miss."""
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    for _ in range(3):
        port = _free_port()
        with open(log, "w") as out:
            head = subprocess.Popen([ray, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port",
                                     str(port), "--num-cpus", str(os.cpu_count()), "--include-dashboard", "false",
                                     "--disable-usage-stats"], stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and head.poll() is None:
            if "Ray runtime started" in log.read_text():
                return head, port
            time.sleep(1)
        head.terminate()
        head.wait(timeout=120)
    pytest.fail(f"ray start --head did not start three times: {log.read_text()[-2000:]}")


@pytest.mark.vllm
def test_a_two_cell_tiny_sweep_runs_one_reference_locally_and_on_a_ray_cluster_alike(tmp_path) -> None:
    """`--vary num_speculative_tokens 1,2` on the tiny model: locally, then on a Ray head node started on
    127.0.0.1 for the test. Both: two cells, one reference engine, the same verdicts and structure. The CPU
    engine is not bit-reproducible from run to run (about 5 % of completions differ under other batching
    timing), so acceptance is compared with a tolerance, not exactly."""
    pytest.importorskip("ray")
    sweep = ["sweep", "params/tiny-qwen3_5-cpu.yaml", "--vary", "num_speculative_tokens", "1,2", *LEAN]
    local = run_cli(*sweep, "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    head, port = _start_ray_head(tmp_path / "ray-head.log")
    try:
        on_ray = run_cli(*sweep, "--executor", "ray", "--ray-address", f"127.0.0.1:{port}",
                         "--out", str(tmp_path / "ray"))
    finally:
        head.terminate()  # ray start --block stops every process of its node on SIGTERM
        head.wait(timeout=120)
    assert on_ray.returncode == 0, on_ray.stdout[-3000:] + on_ray.stderr[-3000:]
    summaries = {where: json.loads((tmp_path / where / "sweep.json").read_text()) for where in ("local", "ray")}
    assert summaries["local"]["reference_runs"] == summaries["ray"]["reference_runs"] == 1
    assert summaries["ray"]["executor"] == "ray" and summaries["ray"]["ray_address"] == f"127.0.0.1:{port}"
    local_cells, ray_cells = _cells(tmp_path / "local"), _cells(tmp_path / "ray")
    assert list(local_cells) == list(ray_cells) == ["num_speculative_tokens-1", "num_speculative_tokens-2"]
    for name, here in local_cells.items():
        there = ray_cells[name]
        for key in ("values", "exit_code", "passed", "failed_checks", "reference", "reference_engine_started"):
            assert here[key] == there[key], (name, key, here[key], there[key])
        assert len(here["acceptance_rate_per_position"]) == len(there["acceptance_rate_per_position"]) == \
            here["values"]["num_speculative_tokens"]
        assert here["acceptance_length"] == pytest.approx(there["acceptance_length"], abs=0.15)
        assert here["output_match"]["total"] == there["output_match"]["total"] == 8
        assert here["counters"]["num_drafts"] > 0 and there["counters"]["num_drafts"] > 0
        assert Path(there["run_dir"]) == tmp_path / "ray" / name and (Path(there["run_dir"]) / "report.html").is_file()
    assert [c["reference"] for c in ray_cells.values()] == ["computed", "cache"]
    follower = json.loads((tmp_path / "ray" / "num_speculative_tokens-2" / "summary.json").read_text())
    assert follower["reference_source"]["run_dir"] == str(tmp_path / "ray" / "num_speculative_tokens-1"), \
        "the worker's paths are rewritten to the driver's folder"
    leader_ref, follower_ref = (json.loads((tmp_path / "ray" / f"num_speculative_tokens-{k}" / "records" /
                                            "reference.json").read_text()) for k in (1, 2))
    assert [r["token_ids"] for r in follower_ref["gsm8k"]] == [r["token_ids"] for r in leader_ref["gsm8k"]]
    for where in ("local", "ray"):
        page = (tmp_path / where / "report.html").read_text()
        assert "Fastest passing config" in page and "Output match, with its control" in page
        verdict = page.index("<strong>PASSED</strong>: 2 of 2 cells passed")
        assert page.index("wb-verdict") < verdict < page.index("Sweep:"), "the report opens with its verdict"
        assert page.count("data:image/png") >= 4, "the four figures are embedded"


def test_a_ray_follower_on_a_gpu_cluster_starts_at_once_and_fetches_its_reference_meanwhile(tmp_path, monkeypatch):
    """In the worker's own code (`run_cell_task`, called here): the cell's run starts before the leader's reference
    exists, gets it whole once it does, and is stopped at once (exit 3, naming the leader) when it never will."""
    ray = pytest.importorskip("ray")
    from workbench.sweep import ray_executor
    from workbench.sweep.archive import pack, unpack

    entry = tmp_path / "leader-cache" / "k3y" / "records"
    entry.mkdir(parents=True)
    (entry / "reference.json").write_text(json.dumps({"label": "reference", "ok": True, "gsm8k": ["x" * 100000]}))
    stored = pack(tmp_path / "leader-cache", ["k3y"])
    started: list[float] = []

    def start_cell(params_file, overrides, run_dir, log, env=None):  # the cell's run: waits for its reference
        code = (f"import pathlib, sys, time\nrecord = pathlib.Path({overrides['reference_record']!r})\n"
                f"while not record.is_file():\n    time.sleep(0.02)\n"
                f"run = pathlib.Path({str(run_dir)!r}); run.mkdir(parents=True)\n"
                f"(run / 'seen.json').write_text(record.read_text())\n")
        started.append(time.monotonic())
        log.parent.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen([sys.executable, "-c", code])

    monkeypatch.setattr(ray_executor, "start_cell", start_cell)
    task = ray_executor.CellTask(name="k2", role="follower", leader="k1", packaged_case="tiny-qwen3_5-cpu",
                                 params_name="tiny-qwen3_5-cpu.yaml", overrides={}, reference_wait_s=60,
                                 reference_entry=["k3y", "records", "reference.json"])
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             object_store_memory=1 << 28, logging_level="warning")
    try:
        @ray.remote
        def leader(seconds: float, data: bytes) -> bytes:
            time.sleep(seconds)
            if not data:
                raise RuntimeError("leader lost")
            return data

        ref = leader.remote(4.0, stored)
        result, _ = ray_executor.run_cell_task(task, [ref])
        ready = time.monotonic()
        assert result.exit_code == 0 and result.error is None, result
        assert ready - started[0] > 2.0, "the cell's run started only once the reference existed"
        out = tmp_path / "out"
        unpack(result.archive, out)
        assert json.loads((out / "k2" / "seen.json").read_text())["gsm8k"] == ["x" * 100000], "read whole"

        failing = leader.remote(1.0, b"")
        before = time.monotonic()
        result, _ = ray_executor.run_cell_task(task, [failing])
        assert result.exit_code == 3 and "its reference cell k1 failed" in (result.error or ""), result
        assert time.monotonic() - before < 30, "stopped when the leader failed, not at reference_wait_s"
    finally:
        ray.shutdown()
