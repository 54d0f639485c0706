"""The package's shape: upstream's settings built in one place, registries, packaged resources, imports by use."""

from __future__ import annotations

import ast
import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, TINY_PARAMS, recorded_context
from workbench.core.errors import ParamsError
from workbench.core.resources import case_names, resolve_case
from workbench.correctness import pipeline

PACKAGE = REPO / "workbench"

# Upstream's settings, written out from vLLM's tests (gsm8k_eval.py, spec_decode utils.py), not read from our code.
UPSTREAM_GSM8K_SAMPLING = {"temperature": 0.0, "max_tokens": 256, "stop": ["Question", "Assistant:", "<|separator|>"]}
UPSTREAM_MATCH_TEMPERATURE, UPSTREAM_MATCH_MAX_TOKENS, UPSTREAM_SHOTS = 0.0, 10, 5


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    ctx = pipeline.prepare(TINY_PARAMS, {"num_questions": 3, "output_match_prompts": 4},
                           tmp_path_factory.mktemp("run") / "run")
    return {label: pipeline.engine_job(ctx, label) for label in pipeline.RUN_LABELS}


@pytest.mark.parametrize("label", ["reference", "speculative"])
def test_engine_jobs_carry_upstreams_settings(jobs, label) -> None:
    """Changing temperature, max_tokens, stop strings, shots or stats in the job fails here, with no engine."""
    job = jobs[label]
    assert job.gsm8k_sampling == UPSTREAM_GSM8K_SAMPLING
    assert job.match_sampling["temperature"] == UPSTREAM_MATCH_TEMPERATURE
    assert job.match_sampling["max_tokens"] == UPSTREAM_MATCH_MAX_TOKENS
    assert set(job.match_sampling) == {"temperature", "max_tokens", "logprobs"}  # logprobs: read-only, for near-ties
    assert job.llm_kwargs["disable_log_stats"] is False  # spec-decode counters need stats
    for prompt in job.gsm8k_prompts:
        assert prompt.count("Question:") == UPSTREAM_SHOTS + 1 and prompt.endswith("Answer:")
    if label == "speculative":
        assert job.llm_kwargs["speculative_config"] == {"method": "mtp", "num_speculative_tokens": 1}
    else:
        assert "speculative_config" not in job.llm_kwargs
    # the two engines differ in speculation only
    other = jobs["speculative" if label == "reference" else "reference"]
    assert job.gsm8k_prompts == other.gsm8k_prompts and job.match_prompts == other.match_prompts
    shared = {k: v for k, v in job.llm_kwargs.items() if k not in ("speculative_config", "per_request_spec_decode_metrics")}
    assert shared == {k: v for k, v in other.llm_kwargs.items()
                      if k not in ("speculative_config", "per_request_spec_decode_metrics")}


def test_scorer_registry_drives_scoring_and_summaries(tmp_path) -> None:
    from workbench.gsm8k import GSM8kItem, scorers

    class FirstNumber(scorers.Scorer):
        name = "first_number"
        description = "the first integer"

        def extract(self, text: str) -> str | None:
            found = re.search(r"\d+", text)
            return found.group(0) if found else None

    scorers.register_scorer(FirstNumber())
    try:
        items = [GSM8kItem(0, "q", "so #### 7")]
        flags = scorers.score_completions(["7 apples, not 9"], items)
        assert list(flags) == ["upstream", "strict", "flexible", "first_number"]
        assert flags["first_number"] == [True] and flags["upstream"] == [False]
        with pytest.raises(ValueError, match="already registered"):
            scorers.register_scorer(FirstNumber())
    finally:
        scorers.SCORERS.pop("first_number")


