"""Errors that mean "the user asked for something we cannot do", and every failure as one line.

Three kinds of failure, each reported as one line (`one_line`):
- a user mistake (ExperimentError): its message, which names the input and the fix;
- the environment (an OSError: disk full, read-only, permissions): the file and what the errno means;
- a bug (anything else): its type and message; the caller says where its traceback is.
"""

from __future__ import annotations

import errno
import os


class ExperimentError(Exception):
    """Base class: the message is the whole story (what is wrong and how to fix it)."""


class ConfigError(ExperimentError):
    """A config value is invalid; the message names the key."""


class DataError(ExperimentError):
    """Dataset files are missing, unreadable or inconsistent; the message names the files."""


class CheckpointError(ExperimentError):
    """A checkpoint is missing, corrupt or does not match the model config; the message names the file."""


class TrainingDiverged(ExperimentError):
    """The loss became NaN/inf; the message names step, epoch and learning rate."""


class RunInterrupted(ExperimentError):
    """Ctrl-C or SIGTERM stopped training after saving a checkpoint; the run can be resumed."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class RunPruned(Exception):
    """A search's pruner stopped this run early (experiments.search.pruning): an answer, not a failure."""


# HYDRA_FULL_ERROR=1 asks for tracebacks. While config.mistakes.one_line_mistakes runs a Hydra app it sets that switch
# for Hydra and keeps the user's own value here.
USER_FULL_ERROR = "EXPERIMENTS_FULL_ERROR"


def full_error() -> bool:
    """Whether the user asked for full tracebacks (HYDRA_FULL_ERROR=1)."""
    return os.environ.get(USER_FULL_ERROR, os.environ.get("HYDRA_FULL_ERROR", "")) == "1"


class JobNotStarted(ExperimentError):
    """A parallel sweep was stopped (Ctrl-C/SIGTERM) before this job began: it leaves nothing behind."""


# What to do about an OSError, by errno: the environment, not the config, is what needs fixing.
_OS_FIXES = {
    errno.ENOSPC: "free some space on that disk, or set paths.log_dir to a folder on another one",
    errno.EDQUOT: "free some of your disk quota, or set paths.log_dir to a folder on another disk",
    errno.EROFS: "the file system is read-only: set paths.log_dir to a writable folder",
    errno.EACCES: "make it writable for you, or set paths.log_dir to a folder you can write",
    errno.EPERM: "make it writable for you, or set paths.log_dir to a folder you can write",
    errno.ENAMETOOLONG: "use a shorter run_name or paths.log_dir",
}


def os_error_line(exc: OSError) -> str:
    """`<file>: <strerror> (<ERRNO>); <fix>`; a rename or copy names its target, the side that was written."""
    name = exc.filename2 if exc.filename2 is not None else exc.filename
    code = errno.errorcode.get(exc.errno or 0, "")
    what = f"{exc.strerror or exc}" + (f" ({code})" if code else "")
    fix = _OS_FIXES.get(exc.errno or 0, "check that path and the disk it is on")
    return f"{name}: {what}; {fix}" if name is not None else f"{what}; {fix}"


def os_error_of(exc: BaseException | None) -> OSError | None:
    """The OSError behind exc: itself, what it was explicitly raised from (a library's wrapper), or an
    OSError of the environment (a full, read-only or failing disk, permissions) that was being handled
    when it was raised (torch's zip writer reports a full disk as a RuntimeError raised that way).
    Followed through the whole chain; a context that was being handled is taken only for the
    environment's errnos, since a library may turn a missing file into an answer of its own."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError):
            return exc
        if exc.__cause__ is not None:
            exc = exc.__cause__
            continue
        context = exc.__context__
        if context is not None and not exc.__suppress_context__:
            found = os_error_of(context)
            if found is not None and (found.errno in _OS_FIXES or found.errno == errno.EIO):
                return found
        return None
    return None


def is_bug(exc: BaseException) -> bool:
    """Neither a user mistake (ExperimentError) nor the environment (an OSError): a traceback is owed."""
    return not isinstance(exc, ExperimentError | RunPruned) and os_error_of(exc) is None


def one_line(exc: BaseException) -> str:
    """What went wrong, in one line: a user mistake's own message, an OSError's file and fix, or a bug's
    type and message (marked unexpected: its traceback is somewhere else)."""
    if isinstance(exc, ExperimentError | RunPruned):
        return " ".join(str(exc).split())
    if (os_error := os_error_of(exc)) is not None:
        return os_error_line(os_error)
    return f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())}"
