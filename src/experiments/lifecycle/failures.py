"""How a run ends when something goes wrong: one readable line, and a run directory that tells the truth.

`ENDINGS` is the whole policy, one row per kind of failure: what run.json says afterwards, what happens
to the run directory, and how the process ends. `report_failure` works out the kind and follows its row.
The line itself comes from experiments.errors.one_line; a bug's traceback goes to the run's train.log
when the run directory stays, and HYDRA_FULL_ERROR=1 prints it on the console instead (after the run
directory was put in order).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sys
import traceback
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from experiments.console import resume_command
from experiments.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ExperimentError,
    JobNotStarted,
    RunInterrupted,
    RunPruned,
    full_error,
    is_bug,
    one_line,
    os_error_of,
)
from experiments.rundir import FAILED, INTERRUPTED, PRUNED, RunDir

log = logging.getLogger(__name__)

# What a failed multirun job returns to the sweeper, so that the sweep goes on with the other jobs.
# Not NaN: hydra-optuna-sweeper 1.3 tells optuna 2.10 a NaN value, which it refuses, then retries as FAIL
# with the NaN still attached, which it refuses too, ending the study (facebookresearch/hydra #2237, fixed
# upstream, unreleased). None fails the sweeper's float() first: a FAIL trial, no value.
FAILED_JOB_RESULT: float | None = None


class Failure(Enum):
    INTERRUPTED = "Ctrl-C or SIGTERM: last.ckpt was saved"
    PRUNED = "a search's pruner stopped the trial early: an answer, not an error"
    INTERRUPTED_SIDE_BY_SIDE = "the same, in a parallel sweep's worker: the launcher ends the sweep"
    NOT_STARTED = "a parallel sweep's job that a Ctrl-C or SIGTERM reached before it began"
    RESUME_REFUSED = "a resume that cannot start (a mistake, data moved, a bad checkpoint)"
    SWEEP_JOB = "a job of a multirun"
    RUN = "a run whose training started"
    NOTHING_STARTED = "a run that failed before training"


class RunDirAfter(Enum):
    MARKED = "kept, run.json gets the status"
    KEPT = "kept as it was: still resumable"
    DELETED = "deleted: nothing half-written stays"


@dataclass(frozen=True)
class Ending:
    run_dir: RunDirAfter
    status: str | None  # the status RunDir writes (MARKED only)
    exit_code: int | None  # None: the job returns FAILED_JOB_RESULT and the sweep goes on


ENDINGS: dict[Failure, Ending] = {
    # 128 + the signal's number, the shell's "killed by this signal"; a non-zero exit stops a sweep too.
    Failure.INTERRUPTED: Ending(RunDirAfter.MARKED, INTERRUPTED, exit_code=128),
    # The sweeper finds its trial already told PRUNED (experiments.search.pruning); the search goes on.
    Failure.PRUNED: Ending(RunDirAfter.MARKED, PRUNED, exit_code=None),
    # The worker goes on (an exit there would make joblib kill the other jobs while they save); the launcher
    # exits 128 + the signal's number once every job has ended (experiments.launch.launcher).
    Failure.INTERRUPTED_SIDE_BY_SIDE: Ending(RunDirAfter.MARKED, INTERRUPTED, exit_code=None),
    # No line: the sweep's last line counts the jobs that did not start, and the plan lists them.
    Failure.NOT_STARTED: Ending(RunDirAfter.DELETED, None, exit_code=None),
    Failure.RESUME_REFUSED: Ending(RunDirAfter.KEPT, None, exit_code=1),
    # The sweep report lists it; a job that failed before training gets a record saying so.
    Failure.SWEEP_JOB: Ending(RunDirAfter.MARKED, FAILED, exit_code=None),
    Failure.RUN: Ending(RunDirAfter.MARKED, FAILED, exit_code=1),
    Failure.NOTHING_STARTED: Ending(RunDirAfter.DELETED, None, exit_code=1),
}


def classify(exc: BaseException, run_dir: RunDir, resuming: bool, multirun: bool, side_by_side: bool) -> Failure:
    if isinstance(exc, JobNotStarted):
        return Failure.NOT_STARTED
    if isinstance(exc, RunInterrupted):
        return Failure.INTERRUPTED_SIDE_BY_SIDE if side_by_side else Failure.INTERRUPTED
    if isinstance(exc, RunPruned):
        return Failure.PRUNED
    if resuming and isinstance(exc, (ConfigError, DataError, CheckpointError)):
        return Failure.RESUME_REFUSED
    if multirun:
        return Failure.SWEEP_JOB
    if resuming or run_dir.started():
        return Failure.RUN
    return Failure.NOTHING_STARTED


def report_failure(
    exc: Exception,
    run_dir: RunDir,
    overrides: list[str],
    *,
    resuming: bool,
    multirun: bool,
    tensorboard: bool,
    is_global_zero: bool,
    side_by_side: bool = False,
) -> float | None:
    """Say what went wrong in one line and leave the run directory as `ENDINGS` says.

    Returns FAILED_JOB_RESULT for a failed multirun job (the sweep goes on); otherwise exits the process.
    """
    if not is_global_zero:
        # A DDP child meets the same mistake as rank 0, which reports it; a child exiting non-zero
        # would make Lightning kill rank 0, and with it the rest of a sweep.
        if isinstance(exc, ExperimentError):
            sys.exit(0)
        raise exc
    wants_traceback = full_error()
    kind = classify(exc, run_dir, resuming, multirun, side_by_side)
    ending = ENDINGS[kind]
    message = one_line(exc)
    if (os_error := os_error_of(exc)) is not None:
        _remove_half_written_checkpoint(os_error, run_dir.path)
    console = message
    if is_bug(exc):
        where = None
        if ending.run_dir is not RunDirAfter.DELETED:
            with contextlib.suppress(OSError):
                where = _log_traceback(exc, run_dir)
        hint = "HYDRA_FULL_ERROR=1 prints the traceback"
        if where:
            hint = f"traceback in {where}; HYDRA_FULL_ERROR=1 prints it here"
        console = f"{message} ({hint})"

    if ending.run_dir is RunDirAfter.MARKED:
        # Best effort: on a full or read-only disk the record cannot change; the console line says what happened.
        with contextlib.suppress(OSError):
            if ending.status == INTERRUPTED:
                run_dir.interrupt(message)
            elif ending.status == PRUNED:
                run_dir.prune(message)
            else:
                run_dir.fail(message, overrides, tensorboard)
    elif ending.run_dir is RunDirAfter.DELETED:
        for handler in _run_log_handlers(run_dir.path):  # detached: a later line must not reopen a deleted file
            logging.getLogger().removeHandler(handler)
            handler.close()
        shutil.rmtree(run_dir.path, ignore_errors=True)

    if kind is Failure.NOT_STARTED:
        return FAILED_JOB_RESULT
    if wants_traceback:
        raise exc
    if isinstance(exc, RunInterrupted):
        print(f"interrupted: {message}; continue with: {resume_command(run_dir.path)}", file=sys.stderr)
        if ending.exit_code is None:
            return FAILED_JOB_RESULT
        sys.exit(ending.exit_code + exc.signum)
    if kind is Failure.PRUNED:
        log.info(message)  # a line of the run, not an error: the search goes on
        return FAILED_JOB_RESULT
    print(f"error: {console}", file=sys.stderr, flush=True)
    if ending.exit_code is None:
        return FAILED_JOB_RESULT
    sys.exit(ending.exit_code)


def _remove_half_written_checkpoint(exc: OSError, output_dir: Path) -> None:
    """A checkpoint of this run whose write failed (a full disk) is half-written: delete it, so that nobody
    loads it and the space it took lets run.json say the run failed. Other files are left as they are."""
    name = exc.filename2 if exc.filename2 is not None else exc.filename
    if name is None or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return
    target = Path(os.fsdecode(name)).resolve()
    if target.suffix == ".ckpt" and target.is_file() and output_dir.resolve() in target.parents:
        with contextlib.suppress(OSError):
            target.unlink()


def _run_log_handlers(output_dir: Path) -> list[logging.FileHandler]:
    """The handlers of Hydra's job logging that write into the run directory."""
    folder = output_dir.resolve()
    root = logging.getLogger()
    return [h for h in root.handlers if isinstance(h, logging.FileHandler) and Path(h.baseFilename).parent == folder]


def _log_traceback(exc: BaseException, run_dir: RunDir) -> Path:
    """Write exc's traceback into the run's log file only (the console gets one line), and return the file.

    Through the file handlers of Hydra's job logging that write into the run directory, formatted as the
    run's other lines; if none is there (logging configured otherwise), appended to <run dir>/train.log.
    """
    handlers = _run_log_handlers(run_dir.path)
    record = log.makeRecord(
        log.name, logging.ERROR, __file__, 0, "run failed: %s", (exc,), (type(exc), exc, exc.__traceback__)
    )
    for handler in handlers:
        handler.handle(record)
    if handlers:
        return Path(handlers[0].baseFilename)
    with run_dir.log.open("a") as handle:
        handle.write("".join(traceback.format_exception(exc)))
    return run_dir.log
