"""A cell's folder on its way back from a worker that shares no file system with the driver.

The worker runs the cell under a temporary root laid out as the sweep folder is (`<cell>/`,
`logs/<cell>.out`, `reference-cache/<key>/`) and sends it back as one tar.gz; the driver unpacks it
into the sweep folder (nothing may land outside it: no absolute names, no `..`, no links), then
rewrites the paths that the run recorded under the worker's root (`summary.json`'s reference source,
`params.yaml`, a cache entry's `key.json`) to where the files now are.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from workbench.core.errors import RunFolderError


def pack(root: Path, names: list[str]) -> bytes:
    """The named entries under `root` (those that exist) as tar.gz bytes, with names relative to `root`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in names:
            if (root / name).exists():
                archive.add(root / name, arcname=name)
    return buffer.getvalue()


def unpack(data: bytes, into: Path) -> list[str]:
    """Extract a worker's archive into `into`; refuse any member that would land elsewhere. Its top-level names."""
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        members = archive.getmembers()
        for member in members:
            path = PurePosixPath(member.name)
            if path.is_absolute() or ".." in path.parts or not (member.isfile() or member.isdir()):
                raise RunFolderError(f"a worker's archive holds {member.name!r}: not a plain file or folder "
                                     f"inside the sweep folder; nothing of it was unpacked", path=into)
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12 / 3.11.4
        archive.extractall(into, members=members, **safe)
    return sorted({PurePosixPath(m.name).parts[0] for m in members})


def _moved(value: Any, roots: dict[str, str]) -> Any:
    if isinstance(value, str):
        for old, new in roots.items():
            if value == old or value.startswith(old + "/"):
                return new + value[len(old):]
        return value
    if isinstance(value, dict):
        return {k: _moved(v, roots) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v, roots) for v in value]
    return value


def relocate(files: list[Path], roots: dict[str, str]) -> None:
    """Rewrite paths under a worker's root (`roots`: worker root -> driver folder) in these JSON / YAML records."""
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            text = json.dumps(_moved(json.loads(text), roots), indent=2, ensure_ascii=False) + "\n"
        else:
            text = yaml.safe_dump(_moved(yaml.safe_load(text), roots), sort_keys=False)
        path.write_text(text, encoding="utf-8")
