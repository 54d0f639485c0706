#!/usr/bin/env bash
# The README's GPU figures (issues 14, 16, 18), on one machine with two GPUs, after scripts/gpu/wheels.sh install.
#
#   scripts/gpu/figures.sh start VENV RESULTS [PLAN]   # the plan's steps in the background (setsid), returns at once
#   scripts/gpu/figures.sh poll RESULTS DEST           # copies the steps finished since the last poll to DEST (tgz each)
#   scripts/gpu/figures.sh run VENV RESULTS [PLAN]     # the same steps in the foreground
#
# Two tracks at once, one GPU each, then both GPUs together. PLAN `all` (default; what ran on 2026-11-26):
#   GPU 0: benchmarks/gpu.py (the default GPU case against the upstream way, cold then warm; issue 16)
#   GPU 1: workbench controls, batch and churn workloads (issue 14); then a 4-cell sweep on that one GPU (issue 18)
#   both:  the same 4-cell sweep on two GPUs with the local executor, then with Ray, then a tensor_parallel_size 2
#          sweep (issue 18)
# PLAN `next` (what that session left): GPU 0: benchmarks/gpu.py again (the warm ratio with the engine core in
#   the engine child); GPU 1: the tiny GPU lane (it also fills the compile cache), then benchmarks/lane.py over it
#   (issue 15); both: params/tiny-qwen3_5-gpu-tp2.yaml swept over k = 1 (tensor parallel, engines one after the
#   other), then the 4-cell sweep on two GPUs with Ray (followers now start at once) (issue 18).
# PLAN `bench16`: benchmarks/gpu.py alone on an otherwise idle machine (its cold ratio suffers when another GPU of
#   the host compiles at the same time: 0.823 beside the cold lane, 0.785 beside the controls; 0.767 alone). Four
#   runs of each way since 2026-11-26 (third session): about 19 minutes on an H100.
# PLAN `placement`: the default GPU case four times on one compile cache (cold first), to tell what moves the
#   reference's completions: engine core in vLLM's own process or in the engine child (`engine_in_process`), engines
#   side by side or one after the other (`parallel_engines`).
# Every step runs with VLLM_FLASHINFER_ALLREDUCE_BACKEND=trtllm: vLLM's default on one node (`mnnvl`) allocates
# NVLink multicast memory, which hosts that keep multicast off must not get (the tp2 case also turns the fusion off).
# Each step's folder is packed as RESULTS/<step>.tgz (record files left out) as soon as it ends, and a line with its
# exit code and wall time goes to RESULTS/progress, so a session cut short keeps what had finished.
set -uo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
cmd="${1:-}"
case "$cmd" in
  start)
    venv="$2"; results="$3"; mkdir -p "$results"
    setsid nohup "$0" run "$venv" "$results" "${4:-all}" >"$results/figures.log" 2>&1 < /dev/null &
    echo "started: $results/figures.log"; exit 0 ;;
  poll)
    results="$2"; dest="$3"; mkdir -p "$dest"
    cat "$results/progress" 2>/dev/null; tail -n 3 "$results"/*.log 2>/dev/null | cut -c1-300
    for f in "$results"/*.tgz; do
      [ -e "$f" ] || continue
      [ -e "$f.sent" ] && continue
      cp "$f" "$dest/" && touch "$f.sent"
    done
    exit 0 ;;
  run) venv="$2"; results="$3"; plan="${4:-all}" ;;
  *) sed -n '2,/^set /{/^#/p}' "$0"; exit 2 ;;  # the header above
esac

export PATH="$venv/bin:$PATH"
export VLLM_FLASHINFER_ALLREDUCE_BACKEND=trtllm
py="$venv/bin/python"
params="$here/params/tiny-qwen3_5-gpu.yaml"
mkdir -p "$results"
cd "$here"

step() {  # step NAME GPUS COMMAND...: runs COMMAND with CUDA_VISIBLE_DEVICES=GPUS, logs, packs RESULTS/NAME
  local name="$1" gpus="$2"; shift 2
  local t0; t0=$(date +%s)
  mkdir -p "$results/$name"
  echo "$(date -u +%T) start $name on GPU $gpus: $*" >>"$results/progress"
  CUDA_VISIBLE_DEVICES="$gpus" WORKBENCH_REFERENCE_CACHE="$results/$name/reference-cache" \
    PYTHONUNBUFFERED=1 "$@" >"$results/$name.log" 2>&1
  local rc=$?
  echo "$(date -u +%T) end $name rc=$rc wall=$(( $(date +%s) - t0 ))s" >>"$results/progress"
  cp "$results/$name.log" "$results/$name/" 2>/dev/null
  tar -C "$results" --exclude='records' --exclude='*.ipynb' --exclude='reference-cache' -czf "$results/$name.tgz" "$name"
  return $rc
}

nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader >>"$results/progress"
"$py" -c "import torch, vllm; print('vllm', vllm.__version__, 'torch', torch.__version__)" >>"$results/progress" 2>&1

bench16() {  # the default GPU case against the upstream way, cold then warm, on GPU 0 (issue 16)
  step bench16 0 "$py" benchmarks/gpu.py --out "$results/bench16/runs" --json "$results/bench16/benchmark-gpu.json"
}

sweep4() {  # sweep4 NAME GPUS [ARGS...]: the tiny GPU case over k = 1..4
  local name="$1" gpus="$2"; shift 2
  step "$name" "$gpus" workbench sweep "$params" --vary num_speculative_tokens 1,2,3,4 --out "$results/$name/runs" "$@"
}

case "$plan" in
  all)
    ( bench16 ) &
    track_a=$!
    ( step controls 1 workbench controls "$params" -p num_questions 50 --out "$results/controls/runs"
      sweep4 sweep1gpu 1 ) &
    track_b=$!
    wait "$track_a" "$track_b"
    sweep4 sweep2gpu 0,1
    sweep4 sweep2gpu-ray 0,1 --executor ray
    step sweep-tp2 0,1 workbench sweep params/tiny-qwen3_5-gpu-tp2.yaml --vary num_speculative_tokens 1,3 \
      --out "$results/sweep-tp2/runs"
    ;;
  next)
    ( bench16 ) &
    track_a=$!
    ( step lane-gpu 1 workbench lane lanes/tiny-gpu.yaml --no-reuse --out "$results/lane-gpu/lane" \
        --junit-xml "$results/lane-gpu/junit.xml"
      step lane-bench 1 "$py" benchmarks/lane.py lanes/tiny-gpu.yaml ) &
    track_b=$!
    wait "$track_a" "$track_b"
    step sweep-tp2 0,1 workbench sweep params/tiny-qwen3_5-gpu-tp2.yaml --vary num_speculative_tokens 1 \
      --out "$results/sweep-tp2/runs"
    sweep4 sweep2gpu-ray 0,1 --executor ray
    ;;
  bench16)
    bench16
    ;;
  placement)
    cache="$results/placement-cache"
    for way in "own false true" "child true true" "own2 false true" "child-serial true false"; do
      set -- $way
      step "place-$1" 0 workbench run "$params" --no-reuse --cache-dir "$cache" -p engine_in_process "$2" \
        -p parallel_engines "$3" --out "$results/place-$1/run"
    done
    ;;
  *) echo "unknown plan $plan (all, next, bench16, placement)" >&2; exit 2 ;;
esac
echo "$(date -u +%T) all done" >>"$results/progress"
