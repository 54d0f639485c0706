"""How the probe gets into every process vLLM starts: a generated `sitecustomize.py` and the
environment that puts it first on `PYTHONPATH`.

A Python process runs `sitecustomize` at interpreter start, before anything imports vLLM; the
generated one imports `workbench.audit.probe` (standard library only) and calls
`install_from_env()` when the audit's environment variables are set.
"""

from __future__ import annotations

import os
from pathlib import Path

import workbench
from workbench.audit.probe import PROBE_CONTROL_ENV, PROBE_CUDA_ENV, PROBE_LOG_ENV

SITECUSTOMIZE = '''\
# Written by workbench.audit for one no-sync audit run. Every Python process started with this
# folder first on PYTHONPATH (vLLM's EngineCore and workers) loads the seq_lens_cpu probe here,
# before anything imports vLLM.
import os as _os

if _os.environ.get("{env}"):
    try:
        from workbench.audit.probe import install_from_env as _install

        _install()
    except Exception as _exc:  # never stop an engine process for the probe
        import sys as _sys

        print(f"[workbench.audit] probe not installed: {{_exc!r}}", file=_sys.stderr)
'''


def write_sitecustomize(folder: Path) -> Path:
    """The probe's `sitecustomize.py` in `folder` (the run folder's `probe/`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sitecustomize.py"
    path.write_text(SITECUSTOMIZE.format(env=PROBE_LOG_ENV), encoding="utf-8")
    return path


def package_root() -> Path:
    """The folder that holds the `workbench` package (a checkout's root, or site-packages)."""
    return Path(workbench.__file__).resolve().parent.parent


def probe_env(log_path: Path, control_path: Path, site_dir: Path, cuda: bool = True) -> dict[str, str]:
    """Environment that loads the probe into every Python process started with it.

    `site_dir` (with the generated `sitecustomize.py`) goes first on `PYTHONPATH`, then the folder
    that holds `workbench`, so `import workbench.audit.probe` works there too.
    """
    path = [str(site_dir), str(package_root())] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {PROBE_LOG_ENV: str(log_path), PROBE_CONTROL_ENV: str(control_path),
            PROBE_CUDA_ENV: "1" if cuda else "0", "PYTHONPATH": os.pathsep.join(dict.fromkeys(path))}
