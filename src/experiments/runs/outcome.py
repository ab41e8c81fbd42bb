"""How a run ends when something goes wrong: one readable line, and a run directory that tells the truth.

A single run that fails before training leaves no run directory behind; one that fails later is marked
failed in its run.json. In a multirun the job is marked failed and the sweep goes on with the other
jobs. Ctrl-C/SIGTERM saves a checkpoint (runs.guards), marks the run interrupted and ends the process
(and a sweep). A resumed run's directory is never deleted.

Three kinds of failure, each one line on stderr:
- a user mistake (ExperimentError): its message, which names the input and the fix;
- the environment (OSError: disk full, read-only, permissions): the file and what the errno means;
- a bug (anything else): its type and message, and where the traceback is: in the run's train.log when
  the run directory stays, else on the console with HYDRA_FULL_ERROR=1 (which always prints it there).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from experiments.errors import CheckpointError, ConfigError, DataError, ExperimentError, RunInterrupted
from experiments.runs import hparams, resume
from experiments.runs.records import write_json_atomic

log = logging.getLogger(__name__)

# What a failed multirun job returns to the sweeper, so that the sweep goes on with the other jobs.
# Not NaN: hydra-optuna-sweeper 1.3 tells optuna 2.10 a NaN value, which it refuses, then retries as FAIL
# with the NaN still attached, which it refuses too, ending the study (facebookresearch/hydra #2237, fixed
# upstream, unreleased). None fails the sweeper's float() first: a FAIL trial, no value.
FAILED_JOB_RESULT: float | None = None

# The run's log file: Hydra's job logging writes `<run dir>/<job name>.log`, and the job is `train`.
LOG_FILE = "train.log"

# What to do about an OSError, by errno: the environment, not the config, is what needs fixing.
_OS_FIXES = {
    errno.ENOSPC: "free some space on that disk, or set paths.log_dir to a folder on another one",
    errno.EDQUOT: "free some of your disk quota, or set paths.log_dir to a folder on another disk",
    errno.EROFS: "the file system is read-only: set paths.log_dir to a writable folder",
    errno.EACCES: "make it writable for you, or set paths.log_dir to a folder you can write",
    errno.EPERM: "make it writable for you, or set paths.log_dir to a folder you can write",
    errno.ENAMETOOLONG: "use a shorter run_name or paths.log_dir",
}


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def mark_record(record_path: Path, status: str, message: str) -> None:
    """Set the status of an existing run.json, keeping its history and run info. Best effort: on a full
    or read-only disk the record cannot change, and the console line already told what happened."""
    with contextlib.suppress(OSError, ValueError):
        record = json.loads(record_path.read_text())
        write_json_atomic(record_path, {**record, "status": status, "error": message})
        hparams.end_session(record_path.parent, status)  # a failed run's TensorBoard HParams row says so too


def os_error_line(exc: OSError) -> str:
    """`<file>: <strerror> (<ERRNO>); <fix>`; a rename or copy names its target, the side that was written."""
    name = exc.filename2 if exc.filename2 is not None else exc.filename
    code = errno.errorcode.get(exc.errno or 0, "")
    what = f"{exc.strerror or exc}" + (f" ({code})" if code else "")
    fix = _OS_FIXES.get(exc.errno or 0, "check that path and the disk it is on")
    return f"{name}: {what}; {fix}" if name is not None else f"{what}; {fix}"


def os_error_of(exc: BaseException) -> OSError | None:
    """The OSError behind exc: itself, or what it was explicitly raised from (a library's wrapper)."""
    while exc is not None:
        if isinstance(exc, OSError):
            return exc
        exc = exc.__cause__
    return None


def is_bug(exc: BaseException) -> bool:
    """Neither a user mistake (ExperimentError) nor the environment (an OSError): a traceback is owed."""
    return not isinstance(exc, ExperimentError) and os_error_of(exc) is None


def one_line(exc: BaseException) -> str:
    """What went wrong, in one line: a user mistake's own message, an OSError's file and fix, or a bug's
    type and message (marked unexpected: its traceback is somewhere else)."""
    if isinstance(exc, ExperimentError):
        return " ".join(str(exc).split())
    if (os_error := os_error_of(exc)) is not None:
        return os_error_line(os_error)
    return f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())}"


def remove_half_written_checkpoint(exc: OSError, output_dir: Path) -> None:
    """A checkpoint of this run whose write failed (a full disk) is half-written: delete it, so that nobody
    loads it and the space it took lets run.json say the run failed. Other files are left as they are."""
    name = exc.filename2 if exc.filename2 is not None else exc.filename
    if name is None or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return
    target = Path(os.fsdecode(name)).resolve()
    if target.suffix == ".ckpt" and target.is_file() and output_dir.resolve() in target.parents:
        with contextlib.suppress(OSError):
            target.unlink()


def run_log_handlers(output_dir: Path) -> list[logging.FileHandler]:
    """The handlers of Hydra's job logging that write into the run directory."""
    folder = output_dir.resolve()
    root = logging.getLogger()
    return [h for h in root.handlers if isinstance(h, logging.FileHandler) and Path(h.baseFilename).parent == folder]


def log_traceback(exc: BaseException, output_dir: Path) -> Path:
    """Write exc's traceback into the run's log file only (the console gets one line), and return the file.

    Through the file handlers of Hydra's job logging that write into the run directory, formatted as the
    run's other lines; if none is there (logging configured otherwise), appended to <run dir>/train.log.
    """
    folder = output_dir.resolve()
    handlers = run_log_handlers(output_dir)
    record = log.makeRecord(
        log.name, logging.ERROR, __file__, 0, "run failed: %s", (exc,), (type(exc), exc, exc.__traceback__)
    )
    for handler in handlers:
        handler.handle(record)
    if handlers:
        return Path(handlers[0].baseFilename)
    log_file = folder / LOG_FILE
    with log_file.open("a") as handle:
        handle.write("".join(traceback.format_exception(exc)))
    return log_file


