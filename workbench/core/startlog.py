"""Where an engine's start goes, read from vLLM's own timing lines in the engine's log.

An engine child's log holds everything its `vllm.LLM(...)` call printed, from the child and from the
EngineCore and worker processes vLLM starts (they inherit its output). vLLM times the expensive
parts itself and logs them; these lines (the same code paths on CPU and CUDA, vLLM 0.26 to 0.32) are:

- `Model loading took X GiB memory and S seconds` (GPU model runner; older: `X GiB and S seconds`), or
  `Initializing model took S seconds` plus `Loading weights took S seconds` (CPU runner, per model);
- `init engine (profile, create kv cache, warmup model) took S s (compilation: C s)` (EngineCore): every step
  after the model is loaded, `C` being vLLM's own total of torch.compile;
- `torch.compile took S s in total` (older: `takes`; without AOT compile: `torch.compile and initial
  profiling/warmup run together took`), when the init-engine line gives no compilation;
- `Graph capturing finished in N secs, took G GiB` (CUDA graphs);
- `Directly load the compiled graph(s) ... from the cache` / `Directly load AOT compilation from path` (a
  compile-cache hit) against `Compiling a graph for ... takes` / `Cache the graph of ...` / `saved AOT compiled
  function to` (compiled afresh).

With several worker processes (tensor parallel) each logs its own lines at the same time: a phase is the
longest process's sum, not the sum over processes. The phases are measured inside the start; the rest
of the start (`init_s`) is `other`, so they always add up to it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel, Field

from workbench.records import StartBreakdown

ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PID = re.compile(r"\bpid=(\d+)\)")
_S = r"(\d+(?:\.\d+)?)"

LINES: dict[str, re.Pattern[str]] = {
    "model_loading": re.compile(rf"Model loading took {_S} ?GiB(?: memory)? and {_S} seconds"),
    "initializing_model": re.compile(rf"Initializing model took {_S} seconds"),
    "loading_weights": re.compile(rf"Loading weights took {_S} seconds"),
    "torch_compile": re.compile(
        rf"torch\.compile (?:and initial profiling/warmup run together )?(?:took|takes) {_S} s in total"),
    "graph_capture": re.compile(rf"Graph capturing finished in {_S} secs?\b"),
    "init_engine": re.compile(
        rf"init engine \(profile, create kv cache, warmup model\) took {_S} s(?:econds)?(?: \(compilation: {_S} s)?"),
    "cache_load": re.compile(r"Directly load (?:the compiled graph|AOT compilation from path)"),
    "fresh_compile": re.compile(r"Compiling a graph for .* takes|Cache the graph of |saved AOT compiled function to"),
}
"""vLLM's timing lines by what they time (the first number is seconds, except `model_loading`'s GiB)."""


class StartReading(BaseModel):
    """What an engine's start log says: the breakdown, whether compiling hit vLLM's cache, and the lines read.

    Its fields are `EngineRecord`'s of the same names, so a child puts them into its record as they are.
    """

    start_breakdown: StartBreakdown | None = None
    start_cache_hit: bool | None = None
    start_log: list[str] = Field(default_factory=list)


def _longest(per_process: dict[str | None, float]) -> float:
    return max(per_process.values(), default=0.0)


def read_start(text: str, start_s: float | None) -> StartReading:
    """The start breakdown of one engine from its log text (only its start: see `read_start_log`).

    `start_s` is the measured start (`init_s`); without it there is nothing to break down.
    """
    sums: dict[str, dict[str | None, float]] = defaultdict(lambda: defaultdict(float))
    compilation: list[float] = []
    seen: set[str] = set()
    kept: list[str] = []
    for raw in text.splitlines():
        line = ANSI.sub("", raw).strip()
        for name, pattern in LINES.items():
            found = pattern.search(line)
            if found is None:
                continue
            seen.add(name)
            kept.append(line)
            process = (pid.group(1) if (pid := _PID.search(line)) else None)
            numbers = found.groups()
            seconds = numbers[1] if name == "model_loading" else numbers[0] if numbers else None
            if seconds is not None:
                sums[name][process] += float(seconds)
            if name == "init_engine" and found.group(2) is not None:
                compilation.append(float(found.group(2)))
            break
    cache_hit = False if "fresh_compile" in seen else True if "cache_load" in seen else None
    if start_s is None:
        return StartReading(start_cache_hit=cache_hit, start_log=kept)
    if "model_loading" in seen:
        weights = _longest(sums["model_loading"])
    else:
        per_process = defaultdict(float)
        for name in ("initializing_model", "loading_weights"):
            for process, seconds in sums[name].items():
                per_process[process] += seconds
        weights = _longest(per_process)
    compile_s = max(compilation) if compilation else _longest(sums["torch_compile"])
    capture = _longest(sums["graph_capture"])
    init_engine = _longest(sums["init_engine"])
    profile = max(0.0, init_engine - compile_s - capture) if "init_engine" in seen else 0.0
    measured = weights + compile_s + profile + capture
    breakdown = StartBreakdown(weights_load=weights, compile=compile_s, profile_kv_cache_warmup=profile,
                               cuda_graph_capture=capture, other=max(0.0, start_s - measured))
    return StartReading(start_breakdown=breakdown, start_cache_hit=cache_hit, start_log=kept)


def log_offset(path: str | Path) -> int:
    """The log's size now: where the lines of what starts next begin (0 for a log not yet written)."""
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def read_start_log(path: str | Path, offset: int, start_s: float | None) -> StartReading:
    """The start breakdown from what the log gained since `offset` (`log_offset` before the engine started); an
    unreadable log gives an empty reading, never an error: the breakdown only describes the start."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        text = ""
    return read_start(text, start_s)
