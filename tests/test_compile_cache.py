"""Issue 16: the engines' compile caches (vLLM, Triton, Inductor, FlashInfer, CUDA) under one `cache_dir` that later
runs reuse; it never changes the reference key (caches change start times, not outputs). No engine starts here."""

from __future__ import annotations

import pytest

from conftest import REPO, TINY_PARAMS
from workbench.core.caches import CACHE_VARIABLES, compile_cache_dir, compile_cache_env
from workbench.correctness import pipeline


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    return pipeline.prepare(TINY_PARAMS, {"num_questions": 2, "output_match_prompts": 2,
                                          "cache_dir": str(tmp_path_factory.mktemp("caches") / "compile")},
                            tmp_path_factory.mktemp("run") / "run")


@pytest.mark.parametrize("label", pipeline.RUN_LABELS)
def test_both_engines_keep_every_cache_under_cache_dir(context, label) -> None:
    env = pipeline.engine_job(context, label).env
    root = context.params.cache_dir
    for variable in ("VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "TORCHINDUCTOR_CACHE_DIR", "FLASHINFER_WORKSPACE_BASE"):
        assert env[variable].startswith(root + "/"), (variable, env.get(variable))
    assert len({env[variable] for variable in CACHE_VARIABLES}) == len(CACHE_VARIABLES)  # one subfolder each


def test_the_default_folder_and_the_environment_that_moves_it(tmp_path) -> None:
    assert compile_cache_dir(None, {"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "mtp-workbench" / "compile"
    assert compile_cache_dir(None, {}).parts[-3:] == (".cache", "mtp-workbench", "compile")
    assert compile_cache_dir(None, {"WORKBENCH_COMPILE_CACHE": "/ci/cache"}).as_posix() == "/ci/cache"
    assert compile_cache_dir("/mine", {"WORKBENCH_COMPILE_CACHE": "/ci/cache"}).as_posix() == "/mine"
    # Triton's autotuning results are kept unless the environment says otherwise
    assert compile_cache_env(tmp_path, {})["TRITON_CACHE_AUTOTUNING"] == "1"
    assert "TRITON_CACHE_AUTOTUNING" not in compile_cache_env(tmp_path, {"TRITON_CACHE_AUTOTUNING": "0"})


def test_cache_dir_is_not_part_of_the_reference_key(tmp_path) -> None:
    """A reference computed with one compile cache is reused by a run with another: same key. (The key does follow
    what changes outputs: another max_num_seqs is another key.)"""
    small = {"num_questions": 2, "output_match_prompts": 2}
    first = pipeline.case_reference_key(TINY_PARAMS, {**small, "cache_dir": str(tmp_path / "a")})
    second = pipeline.case_reference_key(TINY_PARAMS, {**small, "cache_dir": str(tmp_path / "b")})
    assert first.digest() == second.digest()
    assert not any(str(tmp_path) in str(value) for value in first.model_dump().values())
    other = pipeline.case_reference_key(TINY_PARAMS, {**small, "max_num_seqs": 64})
    assert other.digest() != first.digest()


def preflight_only(notebook, params_file, overrides, out, *args, preflight=None, **kwargs):
    """`run_notebook_case` up to its preflight (the params read as it reads them), then stop: a test of what is
    refused before the start must not start engines when the refusal is gone."""
    from workbench.core.params import load_params

    preflight(load_params(params_file, overrides), params_file)
    raise AssertionError("not refused: the run would start its engines")


@pytest.mark.parametrize("command", [["run", str(TINY_PARAMS)], ["audit", str(TINY_PARAMS)],
                                     ["lane", str(REPO / "lanes" / "tiny-cpu.yaml")]])
def test_cache_dir_flag_reaches_the_params_and_a_bad_folder_is_refused_exit_2(tmp_path, command, capsys,
                                                                             monkeypatch) -> None:
    """`--cache-dir` on run, audit and lane is `-p cache_dir`; a folder that cannot be made is bad input, refused
    before any engine starts."""
    from workbench.cli import main
    from workbench.core import notebook
    from workbench.lane import runner

    def started(*args, **kwargs):
        raise AssertionError("not refused: the run would start its engines")

    monkeypatch.setattr(notebook, "run_notebook_case", preflight_only)  # never an engine, even when not refused
    monkeypatch.setattr(runner, "run_lane", started)

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code = main([*command, "--cache-dir", str(blocker / "compile"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "key 'cache_dir'" in err and str(blocker / "compile") in err
    assert not (tmp_path / "out").exists()
