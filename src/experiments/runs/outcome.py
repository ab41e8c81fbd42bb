"""How a run ends when something goes wrong: one readable line, and a run directory that tells the truth.

A single run that fails before training leaves no run directory behind; one that fails later is marked
failed in its run.json. In a multirun the job is marked failed and the sweep goes on with the other
jobs. Ctrl-C/SIGTERM saves a checkpoint (runs.guards), marks the run interrupted and ends the process
(and a sweep). A resumed run's directory is never deleted.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from experiments.errors import CheckpointError, ConfigError, DataError, ExperimentError, RunInterrupted
from experiments.runs import hparams, resume
from experiments.runs.records import write_json_atomic


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def mark_record(record_path: Path, status: str, message: str) -> None:
    """Set the status of an existing run.json, keeping its history and run info."""
    record = json.loads(record_path.read_text())
    write_json_atomic(record_path, {**record, "status": status, "error": message})
    hparams.end_session(record_path.parent, status)  # a failed run's TensorBoard HParams row says so too


def report_failure(
    exc: Exception, output_dir: Path, overrides: list[str], resuming: bool, is_global_zero: bool
) -> None:
    """Say what went wrong in one line and leave the run directory in a truthful state.

    Returns None for a failed multirun job (the sweep goes on); otherwise exits the process. Bugs (not
    ExperimentError) are re-raised for Hydra to print with their traceback, as is everything when
    HYDRA_FULL_ERROR=1.
    """
    if not is_global_zero:
        # A DDP child meets the same mistake as rank 0, which reports it; a child exiting non-zero
        # would make Lightning kill rank 0, and with it the rest of a sweep.
        if isinstance(exc, ExperimentError):
            sys.exit(0)
        raise exc
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise exc
    if not isinstance(exc, ExperimentError) and not is_multirun():
        raise exc  # a bug, not a user mistake: Hydra prints the traceback
    record_path = output_dir / "run.json"
    message = " ".join(str(exc).split()) if isinstance(exc, ExperimentError) else f"{type(exc).__name__}: {exc}"
    if isinstance(exc, RunInterrupted):
        print(f"interrupted: {message}; continue with: {resume.command(output_dir)}", file=sys.stderr)
        mark_record(record_path, "interrupted", message)
        sys.exit(128 + exc.signum)  # the shell convention for "killed by this signal"; stops a sweep too
    print(f"error: {message}", file=sys.stderr, flush=True)
    if is_multirun():
        if not record_path.is_file():  # failed before training: the sweep report still lists the job
            write_json_atomic(record_path, {"overrides": overrides, "history": []})
        mark_record(record_path, "failed", message)
        # Not NaN: hydra-optuna-sweeper 1.3 tells optuna 2.10 a NaN value, which it refuses, then retries as
        # FAIL with the NaN still attached, which it refuses too, ending the study (facebookresearch/hydra
        # #2237, fixed upstream, unreleased). None fails the sweeper's float() first: a FAIL trial, no value.
        return None
    # A resumed run that cannot start (data moved, corrupt checkpoint) stays resumable as it was.
    before_training = resuming and isinstance(exc, (ConfigError, DataError, CheckpointError))
    if record_path.is_file() and not before_training:  # training started: keep its files, say how it ended
        mark_record(record_path, "failed", message)
    elif not resuming:  # training never started: leave nothing half-written
        logging.shutdown()
        shutil.rmtree(output_dir, ignore_errors=True)
    sys.exit(1)
