"""The shipped CI files run as shipped: every `workbench` command in them parses with that command's own
parser, every file they read is in the repository (or, for vLLM's paths, in vLLM), the Makefile target they
call exists, and their artifact paths take what the commands write."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
from argparse import Namespace
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from workbench.cli import command_parser

BUILDKITE_STEP = REPO / "ci" / "buildkite" / "spec-decode-mtp-qwen3_5.yaml"
GITHUB_WORKFLOW = REPO / ".github" / "workflows" / "workbench.yml"
OUTPUT_DESTS = {"out", "junit_xml"}
"""argparse destinations that name what a command writes; every other Path argument is read, so must exist."""


class Job:
    """One CI job: its shell command lines and the artifact globs it keeps."""

    def __init__(self, where: str, commands: list[str], artifacts: list[str]) -> None:
        self.where, self.commands, self.artifacts = where, commands, artifacts

    def argvs(self) -> list[list[str]]:
        """Each simple command of every line, split as a shell would (on `&&`, `;`, `|`)."""
        found = []
        for line in self.commands:
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            current: list[str] = []
            for token in lexer:
                if token in ("&&", "||", ";", "|", "&"):
                    found.append(current)
                    current = []
                else:
                    current.append(token)
            found.append(current)
        return [argv for argv in found if argv]

    def workbench_commands(self) -> list[list[str]]:
        """`workbench ...` invocations (any path to the console script), without the program name."""
        return [argv[1:] for argv in self.argvs() if Path(argv[0]).name == "workbench"]


def buildkite_jobs() -> list[Job]:
    pipeline = yaml.safe_load(BUILDKITE_STEP.read_text())
    return [Job(f"{BUILDKITE_STEP.name}:{step['key']}", step["commands"], step.get("artifact_paths", []))
            for step in pipeline["steps"]]


def github_jobs() -> list[Job]:
    workflow = yaml.safe_load(GITHUB_WORKFLOW.read_text())
    jobs = []
    for name, job in workflow["jobs"].items():
        steps = job["steps"]
        uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
        artifacts = [line.strip() for s in uploads for line in s["with"]["path"].splitlines() if line.strip()]
        jobs.append(Job(f"{GITHUB_WORKFLOW.name}:{name}", [s["run"] for s in steps if "run" in s], artifacts))
    return jobs


JOBS = buildkite_jobs() + github_jobs()


def _parse(argv: list[str], capsys) -> Namespace:
    """The command's own argparse parser on the CI file's arguments; an unknown flag fails with argparse's words."""
    command = argv[0]
    try:
        parser = command_parser(command)
    except (LookupError, ImportError, AttributeError) as exc:
        pytest.fail(f"`workbench {command}` is not a registered command with a parser: {exc}")
    parser.allow_abbrev = False  # a CI file spells flags out: an abbreviation breaks when a longer flag is added
    try:
        return parser.parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"`workbench {shlex.join(argv)}` is refused by its parser: {capsys.readouterr().err.strip()}")


def _glob_regex(pattern: str) -> re.Pattern:
    """A Buildkite / actions glob as a regex: `**/` any folders (none included), `*` within one name."""
    out = ""
    for part in re.split(r"(\*\*/|\*\*|\*|\?)", pattern.rstrip("/")):
        out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
    return re.compile(out + ("(?:/.*)?" if pattern.endswith("/") else ""))


def _lane_cases(lane_file: Path) -> list[tuple[str, Path]]:
    """(case name, params file) of each case, as `workbench lane` reads the lane file."""
    from workbench.lane.spec import load_lane

    return [(case.name, case.params_file) for case in load_lane(lane_file)[1]]


def _lane_outputs(args: Namespace) -> list[str]:
    """What `workbench lane --out DIR --junit-xml FILE` leaves to keep: each case's report.html and summary.json in
    DIR/<case>/, DIR/lane.json, and the JUnit file."""
    out = args.out.as_posix()
    files = [f"{out}/lane.json"] + [f"{out}/{name}/{file}" for name, _ in _lane_cases(REPO / args.lane)
                                    for file in ("report.html", "summary.json")]
    return files + ([args.junit_xml.as_posix()] if args.junit_xml else [])


def test_every_ci_job_runs_workbench() -> None:
    """Else every test below would pass on nothing."""
    assert JOBS and all(job.workbench_commands() for job in JOBS)


