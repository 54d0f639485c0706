"""One error hierarchy and one set of exit codes for every command.

Each error carries structured fields (`key`, `path`) beside its message, and knows the exit code
a command ends with when it escapes: bad input is 2 (nothing started), an engine or
infrastructure failure is 3, a cancel (SIGTERM, SIGINT) is 4. Failed checks are not errors:
they end a run with 1.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """What `workbench run|audit|calibrate|...` exit with (README, "Exit codes")."""

    OK = 0
    CHECKS_FAILED = 1
    BAD_INPUT = 2
    ERROR = 3
    CANCELLED = 4


class WorkbenchError(Exception):
    """Root of the workbench's errors; `exit_code` is what a command ends with when it escapes."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, key: str | None = None, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.path = None if path is None else str(path)


class BadInputError(WorkbenchError, ValueError):
    """Input that cannot be run: nothing was started (exit 2)."""

    exit_code = ExitCode.BAD_INPUT


class ParamsError(BadInputError):
    """Bad params: the message names the file and the offending key."""


class RecordError(BadInputError):
    """A run folder's file that cannot be read as the workbench's records (wrong shape or schema version)."""


class CalibrationError(BadInputError):
    """Calibration input that cannot be used (missing folder or column, inconsistent runs)."""


class EngineError(WorkbenchError, RuntimeError):
    """An engine could not start or generate; the message carries the cause and log tail (exit 3)."""


class RunFolderError(WorkbenchError, OSError):
    """The run folder cannot be created or written (unwritable, full disk): an infrastructure error (exit 3)."""


class NotebookError(WorkbenchError, RuntimeError):
    """A notebook did not run through for a reason other than its assertion cell (exit 3)."""
