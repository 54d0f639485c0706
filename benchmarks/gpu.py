"""The default GPU case against the same comparison done the upstream way, each run four times on one machine.

    python benchmarks/gpu.py [--params PARAMS.yaml] [-p KEY VALUE]... [--runs 4] [--out DIR] [--json FILE]
    python benchmarks/gpu.py --agreement-of DIR [DIR...]

Issue 16's measurement, on a GPU machine (default case `params/tiny-qwen3_5-gpu.yaml`, k=1):

1. The workbench: `workbench run PARAMS --cache-dir C`, `--runs` times back to back, C a new, empty folder: the
   first run starts from empty compile caches (cold), the next ones reuse them (warm). Both engines at once where
   the case says so (`parallel_engines`), the notebook, the report: the whole command.
2. The upstream way: a plain script (this file, `--upstream-script`), as vLLM's test_mtp_correctness does it: in one
   process the reference `vllm.LLM`, its GSM8k and output-match prompts, shut down, then the speculative `vllm.LLM`
   and the same prompts; upstream's settings (each engine alone, vLLM sizing its own KV cache, gpu_memory_utilization
   0.8 on a GPU, no logprobs, no control pass, no notebook), its caches (VLLM_CACHE_ROOT, TRITON_CACHE_DIR, ...) in
   another new, empty folder. `--runs` times back to back.

Before both, one `python -c "import torch, vllm"` (and the model's download, for a hub id), so that neither side's
first run pays for a cold disk. It prints the wall time of every run, the ratios workbench / upstream of the first
runs (cold against cold, target <= 0.8) and of the second runs (warm against warm, target <= 0.6), each engine's start
by phase (weights, compile, profiling/warmup, CUDA graphs, other; from vLLM's log lines), its generation time and
compile-cache hit, and whether the results agree: acceptance counters, accuracies and output match of all runs, the
difference between the two ways beside each way's own run-to-run difference; for accuracies also McNemar's exact
test on the questions, pair by pair of runs (an accuracy agrees when either says so). Last, one JSON line (and `--json`).

Why four runs of each way by default, when the ratios need two: on a GPU the reference's greedy completions depend
on how vLLM happened to batch the requests, and vLLM's own engine process mostly batches them differently from run
to run (measured on H100s: 885 to 1018 of 1319 reference completions identical in 43 of 45 pairs of runs; reference
accuracy 27 to 34 of 1319 over ten runs), while the engine core in the engine child batches them the same way every
time (1319 of 1319 between its runs, and the same completions on a second H100 that day). Two runs of the upstream
way cannot show that spread; the runs after the second are warm runs for the agreement only. `--agreement-of DIR...`
re-judges earlier --out folders pooled (workbench-N/ and upstream-N/ folders in any numbers), running nothing.

`--params params/tiny-qwen3_5-cpu.yaml -p num_questions 10` runs the same on the CPU as a smoke check of the script:
its ratio says nothing about a GPU. Run folders and the upstream way's logs stay in --out (default
results/benchmark-gpu-<timestamp>/).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PARAMS = REPO / "params" / "tiny-qwen3_5-gpu.yaml"
UPSTREAM_GPU_MEMORY_UTILIZATION = 0.8
"""Each upstream engine runs alone: upstream's qwen3_5-hybrid case gives it 0.8 of the GPU (this repo's case before
issue 16)."""
TARGETS = {"cold": 0.8, "warm": 0.6}
SHORT = {"reference": "ref", "speculative": "spec"}
AGREEMENT_FLOOR = {"acceptance_length": 0.01}
"""Smallest difference reported as one (acceptance length; the acceptance rate gets the same floor divided by k, as
the rate is (length - 1) / k); accuracies and output match use one question / prompt."""


# ------------------------------------------------------------------ the upstream way (runs in its own process)


def upstream_script(job_file: Path) -> int:
    """Two `vllm.LLM`s one after the other in this process, as upstream's test builds them; writes the results."""
    job = json.loads(job_file.read_text(encoding="utf-8"))
    log = open(job["log"], "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (this process's whole output)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    from vllm import LLM

    from workbench.core.engine import generate, scheduling_facts
    from workbench.core.startlog import log_offset, read_start_log

    results: dict[str, Any] = {}
    for label in ("reference", "speculative"):
        offset = log_offset(job["log"])
        started = time.perf_counter()
        llm = LLM(**job["llm_kwargs"][label])
        init_s = time.perf_counter() - started
        start = read_start_log(job["log"], offset, init_s)
        gsm8k, generate_s, counters = generate(llm, job["gsm8k_prompts"], job["gsm8k_sampling"],
                                               chat=job["gsm8k_chat"])
        match, match_s, _ = generate(llm, job["match_prompts"], job["match_sampling"], chat=job["match_chat"])
        results[label] = {"init_s": init_s, **start.model_dump(), "generate_s": generate_s, "spec_counters": counters,
                          "match_generate_s": match_s, "gsm8k": [r["completion"] for r in gsm8k],
                          "output_match": [r["completion"] for r in match], **scheduling_facts(llm)}
        llm.llm_engine.engine_core.shutdown()  # upstream: del the LLM and free the GPU before the next one
        del llm
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
    Path(job["result"]).write_text(json.dumps(results), encoding="utf-8")
    return 0


def upstream_job(params_file: Path, overrides: dict[str, Any], on_gpu: bool) -> dict[str, Any]:
    """What the upstream script is given: the case's prompts as the workbench renders them, upstream's settings."""
    from workbench import gsm8k
    from workbench.core.params import load_params
    from workbench.correctness import pipeline, prompts

    engine_kwargs = {k: v for k, v in load_params(params_file, overrides).engine_kwargs.items()
                     if k != "kv_cache_memory_bytes"}  # vLLM sizes the KV cache itself, as upstream lets it
    upstream = {"parallel_engines": False, "engine_cpu_binding": None, "output_match_control": False,
                "engine_kwargs": engine_kwargs,
                **({"gpu_memory_utilization": UPSTREAM_GPU_MEMORY_UTILIZATION} if on_gpu else {})}
    params = load_params(params_file, {**overrides, **upstream})
    sets = prompts.build_prompt_sets(params, gsm8k.load_gsm8k("test", params.dataset),
                                     gsm8k.load_gsm8k("train", params.dataset), str(params_file))
    sampling = pipeline.sampling_settings(params)
    match_sampling = {k: v for k, v in sampling["output_match"].items() if k != "logprobs"}  # upstream asks none
    kwargs = {label: {k: v for k, v in pipeline.llm_kwargs(params, label).items()
                      if k != "per_request_spec_decode_metrics"} for label in ("reference", "speculative")}
    return {"llm_kwargs": kwargs, "gsm8k_prompts": [p.messages if p.format == "chat" else p.prompt for p in sets.gsm8k],
            "gsm8k_chat": sets.gsm8k_format == "chat", "gsm8k_sampling": sampling["gsm8k"],
            "match_prompts": [p.messages if p.format == "chat" else p.prompt for p in sets.output_match],
            "match_chat": sets.match_format == "chat", "match_sampling": match_sampling,
            "questions": [q.question_id for q in sets.questions],
            "kv_env": ({"VLLM_CPU_KVCACHE_SPACE": str(params.cpu_kvcache_space_gib)}
                       if params.cpu_kvcache_space_gib else {})}


# ------------------------------------------------------------------ one run of either way


def timed(command: list[str], env: dict[str, str], log: Path) -> tuple[float, int]:
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        code = subprocess.run(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    return time.perf_counter() - started, code


def scores(completions: dict[str, list[str]], question_ids: list[int], dataset: str | None,
           match: tuple[list[str], list[str]]) -> dict[str, Any]:
    """Accuracies per engine and scorer, and upstream's output match (identical greedy texts)."""
    from workbench import gsm8k

    by_id = {item.question_id: item for item in gsm8k.load_gsm8k("test", dataset)}
    questions = [by_id[i] for i in question_ids]
    correct = {label: gsm8k.score_completions(texts, questions) for label, texts in completions.items()}
    accuracy = {label: {scorer: gsm8k.accuracy(flags) for scorer, flags in by_scorer.items()}
                for label, by_scorer in correct.items()}
    reference, speculative = match
    return {"accuracy": accuracy, "correct": {label: {scorer: [bool(f) for f in flags] for scorer, flags in
                                                      by_scorer.items()} for label, by_scorer in correct.items()},
            "output_match": {"matched": sum(a == b for a, b in zip(reference, speculative)), "total": len(reference)}}


def engine_numbers(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in ("init_s", "start_breakdown", "start_cache_hit", "generate_s",
                                       "match_generate_s")}


def workbench_run(params_file: Path, p_args: list[str], cache: Path, out: Path, env: dict[str, str]) -> dict[str, Any]:
    wall, code = timed([sys.executable, "-m", "workbench.cli", "run", str(params_file), "--out", str(out),
                        "--cache-dir", str(cache), *p_args], env, out.with_name(out.name + ".out"))
    if code not in (0, 1):
        raise SystemExit(f"workbench run exited {code}: see {out.with_name(out.name + '.out')}")
    records = {label: json.loads((out / "records" / f"{label}.json").read_text()) for label in ("reference",
                                                                                                 "speculative")}
    return {"wall_s": wall, "exit_code": code, **workbench_results(out),
            "engines": {label: engine_numbers(record) for label, record in records.items()}}


def workbench_results(out: Path) -> dict[str, Any]:
    """What a finished workbench run folder says, for the agreement: its summary and questions.csv."""
    from workbench.calibration.stats import load_runs

    run = load_runs([out])[0]
    summary, spec = run["summary"], run["summary"].speculative
    completions, correct = _questions(run)
    return {"run_dir": str(out), "completions": completions, "correct": correct,
            "acceptance": {"acceptance_length": spec.acceptance_length, "acceptance_rate": spec.acceptance_rate,
                           "num_drafts": spec.counters.num_drafts,
                           "num_accepted_tokens": spec.counters.num_accepted_tokens},
            "accuracy": {label: getattr(summary, label).accuracy for label in ("reference", "speculative")},
            "output_match": {"matched": summary.output_match.matched, "total": summary.output_match.total},
            "parallel_engines": summary.params.parallel_engines, "gsm8k_identical": summary.gsm8k_identical_completions}


def _questions(run: dict[str, Any]) -> tuple[dict[str, list[str]], dict[str, dict[str, list[bool]]]]:
    """Each engine's GSM8k completions and, per scorer, which questions it got right (a run as
    `calibration.stats.load_runs` reads it)."""
    from workbench.calibration.stats import correctness

    table = run["questions"]
    labels = ("reference", "speculative")
    completions = {label: table[f"{label}_completion"].astype(str).tolist() for label in labels}
    correct = {label: {scorer: correctness(run, label, scorer) for scorer in
                       (c.removeprefix(f"{label}_correct_") for c in table.columns if c.startswith(f"{label}_correct_"))}
               for label in labels}
    return completions, correct


def upstream_run(job: dict[str, Any], folder: Path, env: dict[str, str], dataset: str | None,
                 cache_env: dict[str, str]) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    job_file = folder / "job.json"
    job_file.write_text(json.dumps({**job, "log": str(folder / "upstream.log"), "result": str(folder / "result.json")}),
                        encoding="utf-8")
    wall, code = timed([sys.executable, str(Path(__file__).resolve()), "--upstream-script", str(job_file)],
                       {**env, **cache_env, **job["kv_env"]}, folder / "upstream.out")
    if code != 0 or not (folder / "result.json").is_file():
        raise SystemExit(f"the upstream way exited {code}: see {folder / 'upstream.log'}")
    return {"wall_s": wall, "exit_code": code, **upstream_results(folder, dataset)}


def upstream_results(folder: Path, dataset: str | None) -> dict[str, Any]:
    """What a finished upstream-way folder says (its job.json and result.json), scored as the workbench scores."""
    from workbench.correctness.metrics import acceptance_stats

    job = json.loads((folder / "job.json").read_text())
    result = json.loads((folder / "result.json").read_text())
    numbers = scores({label: result[label]["gsm8k"] for label in result}, job["questions"], dataset,
                     (result["reference"]["output_match"], result["speculative"]["output_match"]))
    return {"run_dir": str(folder), "engines": {label: engine_numbers(record) for label, record in result.items()},
            "acceptance": acceptance_stats(result["speculative"]["spec_counters"]), **numbers,
            "gsm8k_identical": sum(a == b for a, b in zip(result["reference"]["gsm8k"], result["speculative"]["gsm8k"])),
            "completions": {label: result[label]["gsm8k"] for label in result}}


def runs_of_folders(folders: list[Path]) -> dict[str, list[dict[str, Any]]]:
    """Earlier benchmarks' runs, read back from their --out folders (workbench-N/, upstream-N/) and pooled, timings
    left out; the upstream way scored on the GSM8k the workbench's runs used."""
    from workbench.records import load_summary

    def numbered(out: Path, prefix: str) -> list[Path]:
        found = [p for p in out.glob(f"{prefix}-*") if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()]
        return sorted(found, key=lambda p: int(p.name.rsplit("-", 1)[1]))
    for out in folders:
        if not out.is_dir():
            raise SystemExit(f"{out}: not a folder")
    ours = [p for out in folders for p in numbered(out, "workbench")]
    theirs = [p for out in folders for p in numbered(out, "upstream")]
    if not ours or not theirs:
        raise SystemExit(f"{', '.join(map(str, folders))}: needs workbench-N and upstream-N folders (one of each at "
                         "least)")
    dataset = load_summary(ours[0]).params.dataset
    return {"workbench": [workbench_results(p) for p in ours], "upstream": [upstream_results(p, dataset) for p in theirs]}


# ------------------------------------------------------------------ the comparison


PAIRED_ALPHA = 0.05
"""Significance of the paired test that an accuracy differs between the two ways (Bonferroni over the run pairs)."""


def paired_accuracy_test(runs: dict[str, list[dict[str, Any]]], label: str, scorer: str) -> dict[str, Any]:
    """McNemar's exact test, per pair of the two ways' i-th runs (cold with cold, warm with warm; as many pairs as the
    way with fewer runs has), on the same questions.

    Why: an accuracy is decided by the completions that differ, and how many differ between the ways is not
    how many differ between one way's own runs (the engine core in the engine child schedules the whole batch at
    once and repeats its reference exactly, so its own two runs may not differ at all). Under "no difference" a
    question right for one way only is as likely either way round; the test asks whether the split of those
    questions is lopsided (`calibration.stats.paired_comparison`, the test the calibration and the site's run
    comparison use). The ways differ when any pair's p-value is below PAIRED_ALPHA / pairs.
    """
    from workbench.calibration.stats import paired_comparison

    pairs = []
    for workbench, upstream in zip(runs["workbench"], runs["upstream"]):
        test = paired_comparison(workbench["correct"][label][scorer], upstream["correct"][label][scorer])
        pairs.append({"workbench_only": test["reference_only"], "upstream_only": test["speculative_only"],
                      "p": test["mcnemar_pvalue"]})
    level = PAIRED_ALPHA / max(len(pairs), 1)
    return {"pairs": pairs, "alpha": PAIRED_ALPHA, "differs": any(pair["p"] < level for pair in pairs)}


def agreement(runs: dict[str, list[dict[str, Any]]], primary: str) -> list[dict[str, Any]]:
    """Per number: every run's value, the difference between the two ways' means and each way's own spread;
    accuracies also by a paired test on the questions (`paired_accuracy_test`)."""
    def metrics(run: dict[str, Any]) -> dict[str, float]:
        accept = run["acceptance"]
        values = {"acceptance_length": accept["acceptance_length"], "acceptance_rate": accept["acceptance_rate"],
                  "num_drafts": accept["num_drafts"], "num_accepted_tokens": accept["num_accepted_tokens"],
                  "output_match_share": run["output_match"]["matched"] / max(run["output_match"]["total"], 1)}
        for label in ("reference", "speculative"):
            values[f"{label}_accuracy_{primary}"] = run["accuracy"][label][primary]
        return values

    table = {way: [metrics(run) for run in ws] for way, ws in runs.items()}
    questions = len(runs["workbench"][0]["completions"]["reference"]) or 1
    prompts = runs["workbench"][0]["output_match"]["total"] or 1
    first = table["workbench"][0]
    drafts_per_step = ((first["acceptance_length"] - 1) / first["acceptance_rate"]
                       if first["acceptance_rate"] else 1.0)  # k: the rate is (length - 1) / k
    floors = {**AGREEMENT_FLOOR, "acceptance_rate": AGREEMENT_FLOOR["acceptance_length"] / drafts_per_step}
    rows = []
    for name in table["workbench"][0]:
        values = {way: [m[name] for m in ms] for way, ms in table.items()}
        mean = {way: sum(v) / len(v) for way, v in values.items()}
        within = max(max(v) - min(v) for v in values.values())
        floor = (1 / questions if "accuracy" in name else 1 / prompts if "output_match" in name
                 else floors.get(name, 0.0))
        between = abs(mean["workbench"] - mean["upstream"])
        counts = name.startswith("num_")
        row = {"name": name, "values": values, "between": between, "within": within,
               "agree": True if counts else between <= within + floor + 1e-12}
        if "accuracy" in name:
            label = name.split("_accuracy_")[0]
            row["paired"] = paired_accuracy_test(runs, label, primary)
            row["agree"] = row["agree"] or not row["paired"]["differs"]
        rows.append(row)
    return rows


def same_completions(runs: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    """GSM8k completions identical between the two ways' last runs, per engine (greedy: most should be)."""
    last_wb, last_up = runs["workbench"][-1]["completions"], runs["upstream"][-1]["completions"]
    return {label: sum(a == b for a, b in zip(last_wb[label], last_up[label])) for label in last_wb}


def print_agreement_rows(runs: dict[str, list[dict[str, Any]]], primary: str) -> tuple[list[dict[str, Any]],
                                                                                         dict[str, int]]:
    """The agreement rows and the GSM8k completions identical between the ways' last runs, printed and returned."""
    rows = agreement(runs, primary)
    print("\nagreement (each run; difference of the two ways' means; the larger of each way's own run-to-run spread):")
    for row in rows:
        shown = "  ".join(" ".join(f"{v:.4g}" for v in vs) for vs in row["values"].values())
        paired = row.get("paired")
        tested = ("; paired test: right for one way only (workbench/upstream) " + ", ".join(
            f"{pair['workbench_only']}/{pair['upstream_only']} p {pair['p']:.3g}" for pair in paired["pairs"])
            if paired else "")
        print(f"  {row['name']:34} {shown}   between {row['between']:.4g}, within {row['within']:.4g}{tested}"
              + ("" if row["agree"] else "   DIFFERS beyond run-to-run"))
    identical = same_completions(runs)
    questions = len(runs["workbench"][-1]["completions"]["reference"])
    print(f"  GSM8k completions identical between the two ways' last runs: reference {identical['reference']}/"
          f"{questions}, speculative {identical['speculative']}/{questions}")
    return rows, identical


def print_agreement(runs: dict[str, list[dict[str, Any]]], primary: str) -> int:
    """`--agreement-of`: the agreement rows and the verdict of runs read back from folders; exit 1 if they differ."""
    rows, _ = print_agreement_rows(runs, primary)
    agree = all(row["agree"] for row in rows)
    print(f"results {'agree' if agree else 'DIFFER'}")
    return 0 if agree else 1


def report(runs: dict[str, list[dict[str, Any]]], case: str, device: str, primary: str) -> dict[str, Any]:
    names = [f"{way}{i + 1}" for way in runs for i in range(len(runs[way]))]
    flat = [run for way in runs for run in runs[way]]
    print(f"\n{case} on {device}: {len(flat[0]['completions']['reference'])} GSM8k questions, "
          f"{flat[0]['output_match']['total']} output-match prompts; runs back to back: {', '.join(names)} "
          "(1 = empty caches)")
    print(f"{'':34}" + "".join(f"{n:>14}" for n in names))
    print(f"{'wall time (s)':34}" + "".join(f"{r['wall_s']:14.1f}" for r in flat))
    from workbench.records import StartBreakdown

    for label in ("reference", "speculative"):
        rows = [("start (s)", lambda e: e["init_s"])]
        rows += [(f"  {phase}", lambda e, p=phase: (e["start_breakdown"] or {}).get(p)) for phase in
                 StartBreakdown.model_fields]
        rows += [("  compile cache hit", lambda e: {True: "hit", False: "compiled", None: "-"}[e["start_cache_hit"]]),
                 ("GSM8k generation (s)", lambda e: e["generate_s"])]
        for title, get in rows:
            cells = [get(r["engines"][label]) for r in flat]
            print(f"{SHORT[label] + ' ' + title:34}" + "".join(f"{c:>14.1f}" if isinstance(c, float) else f"{c!s:>14}"
                                                           for c in cells))
    warm = min(1, len(runs["workbench"]) - 1, len(runs["upstream"]) - 1)  # the second runs (the first if only one)
    ratios = {"cold": runs["workbench"][0]["wall_s"] / runs["upstream"][0]["wall_s"],
              "warm": runs["workbench"][warm]["wall_s"] / runs["upstream"][warm]["wall_s"]}
    result_runs = {"cold": 1, "warm": warm + 1}
    print()
    for kind, ratio in ratios.items():
        print(f"ratio workbench / upstream way, {kind} against {kind} (runs {result_runs[kind]}): {ratio:.3f} "
              f"(target <= {TARGETS[kind]}: {'met' if ratio <= TARGETS[kind] else 'NOT met'})")
    rows, identical = print_agreement_rows(runs, primary)
    agree = all(row["agree"] for row in rows)
    result = {"case": case, "device": device, "walls_s": {n: round(r["wall_s"], 1) for n, r in zip(names, flat)},
              "ratio_cold": round(ratios["cold"], 3), "ratio_warm": round(ratios["warm"], 3),
              "ratio_runs": result_runs,
              "targets": TARGETS, "targets_met": all(ratios[k] <= TARGETS[k] for k in TARGETS),
              "results_agree": agree, "identical_completions": identical,
              "engines": {n: r["engines"] for n, r in zip(names, flat)},
              "agreement": [{k: v for k, v in row.items()} for row in rows],
              "run_dirs": {n: r["run_dir"] for n, r in zip(names, flat)}}
    print(f"results {'agree' if agree else 'DIFFER'}; targets {'met' if result['targets_met'] else 'NOT met'}")
    return result


def warm_disk(params_file: Path, overrides: dict[str, Any], env: dict[str, str]) -> None:
    """Read the libraries (and download a hub model) once, so that neither way's first run pays for a cold disk."""
    from workbench.core.params import load_params

    subprocess.run([sys.executable, "-c", "import torch, vllm"], cwd=REPO, env=env, capture_output=True)
    model = load_params(params_file, overrides).model
    if not Path(model).is_dir() and env.get("HF_HUB_OFFLINE") != "1":
        subprocess.run([sys.executable, "-c", f"from huggingface_hub import snapshot_download; "
                                              f"snapshot_download({model!r})"], env=env, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="the case (default: the GPU case)")
    parser.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"), default=[],
                        help="override a params key on both sides (value read as YAML)")
    parser.add_argument("--runs", type=int, default=4,
                        help="runs of each way, back to back (default 4): the first two give the ratios (cold, warm), "
                             "all of them the agreement")
    parser.add_argument("--out", type=Path, default=None, help="where the run folders and logs stay")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    parser.add_argument("--agreement-of", type=Path, nargs="+", default=None, metavar="DIR",
                        help="judge the agreement of earlier benchmarks' --out folders again, their runs pooled; "
                             "runs nothing")
    parser.add_argument("--upstream-script", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.upstream_script is not None:
        return upstream_script(args.upstream_script)
    if args.runs < 1:
        parser.error("--runs: at least 1")
    if args.agreement_of is not None:
        return print_agreement(runs_of_folders(args.agreement_of), "upstream")
    from workbench.core.caches import compile_cache_env
    from workbench.core.fingerprint import hardware
    from workbench.core.gpu import read_engine_gpu
    from workbench.core.params import load_params, parse_override
    from workbench.core.resources import resolve_case

    params_file = resolve_case(args.params)
    overrides = dict(parse_override(k, v) for k, v in args.param)
    p_args = [a for k, v in args.param for a in ("-p", k, v)]
    params = load_params(params_file, overrides)
    gpu = read_engine_gpu()
    out = args.out or REPO / "results" / f"benchmark-gpu-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        env = {**os.environ, "WORKBENCH_CI_OUTPUTS": "off", "WORKBENCH_REFERENCE_CACHE": str(Path(tmp) / "refs")}
        warm_disk(params_file, overrides, env)
        job = upstream_job(params_file, overrides, gpu is not None)
        runs: dict[str, list[dict[str, Any]]] = {"workbench": [], "upstream": []}
        wb_cache, up_cache = Path(tmp) / "workbench-cache", Path(tmp) / "upstream-cache"  # new and empty: cold
        for i in range(args.runs):
            print(f"[benchmark] workbench run {i + 1}/{args.runs} (caches: {wb_cache})", flush=True)
            runs["workbench"].append(workbench_run(params_file, p_args, wb_cache, out / f"workbench-{i + 1}", env))
            print(f"[benchmark]   {runs['workbench'][-1]['wall_s']:.1f} s", flush=True)
        for i in range(args.runs):
            print(f"[benchmark] upstream way run {i + 1}/{args.runs} (caches: {up_cache})", flush=True)
            runs["upstream"].append(upstream_run(job, out / f"upstream-{i + 1}", env, params.dataset,
                                                 compile_cache_env(up_cache, env)))
            print(f"[benchmark]   {runs['upstream'][-1]['wall_s']:.1f} s", flush=True)
    device = f"{gpu.name} (GPU {gpu.index})" if gpu else hardware().label
    result = report(runs, params_file.stem, device, params.primary_scorer)
    result["out"] = str(out)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k in ("case", "device", "walls_s", "ratio_cold", "ratio_warm",
                                                               "targets_met", "results_agree", "identical_completions",
                                                               "out")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