@pytest.mark.parametrize("job", JOBS, ids=lambda job: job.where)
def test_workbench_commands_parse_and_read_files_that_exist(job, capsys) -> None:
    for argv in job.workbench_commands():
        args = _parse(argv, capsys)
        assert args.junit_xml is not None, f"{job.where}: CI runs must leave a JUnit file"
        inputs = {dest: value for dest, value in vars(args).items() if isinstance(value, Path)
                  and dest not in OUTPUT_DESTS}
        assert inputs, f"{job.where}: `workbench {shlex.join(argv)}` reads no file?"
        for dest, path in inputs.items():
            assert (REPO / path).is_file(), f"{job.where}: {dest} {path} is not in the repository"
        for _, params in _lane_cases(REPO / args.lane):
            assert params.is_file(), f"{job.where}: {args.lane} names {params}, which is not in the repository"


@pytest.mark.parametrize("job", JOBS, ids=lambda job: job.where)
def test_other_commands_name_files_and_targets_that_exist(job) -> None:
    for argv in job.argvs():
        for flag, value in zip(argv, argv[1:]):
            if argv[0] in ("pip", "pip3") and flag in ("-r", "--requirement", "-e", "--editable"):
                assert (REPO / value).exists(), f"{job.where}: {shlex.join(argv)}: {value} is not in the repository"
        if argv[0] == "make":
            targets = [a for a in argv[1:] if not a.startswith("-") and "=" not in a]
            dry = subprocess.run(["make", "-n", "-C", str(REPO), *targets], capture_output=True, text=True)
            assert dry.returncode == 0, f"{job.where}: make {' '.join(targets)}: {dry.stderr.strip()}"


@pytest.mark.parametrize("job", JOBS, ids=lambda job: job.where)
def test_artifact_paths_keep_what_the_commands_write(job, capsys) -> None:
    patterns = [_glob_regex(p) for p in job.artifacts]
    [argv] = job.workbench_commands()
    args = _parse(argv, capsys)
    for written in _lane_outputs(args):
        assert any(p.fullmatch(written) for p in patterns), f"{job.where}: {written} is written but not kept"
    roots = [args.out.as_posix() + "/", args.junit_xml.as_posix()]
    for pattern in job.artifacts:
        assert any(pattern == root or pattern.startswith(root) for root in roots), \
            f"{job.where}: artifact path {pattern} is outside what the command writes ({roots})"


def test_buildkite_step_is_an_optional_single_b200_step_triggered_by_what_it_runs(capsys) -> None:
    [step] = yaml.safe_load(BUILDKITE_STEP.read_text())["steps"]
    assert "b200" in step["device"] and step["num_devices"] == 1 and step["optional"] is True
    assert isinstance(step["timeout_in_minutes"], int) and step["timeout_in_minutes"] > 0
    assert re.fullmatch(r"[a-z0-9-]+", step["key"]), "a Buildkite key"
    dependencies = step["source_file_dependencies"]
    ours = [d for d in dependencies if not d.startswith(("vllm/", "tests/"))]
    for dependency in ours:
        assert (REPO / dependency).exists(), f"source_file_dependencies: {dependency} is not in the repository"
    [argv] = Job("", step["commands"], []).workbench_commands()
    args = _parse(argv, capsys)
    read = [REPO / args.lane] + [params for _, params in _lane_cases(REPO / args.lane)]
    for path in read:
        relative = path.resolve().relative_to(REPO.resolve()).as_posix()
        assert any(relative == d or relative.startswith(d.rstrip("/") + "/") for d in ours), \
            f"a change to {relative} must trigger the step: add it to source_file_dependencies"
    vllm = importlib.util.find_spec("vllm")
    if vllm is None or not vllm.submodule_search_locations:
        pytest.skip("vLLM not installed: its paths cannot be checked")
    site = Path(next(iter(vllm.submodule_search_locations))).parent
    for dependency in (d for d in dependencies if d.startswith("vllm/")):
        assert (site / dependency).exists(), f"source_file_dependencies: vLLM has no {dependency}"


def test_github_workflow_uploads_and_reports_whatever_the_verdict() -> None:
    workflow = yaml.safe_load(GITHUB_WORKFLOW.read_text())
    for name, job in workflow["jobs"].items():
        steps = job["steps"]
        lane = next(i for i, s in enumerate(steps) if "workbench lane" in s.get("run", ""))
        setup = next(s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python@"))
        assert str(setup["with"]["python-version"]) == "3.11"
        after = steps[lane + 1:]
        assert after and all(s.get("if") == "always()" for s in after), \
            f"{name}: steps after the lane must run when it fails (that is when their output matters)"
        assert any(str(s.get("uses", "")).startswith("actions/upload-artifact@") for s in after)