def report_failure(
    exc: Exception, output_dir: Path, overrides: list[str], resuming: bool, is_global_zero: bool
) -> float | None:
    """Say what went wrong in one line and leave the run directory in a truthful state.

    Returns FAILED_JOB_RESULT for a failed multirun job (the sweep goes on); otherwise exits the process.
    With HYDRA_FULL_ERROR=1 the exception goes on to Hydra, which prints its traceback, after the run
    directory was put in order.
    """
    if not is_global_zero:
        # A DDP child meets the same mistake as rank 0, which reports it; a child exiting non-zero
        # would make Lightning kill rank 0, and with it the rest of a sweep.
        if isinstance(exc, ExperimentError):
            sys.exit(0)
        raise exc
    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    record_path = output_dir / "run.json"
    message = one_line(exc)
    if isinstance(exc, RunInterrupted):
        mark_record(record_path, "interrupted", message)
        if full_error:
            raise exc
        print(f"interrupted: {message}; continue with: {resume.command(output_dir)}", file=sys.stderr)
        sys.exit(128 + exc.signum)  # the shell convention for "killed by this signal"; stops a sweep too

    if (os_error := os_error_of(exc)) is not None:
        remove_half_written_checkpoint(os_error, output_dir)
    # A resumed run that cannot start (data moved, corrupt checkpoint) stays resumable as it was.
    before_training = resuming and isinstance(exc, (ConfigError, DataError, CheckpointError))
    # Training started (or a sweep job, whose directory the sweep report lists): keep its files, say how it ended.
    keep = is_multirun() or resuming or record_path.is_file()
    bug = is_bug(exc)
    console = message
    if bug:
        where = None
        if keep:
            with contextlib.suppress(OSError):
                where = log_traceback(exc, output_dir)
        hint = (
            f"traceback in {where}; HYDRA_FULL_ERROR=1 prints it here"
            if where
            else "HYDRA_FULL_ERROR=1 prints the traceback"
        )
        console = f"{message} ({hint})"
    if is_multirun() and not record_path.is_file():  # failed before training: the sweep report still lists the job
        with contextlib.suppress(OSError):
            write_json_atomic(record_path, {"overrides": overrides, "history": []})
    if keep and not before_training:
        mark_record(record_path, "failed", message)
    elif not keep:  # training never started: leave nothing half-written
        for handler in run_log_handlers(output_dir):  # detached: a later line must not reopen a deleted file
            logging.getLogger().removeHandler(handler)
            handler.close()
        shutil.rmtree(output_dir, ignore_errors=True)
    if full_error:
        raise exc
    print(f"error: {console}", file=sys.stderr, flush=True)
    if is_multirun():
        return FAILED_JOB_RESULT
    sys.exit(1)


# Room for a run's checkpoints, event files and figures; a disk with less is full for this purpose.
MIN_FREE_BYTES = 16 * 2**20
# Bytes in one file name on the usual file systems (ext4, XFS, APFS, NTFS's 255 UTF-16 units are more).
NAME_MAX = 255


def folder_problem(folder: Path) -> str | None:
    """Why a run could not write under `folder` (created if missing), or None: checked without creating anything."""
    existing = Path(os.path.abspath(folder))
    while not existing.exists():
        if existing.is_symlink():
            return f"{existing} is a symbolic link that leads nowhere (broken, or a loop)"
        if existing == existing.parent:
            break
        existing = existing.parent
    if not existing.is_dir():
        if existing == Path(os.path.abspath(folder)):
            return "it is a file, not a folder"
        return f"it is inside {existing}, which is a file, not a folder"
    return writable_problem(existing)


def writable_problem(existing: Path, min_free: int = MIN_FREE_BYTES) -> str | None:
    """Why no file could be written into the existing folder `existing`, or None."""
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return f"{existing} is on a read-only file system"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable for you"
    free = shutil.disk_usage(existing).free
    if free < min_free:
        return f"the disk holding {existing} is full ({free / 2**20:.1f} MB free)"
    return None


class LogDirCheck(Callback):
    """A Hydra callback, first in conf/hydra/default.yaml: an unusable paths.log_dir (a file, read-only, full)
    is one line before Hydra creates the run or sweep directory (a failure there would be its traceback).

    Hydra turns an exception in a callback into a warning and goes on, so this prints and exits itself
    (with no traceback under HYDRA_FULL_ERROR=1 either: the problem is the folder, not the code).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    def _check(self, config: DictConfig, run_dir_key: str) -> None:
        run_dir = OmegaConf.select(config, run_dir_key, default=None)  # `${now:...}` is cached: Hydra gets the same
        long = [part for part in Path(str(run_dir)).parts if len(part.encode()) > NAME_MAX] if run_dir else []
        if long:
            fail(
                f"the folder name {long[0][:40]}... in the run directory is {len(long[0].encode())} bytes, more "
                f"than the {NAME_MAX} a file name may have; use a shorter run_name or paths.log_dir"
            )
        log_dir = OmegaConf.select(config, "paths.log_dir", default=None)
        try:
            problem = folder_problem(Path(str(log_dir))) if log_dir is not None else None
        except OSError as exc:  # what the checks themselves meet (a path too long, a folder we may not list)
            problem = os_error_line(exc)
        if problem:
            fail(f"paths.log_dir={log_dir}: {problem}; set paths.log_dir to a writable folder with free space")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)
