"""The injected fault as the correctness run sees it: checked params, the speculative engine's environment,
and the record of what was injected (`Injection` in summary.json).

An injection is a positive control: a named fault (`workbench.inject.faults`) re-creates the effect
of a known speculative-decoding bug in the speculative engine only, and the run must then fail a
check. An unknown fault is refused before any engine starts (`ParamsError`, exit 2); a fault that
could not be installed makes the run an error (`EngineError`, exit 3), never a silent clean run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.core import hook
from workbench.core.errors import EngineError, ParamsError
from workbench.core.params import CaseParams
from workbench.inject.faults import FAULTS, Fault, known_faults
from workbench.inject.points import POINTS
from workbench.inject.runtime import INJECT_ENV, INJECTED, INSTALL_ERROR, INSTALLED, LABEL, fault_env
from workbench.records import Injection, InjectionInstall

SITE_DIR = "inject"
EVENTS = Path("records") / "inject_events.jsonl"
INJECT_HOOK = hook.SiteHook(env=INJECT_ENV, module="workbench.inject.runtime", label=LABEL)


def check_params(params: CaseParams, where: str | Path = "params") -> Fault | None:
    """The case's fault, or None; an unknown name is a `ParamsError` naming the key and the known faults."""
    if params.inject is None:
        return None
    fault = FAULTS.get(params.inject)
    if fault is None:
        raise ParamsError(f"{where}: key 'inject': unknown fault {params.inject!r}; known faults: "
                          f"{', '.join(known_faults())}", key="inject", path=str(where))
    return fault


def rate_of(params: CaseParams) -> float:
    """The rate the case injects at: `inject_rate`, or the fault's default."""
    fault = check_params(params)
    if fault is None:
        return 0.0
    return params.inject_rate if params.inject_rate is not None else fault.default_rate


def events_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / EVENTS


def engine_env(params: CaseParams, run_dir: str | Path) -> dict[str, str]:
    """Environment of the speculative engine's child that installs the case's fault in every process it
    starts (empty without a fault). Writes the generated sitecustomize into `<run_dir>/inject/` and
    starts a fresh event log."""
    fault = check_params(params)
    if fault is None:
        return {}
    run_dir = Path(run_dir)
    site = hook.write_sitecustomize(run_dir / SITE_DIR, [INJECT_HOOK]).parent
    log = events_path(run_dir)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    return hook.site_env(site, fault_env(fault.name, rate_of(params), params.inject_seed, str(log)))


def injection_record(params: CaseParams, run_dir: str | Path) -> Injection | None:
    """What was injected, from the engine processes' event log; None without a fault."""
    fault = check_params(params)
    if fault is None:
        return None
    events = hook.read_events(events_path(run_dir))
    injected = [e for e in events if e.get("kind") == INJECTED]
    installs = {(e["pid"], e.get("target")): e for e in events if e.get("kind") == INSTALLED}
    errors = [e.get("message", "") for e in events if e.get("kind") == INSTALL_ERROR]
    rate = rate_of(params)
    warnings = list(errors)
    rows = sum(int(e.get("rows", 0)) for e in injected)
    if installs and rows == 0 and rate > 0:
        warnings.append(f"installed, but the patched code never corrupted a row at rate {rate:g}")
    return Injection(
        name=fault.name, rate=rate, seed=params.inject_seed, default_rate=fault.default_rate, summary=fault.summary,
        mirrors=list(fault.mirrors), target=POINTS[fault.point].target, events=rows, calls=len(injected),
        first_spec_rows=sum(int(e.get("first_spec", 0)) for e in injected) if fault.point == "gdn_accepted_tokens"
        else None,
        installed_in=[InjectionInstall(pid=e["pid"], process=e.get("process"), engine=e.get("engine"),
                                       target=e.get("target") or "") for e in installs.values()],
        log=str(EVENTS), warnings=warnings)


def verify(params: CaseParams, run_dir: str | Path, finished: bool = True) -> Injection | None:
    """The injection record, or `EngineError` when the fault was not installed or never fired.

    A fault whose target is missing, that no engine process installed (its vLLM module never
    imported) or that corrupted nothing at a positive rate leaves a clean run behind, which must not
    pass for a caught or a missed fault. `finished`: the speculative engine ran to its end (else only
    a failed install is an error of the injection's; the engine's own error says the rest).
    """
    record = injection_record(params, run_dir)
    if record is None:
        return None
    errors = [w for w in record.warnings if not w.startswith("installed, but")]
    if errors:
        raise EngineError(f"injected fault {record.name!r} could not be installed: {errors[0]}")
    elsewhere = sorted({i.engine for i in record.installed_in if i.engine not in (None, "speculative")})
    if elsewhere:
        raise EngineError(f"injected fault {record.name!r} reached the {', '.join(elsewhere)} engine: only the "
                          f"speculative engine may be broken (see {record.log})")
    if not finished:
        return record
    if not record.installed_in:
        raise EngineError(f"injected fault {record.name!r} was installed in no engine process: vLLM never "
                          f"imported {record.target.rsplit('.', 2)[0]} (see {record.log})")
    if record.rate > 0 and record.events == 0:
        raise EngineError(f"injected fault {record.name!r} was installed but never fired at rate {record.rate:g}: "
                          f"the speculative engine ran clean (see {record.log})")
    return record


def describe(params: CaseParams) -> str | None:
    """One line for the report's case header; None without a fault."""
    fault = check_params(params)
    if fault is None:
        return None
    return (f"{fault.name} at rate {rate_of(params):g} (seed {params.inject_seed}), speculative engine only: "
            f"{fault.summary} Mirrors: {'; '.join(m.split(':')[0] for m in fault.mirrors)}")


def faults_table() -> list[dict[str, Any]]:
    """Every registered fault: name, patch point, default rate, what it does and mirrors."""
    return [{"name": f.name, "target": POINTS[f.point].target, "default_rate": f.default_rate,
             "summary": f.summary, "mirrors": list(f.mirrors)} for f in FAULTS.values()]
