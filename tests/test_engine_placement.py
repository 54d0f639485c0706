"""Issue 16: where vLLM's engine core runs. In the engine child on a CUDA GPU with one tensor-parallel rank (no
second import of vLLM and torch per start), in a process of vLLM's own elsewhere; the choice reaches vLLM through
its switch before the engine is built. Real runs of both placements are in test_notebook_vllm.py."""

from __future__ import annotations

import pytest

from workbench.core.engine import ENGINE_MULTIPROCESSING_ENV, place_engine_core


@pytest.fixture
def platform(monkeypatch):
    from vllm.platforms import current_platform

    monkeypatch.setenv(ENGINE_MULTIPROCESSING_ENV, "1")  # recorded, so the value the child sets is undone after
    monkeypatch.delenv(ENGINE_MULTIPROCESSING_ENV)

    def on(cuda: bool) -> None:
        monkeypatch.setattr(type(current_platform), "is_cuda", lambda self: cuda)
    return on


@pytest.mark.parametrize("cuda, tp, expected", [(True, 1, True), (True, 2, False), (False, 1, False)])
def test_the_default_follows_the_device_and_tensor_parallel_size(platform, cuda, tp, expected) -> None:
    import os

    platform(cuda)
    assert place_engine_core(None, {"tensor_parallel_size": tp}) is expected
    assert (os.environ.get(ENGINE_MULTIPROCESSING_ENV) == "0") is expected


@pytest.mark.parametrize("choice", [True, False])
def test_a_stated_choice_wins_over_the_device(platform, choice) -> None:
    import os

    platform(not choice)
    assert place_engine_core(choice, {}) is choice
    assert (os.environ.get(ENGINE_MULTIPROCESSING_ENV) == "0") is choice


def test_an_in_process_engine_on_the_cpu_binds_its_own_openmp_threads(tmp_path) -> None:
    """vLLM binds OpenMP threads only in a CPU worker process of its own; an engine core in the engine child has none,
    so the child gets the binding vLLM would give that worker (two unbound engines on two cores ran 5x slower)."""
    from conftest import TINY_PARAMS
    from workbench.core.engine import omp_binding_env
    from workbench.correctness import pipeline

    assert omp_binding_env("0") == {"OMP_NUM_THREADS": "1", "OMP_PLACES": "{0}", "OMP_PROC_BIND": "true"}
    assert omp_binding_env("0-2,8")["OMP_PLACES"] == "{0,1,2,8}"
    for no_list in ("auto", "nobind", "0-1|2-3"):  # nothing to bind to, or tensor-parallel workers vLLM binds
        assert omp_binding_env(no_list) == {}
    ctx = pipeline.prepare(TINY_PARAMS, {"num_questions": 2, "engine_in_process": True}, tmp_path / "in")
    for label, cpu in zip(pipeline.RUN_LABELS, ctx.params.engine_cpu_binding):
        env = pipeline.engine_job(ctx, label).env
        assert env["VLLM_CPU_OMP_THREADS_BIND"] == cpu and env["OMP_PLACES"] == "{" + cpu + "}"
        assert pipeline.engine_job(ctx, label).engine_in_process is True
    default = pipeline.prepare(TINY_PARAMS, {"num_questions": 2}, tmp_path / "default")
    assert "OMP_PLACES" not in pipeline.engine_job(default, "reference").env  # vLLM's worker process binds itself
