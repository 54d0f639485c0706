"""The no-sync audit's checks, registered for `audit` summaries.

`no_sync` is skipped (not applicable), never passed, where the engine turned async scheduling
off; a count of 0 from a probe that never reached the model's process fails. `positive_control`
proves the probe counts where the model runs.
"""

from __future__ import annotations

from workbench.core.checks import register_check
from workbench.records import Check, RunSummary


@register_check("no_sync", kinds=("audit",))
def no_sync(summary: RunSummary) -> Check:
    """No lazy seq_lens_cpu initialisation (implicit device->host sync) with async scheduling on."""
    count = summary.sync_count
    if not summary.async_scheduling_active:
        reason = summary.async_scheduling_reason or "the engine's scheduler_config.async_scheduling is False"
        return Check(name="no_sync", status="skipped", observed=count, required=0,
                     message=f"not applicable: async scheduling is not active ({reason})")
    if summary.probe is None or not summary.probe.in_model_process:
        return Check(name="no_sync", status="failed", observed=count, required=0,
                     message="the probe was not installed in any engine process: a count of 0 would mean nothing")
    if count == 0:
        return Check(name="no_sync", status="passed", observed=0, required=0,
                     message="0 lazy seq_lens_cpu initialisations (implicit device->host syncs) "
                             "with async scheduling on")
    phases = ", ".join(f"{k}: {v}" for k, v in (summary.sync_count_by_phase or {}).items())
    return Check(name="no_sync", status="failed", observed=count, required=0,
                 message=f"{count} lazy seq_lens_cpu initialisation(s) with async scheduling on ({phases}); "
                         "stacks in sync_stacks")


@register_check("positive_control", kinds=("audit",))
def positive_control(summary: RunSummary) -> Check:
    """Lazy initialisations forced in the model's process are counted (>= 1): the probe sits there and counts."""
    control = summary.positive_control_count
    if control is None:  # the audit writes a count only when the control ran
        return Check(name="positive_control", status="skipped", observed=None, required=1,
                     message="positive control not run (positive_control=False)")
    if control > 0:
        where = ", ".join(summary.positive_control_processes or [])
        return Check(name="positive_control", status="passed", observed=control, required=1,
                     message=f"the probe counted {control} forced lazy seq_lens_cpu initialisation(s) in {where}")
    return Check(name="positive_control", status="failed", observed=control, required=1,
                 message="the probe counted nothing on forced lazy seq_lens_cpu initialisations: "
                         "it is not in the process that runs the model, or it does not count")
