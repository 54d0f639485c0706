#!/usr/bin/env bash
# GPU recipe for a machine with an NVIDIA GPU but no package registry.
#
#   On a connected machine, with a Python of the GPU machine's minor version (its markers decide):
#     PYTHON=python3.12 GPU_PIP_LIST=piplist.txt scripts/gpu/wheels.sh download WHEELDIR
#   Optional, where each transfer is size-limited: one xz tarball of the wheels, split into parts
#     scripts/gpu/wheels.sh pack WHEELDIR PARTDIR [PART_MIB]   (default 37)
#   Copy WHEELDIR (or the parts) and this repo to the GPU machine, then:
#     KEEP_SYSTEM_TORCH=1 scripts/gpu/wheels.sh install WHEELDIR [VENV]   (default VENV: .venv-gpu)
#     VENV/bin/workbench run params/tiny-qwen3_5-gpu.yaml     # or params/qwen3_5-hybrid.yaml
#
# download resolves vllm==0.26.0 + requirements/workbench.txt (less jupyterlab and pytest) for CPython
# $PY_VERSION on manylinux x86-64, then fetches each wheel with --no-deps. Variables:
#   GPU_PIP_LIST  `python3 -m pip list --format=freeze` of the GPU machine: what it already has is not
#                 fetched, and its own versions are kept (vllm's pins numba==0.65 and setuptools<81
#                 then stay unmet, as they did on the H100 run).
#   SKIP          optional heavy packages left out (default below, about 500 MB; SKIP= keeps them). vLLM
#                 imports each of them lazily; the tiny case ran on an H100 without them. Not optional:
#                 flashinfer-python (the sampler imports vLLM's FlashInfer backend at engine start) and
#                 apache-tvm-ffi (xgrammar imports it with vLLM).
#   LOCK=scripts/gpu/wheels-h100.txt  fetch exactly the set the H100 run installed (no resolution).
#   KEEP_SYSTEM_TORCH=1 (install)  the venv sees the system site-packages: for a GPU machine whose torch
#                 is vllm's own (2.11.0, a CUDA 13 build), fetched with GPU_PIP_LIST so torch is skipped.
# install always uses --no-index --no-deps: the set was resolved when it was downloaded.
# Seen on an H100 (torch 2.11.0+cu130): the Gated-DeltaNet prefill needed
# additional_config {"gdn_prefill_backend": "triton"} (FlashInfer's SM90 kernel needs the CuTe DSL package);
# params/tiny-qwen3_5-gpu.yaml sets it.
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
cmd="${1:-}"; dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,27p' "$0"; exit 2; }
PYTHON="${PYTHON:-python3}"
PY_VERSION="${PY_VERSION:-3.12}"
SKIP="${SKIP-cuda-python nvidia-cutlass-dsl nvidia-cutlass-dsl-libs-base nvidia-cutlass-dsl-libs-core nvidia-cutlass-dsl-libs-cu12
nvidia-cutlass-dsl-libs-cu13 quack-kernels humming-kernels tilelang z3-solver tokenspeed-mla tokenspeed-triton
pynvvideocodec torchcodec fastsafetensors nvidia-cuda-nvcc nvidia-cuda-crt nvidia-nvvm nvidia-cuda-cccl
nvidia-cuda-nvdisasm sentry-sdk fastapi-cloud-cli}"
platforms=(--only-binary=:all: --python-version "$PY_VERSION" --implementation cp
           --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
for n in $(seq 5 39); do platforms+=(--platform "manylinux_2_${n}_x86_64"); done

case "$cmd" in
  download)
    mkdir -p "$dir"
    reqs="$dir/requirements.in"
    { echo "vllm==0.26.0"; grep -v -E '^(jupyterlab|pytest)' "$here/requirements/workbench.txt"; } > "$reqs"
    if [ -n "${LOCK:-}" ]; then
      grep -v '^#' "$LOCK" > "$dir/wheels.txt"
      "$PYTHON" -m pip download --quiet --no-deps "${platforms[@]}" -d "$dir" -r "$dir/wheels.txt"
      ls "$dir"/*.whl | wc -l; du -sh "$dir"; exit 0
    fi
    tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
    "$PYTHON" -m pip install --quiet --dry-run --ignore-installed --target "$tmp/t" --report "$dir/resolve.json" \
      "${platforms[@]}" -r "$reqs"
    SKIP="$SKIP" GPU_PIP_LIST="${GPU_PIP_LIST:-}" "$PYTHON" - "$dir" <<'EOF'
import json, os, re, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
d = sys.argv[1]
have = set()
if os.environ["GPU_PIP_LIST"]:
    have = {norm(l.split("==")[0]) for l in open(os.environ["GPU_PIP_LIST"]) if "==" in l}
skip = {norm(s) for s in os.environ["SKIP"].split()}
keep = []
for item in json.load(open(os.path.join(d, "resolve.json")))["install"]:
    n, v = norm(item["metadata"]["name"]), item["metadata"]["version"]
    if n not in have and n not in skip:
        keep.append(f"{n}=={v}")
open(os.path.join(d, "wheels.txt"), "w").write("\n".join(sorted(keep)) + "\n")
print(f"{len(keep)} wheels to fetch (already on the GPU machine: {len(have)}, skipped: {sorted(skip)})")
EOF
    "$PYTHON" -m pip download --quiet --no-deps "${platforms[@]}" -d "$dir" -r "$dir/wheels.txt"
    ls "$dir"/*.whl | wc -l; du -sh "$dir"
    ;;
  pack)
    # Wheels are rewritten uncompressed (same files and RECORD, still installable) so that xz sees
    # the raw CUDA binaries: vllm's 304 MB wheel packs far smaller that way.
    out="${3:?pack WHEELDIR PARTDIR [PART_MIB]}"; mib="${4:-37}"
    mkdir -p "$out"; tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
    "$PYTHON" - "$dir" "$tmp" <<'EOF'
import pathlib, sys, zipfile
src, dst = map(pathlib.Path, sys.argv[1:])
for whl in sorted(src.glob("*.whl")):
    with zipfile.ZipFile(whl) as zin, zipfile.ZipFile(dst / whl.name, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            info.compress_type = zipfile.ZIP_STORED
            zout.writestr(info, data)
EOF
    tar -C "$tmp" -cf - . | xz -9 -T0 | split -b "${mib}M" -d -a 2 - "$out/wheels.tar.xz."
    ls -l "$out"
    ;;
  install)
    venv="${3:-$here/.venv-gpu}"
    if compgen -G "$dir/wheels.tar.xz.*" > /dev/null; then cat "$dir"/wheels.tar.xz.* | xz -d | tar -x -C "$dir"; fi
    flags=(); [ "${KEEP_SYSTEM_TORCH:-0}" = 1 ] && flags=(--system-site-packages)
    python3 -m venv "${flags[@]}" "$venv" || python3 -m venv "${flags[@]}" --without-pip "$venv"
    if [ -x "$venv/bin/pip" ]; then pip=("$venv/bin/pip"); else pip=(python3 -m pip --python "$venv/bin/python"); fi
    if [ "${KEEP_SYSTEM_TORCH:-0}" = 1 ] && ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
      # python3 is itself a venv (its torch is not in the base interpreter's site-packages): see its packages too
      sp="$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')"
      "$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' | xargs -I{} sh -c "echo '$sp' > {}/_system_site.pth"
    fi
    "${pip[@]}" install --quiet --no-index --no-deps "$dir"/*.whl
    "${pip[@]}" install --quiet --no-index --no-deps --no-build-isolation -e "$here"
    "$venv/bin/python" -m ipykernel install --sys-prefix --name mtp-workbench --display-name "mtp-workbench (GPU)"
    "$venv/bin/python" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    ;;
  *) echo "unknown command $cmd (download | pack | install)" >&2; exit 2 ;;
esac
