#!/usr/bin/env bash
# GPU recipe for a machine with an NVIDIA GPU but no package registry.
#
#   On a connected machine (same Python minor version and CPU architecture as the GPU machine):
#     scripts/gpu/wheels.sh download WHEELDIR          # CUDA vllm==0.26.0 + the workbench's needs, as wheels
#   Copy WHEELDIR and this repo to the GPU machine, then:
#     scripts/gpu/wheels.sh install WHEELDIR [VENV]    # offline install into VENV (default .venv-gpu)
#     VENV/bin/workbench run params/qwen3_5-hybrid.yaml          # or the tiny model: params/tiny-qwen3_5-gpu.yaml
#
# vllm 0.26.0 pins torch 2.11.0 (a CUDA 13 build). Where the GPU machine already has that torch,
# pass KEEP_SYSTEM_TORCH=1 to install: the venv then sees the system site-packages and pip skips torch.
# Seen on an H100 (torch 2.11.0+cu130): the Gated-DeltaNet prefill needed
# additional_config {"gdn_prefill_backend": "triton"} (FlashInfer's SM90 kernel needs the CuTe DSL package);
# params/tiny-qwen3_5-gpu.yaml sets it.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
cmd="${1:-}"; dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,16p' "$0"; exit 2; }
case "$cmd" in
  download)
    mkdir -p "$dir"
    python3 -m pip download -d "$dir" "vllm==0.26.0" -r "$here/requirements/workbench.txt"
    ;;
  install)
    venv="${3:-$here/.venv-gpu}"
    if [ "${KEEP_SYSTEM_TORCH:-0}" = 1 ]; then python3 -m venv --system-site-packages "$venv"; else python3 -m venv "$venv"; fi
    "$venv/bin/pip" install --no-index --find-links "$dir" "vllm==0.26.0" -r "$here/requirements/workbench.txt"
    "$venv/bin/pip" install --no-index --no-deps --no-build-isolation -e "$here"
    "$venv/bin/python" -m ipykernel install --sys-prefix --name mtp-workbench --display-name "mtp-workbench (GPU)"
    "$venv/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    ;;
  *) echo "unknown command $cmd (download | install)" >&2; exit 2 ;;
esac
