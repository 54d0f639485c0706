from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import REPO, TINY_PARAMS, run_cli
from workbench.core.params import CaseParams, ParamsError, load_params, parse_override

ALL_PARAMS = sorted((REPO / "params").glob("*.yaml"))


def write(tmp_path: Path, data: dict, name: str = "case.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("path", ALL_PARAMS, ids=[p.stem for p in ALL_PARAMS])
def test_every_shipped_params_file_validates(path: Path) -> None:
    params = load_params(path)
    assert isinstance(params, CaseParams)
    assert params.speculative_config()["method"] == params.method


def test_default_case_points_at_the_shipped_model() -> None:
    params = load_params(TINY_PARAMS)
    assert Path(params.model).is_absolute() and (Path(params.model) / "model.safetensors").is_file()
    assert params.load_format is None and not params.placeholder_weights


def test_unknown_key_is_named_with_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"model": "Qwen/Qwen3.5-0.8B-Base", "treshold": 0.2})
    with pytest.raises(ParamsError, match=r"case\.yaml.*'treshold'"):
        load_params(path)


def test_wrong_type_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, {"model": "Qwen/Qwen3.5-0.8B-Base", "num_speculative_tokens": "three"})
    with pytest.raises(ParamsError, match=r"case\.yaml.*num_speculative_tokens"):
        load_params(path)


def test_missing_model_path_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, {"model": "../models/not-there"})
    with pytest.raises(ParamsError, match=r"'model'.*not-there"):
        load_params(path)


def test_hub_ids_pass_and_local_paths_resolve(tmp_path: Path) -> None:
    assert load_params(write(tmp_path, {"model": "XiaomiMiMo/MiMo-7B-Base"})).model == "XiaomiMiMo/MiMo-7B-Base"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert load_params(write(tmp_path, {"model": "m"})).model == str((tmp_path / "m").resolve())


def test_overrides_are_read_as_yaml_and_validated(tmp_path: Path) -> None:
    overrides = dict([parse_override("threshold", "0.99"), parse_override("num_questions", "7")])
    params = load_params(TINY_PARAMS, overrides)
    assert params.threshold == 0.99 and params.num_questions == 7
    with pytest.raises(ParamsError, match="threshold"):
        load_params(TINY_PARAMS, {"threshold": 1.5})


def test_cli_bad_params_exit_2_before_any_engine(tmp_path: Path) -> None:
    path = write(tmp_path, {"model": "../models/tiny-qwen3_5-mtp", "bogus_key": 1})
    result = run_cli("run", str(path), "--out", str(tmp_path / "run"), timeout=120)
    assert result.returncode == 2, result.stderr
    assert "bogus_key" in result.stderr and "case.yaml" in result.stderr
    assert not (tmp_path / "run").exists()  # nothing started, no run folder


def test_cli_bad_override_exit_2(tmp_path: Path) -> None:
    result = run_cli("run", str(TINY_PARAMS), "-p", "num_questions", "many", "--out", str(tmp_path / "r"), timeout=120)
    assert result.returncode == 2 and "num_questions" in result.stderr


def test_unknown_override_key_is_named_as_an_override() -> None:
    with pytest.raises(ParamsError, match=r"^-p treshold: unknown key"):
        load_params(TINY_PARAMS, {"treshold": 0.3})


@pytest.mark.parametrize("binding, valid", [(["0", "1"], True), (["0-3,8", "4-7"], True), (["auto", "nobind"], True),
                                            (["0-1|2-3", "4"], True), (["cpu0", "1"], False), (["0-", "1"], False),
                                            (["0;1", "1"], False)])
def test_engine_cpu_binding_takes_what_vllm_reads(binding, valid) -> None:
    """VLLM_CPU_OMP_THREADS_BIND is auto, nobind or CPU lists (one per tensor-parallel rank, joined by |); anything
    else is refused with the key named, before an engine (or an in-process engine child's OpenMP binding) reads it."""
    if valid:
        assert load_params(TINY_PARAMS, {"engine_cpu_binding": binding}).engine_cpu_binding == binding
    else:
        with pytest.raises(ParamsError, match="engine_cpu_binding"):
            load_params(TINY_PARAMS, {"engine_cpu_binding": binding})
