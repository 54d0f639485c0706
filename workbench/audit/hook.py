"""How the probe gets into every process vLLM starts: the core's generated `sitecustomize.py`
(`workbench.core.hook`) with the probe as its one module, and the environment that puts it first
on `PYTHONPATH`.

A Python process runs `sitecustomize` at interpreter start, before anything imports vLLM; the
generated one imports `workbench.audit.probe` (standard library only) and calls
`install_from_env()` when the audit's environment variables are set.
"""

from __future__ import annotations

from pathlib import Path

from workbench.audit.probe import PROBE_CONTROL_ENV, PROBE_CUDA_ENV, PROBE_LOG_ENV
from workbench.core import hook

PROBE_HOOK = hook.SiteHook(env=PROBE_LOG_ENV, module="workbench.audit.probe", label="workbench.audit")
package_root = hook.package_root


def write_sitecustomize(folder: Path) -> Path:
    """The probe's `sitecustomize.py` in `folder` (the run folder's `probe/`)."""
    return hook.write_sitecustomize(folder, [PROBE_HOOK])


def probe_env(log_path: Path, control_path: Path, site_dir: Path, cuda: bool = True) -> dict[str, str]:
    """Environment that loads the probe into every Python process started with it.

    `site_dir` (with the generated `sitecustomize.py`) goes first on `PYTHONPATH`, then the folder
    that holds `workbench`, so `import workbench.audit.probe` works there too.
    """
    return hook.site_env(site_dir, {PROBE_LOG_ENV: str(log_path), PROBE_CONTROL_ENV: str(control_path),
                                    PROBE_CUDA_ENV: "1" if cuda else "0"})