def test_check_registry_is_what_every_summary_is_judged_by(recorded, tmp_path) -> None:
    from workbench.core.checks import CHECKS, checks_for, register_check
    from workbench.records import Check

    names = [c.name for c in checks_for("correctness")]
    assert names == ["reference_accuracy", "speculative_accuracy", "output_match", "acceptance_length",
                     "async_scheduling", "acceptance_length_vs_baseline", "acceptance_per_position_vs_baseline",
                     "accuracy_vs_baseline"]

    @register_check("always_fails", kinds=("correctness",))
    def always_fails(summary) -> Check:
        return Check(name="always_fails", status="failed", message="registered in a test")

    try:
        ctx = recorded_context(recorded, tmp_path / "run")
        table = pipeline.score(ctx, recorded["reference"], recorded["speculative"])
        match = pipeline.compare_outputs(ctx, recorded["reference"], recorded["speculative"])
        summary = pipeline.build_summary(ctx, recorded["reference"], recorded["speculative"], table, match,
                                         pipeline.acceptance(recorded["speculative"]))
        assert [c.name for c in summary.checks] == [*names, "always_fails"] and summary.passed is False
    finally:
        CHECKS.pop("always_fails")


def test_packaged_cases_resolve_by_name_from_any_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert "tiny-qwen3_5-cpu" in case_names() and "qwen3_5-hybrid" in case_names()
    assert resolve_case("tiny-qwen3_5-cpu").samefile(TINY_PARAMS)
    assert resolve_case("tiny-qwen3_5-cpu.yaml").samefile(TINY_PARAMS)
    with pytest.raises(ParamsError, match="known cases: .*tiny-qwen3_5-cpu"):
        resolve_case("no-such-case")
    with pytest.raises(ParamsError, match="params file not found"):
        resolve_case("somewhere/tiny-qwen3_5-cpu.yaml")  # a path is a path, not a name


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names taken) for each `import`/`from` in a module, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_imports_by_use_no_cycles_nothing_private_across_modules() -> None:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for module, names in _imports(path):
            if not module.startswith("workbench"):
                continue
            for target in [f"{module}.{n}" for n in names if f"{module}.{n}" in modules] or [module]:
                edges.add(target)
            private = [n for n in names if n.startswith("_") and module != name]
            assert not private, f"{name} imports private {private} from {module}"
            if name.startswith(("workbench.core", "workbench.records")):  # the shared core imports no flow
                assert module.startswith(("workbench.core", "workbench.records", "workbench.gsm8k")), \
                    f"core module {name} imports {module}"
        graph[name] = {e for e in edges if e in modules and e != name}
    # no cycles among modules (depth-first search)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, nxt]))
            if not state.get(nxt):
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in graph:
        if not state.get(node):
            visit(node, [])


def test_probe_imports_only_the_standard_library() -> None:
    code = ("import sys, workbench.audit.probe; heavy = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'pydantic', 'pandas', 'numpy', 'yaml', 'vllm', 'torch'}); print(heavy); assert not heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stdout + result.stderr


def test_what_runs_before_the_engines_start_imports_nothing_it_does_not_need() -> None:
    """The seconds before the engines start are the workbench's own overhead (issue 15: at most 5 % of a run).

    The notebook's first cell imports the pipeline, prepares the prompts and starts the engines: pandas waits
    until a table is built. The command itself needs neither pandas nor scipy (1.3 s here, once pulled in by the
    benchmark-file writer), and imports papermill, whose nbformat would build jsonschema's RFC 3987 grammar
    (1.3 s here) for string formats no notebook schema uses.
    """
    code = ("import sys, workbench.correctness.pipeline; assert 'pandas' not in sys.modules, 'pandas imported'; "
            "from workbench.cli import main; main(['run', '--help'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stdout + result.stderr
    code = ("import sys; from workbench.cli import main\ntry:\n    main(['run', '/nonexistent.yaml'])\n"
            "finally:\n    heavy = sorted({'scipy', 'statsmodels', 'pandas', 'matplotlib'} & set(sys.modules))\n"
            "    assert not heavy, f'the command imported {heavy}'\n"
            "    import papermill, nbformat.validator\n"
            "    assert sys.modules.get('rfc3987_syntax') is None, 'rfc3987_syntax imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert "rfc3987_syntax imported" not in result.stderr and "the command imported" not in result.stderr, \
        result.stderr[-2000:]
