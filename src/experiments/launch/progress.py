"""The console of a parallel sweep: one line as each job starts, one as it ends, and the sweep's progress.

Jobs that run side by side cannot share a terminal: their progress bars and log lines would interleave.
In a parallel sweep (experiments.launch.launcher) each job's own console output (its log lines, Lightning's
messages and warnings, an `error:` line) goes to its train.log instead, and the console gets

    Sweep: 8 jobs, 2 at a time (1 thread each): outputs/sweeps/2026-12-06_10-00-00.000000
    start  000_batch_size-64_lr-0.03_seed-1
    done   000_batch_size-64_lr-0.03_seed-1: val acc 97.12%, test acc 97.30% (6.1 s)  [1/8 done, about 0:42 left]
    failed 004_batch_size-64_lr-0.3_seed-1: training diverged: ...  [5/8 done, about 0:12 left]   (on stderr)

The count and the estimate come from `<sweep dir>/.progress.json`, which the launcher starts and each job
updates when it ends, under a lock: the jobs run in separate worker processes. Hand-written because
neither Hydra nor joblib reports jobs as they end (joblib returns all results at the end of the batch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments import atomic
from experiments.launch.launcher import Placement, runs_in_parallel
from experiments.lifecycle import stops

PROGRESS_FILE = ".progress.json"
_LOCK_FILE = ".progress.lock"


def start(sweep_dir: Path, jobs: int, first_job: int, placement: Placement) -> None:
    """A batch of `jobs` jobs is about to run (Optuna launches several batches: the total grows), each
    placed as `placement` says."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with _locked(sweep_dir):
        state = _read(sweep_dir) or {"started": time.time(), "total": 0, "done": 0, "ended": {}}
        state["total"] = max(state["total"], first_job + jobs)
        state["placement"] = dataclasses.asdict(placement)
        atomic.write_text(sweep_dir / PROGRESS_FILE, json.dumps(state))
    print(f"Sweep: {jobs} jobs, {placement.describe()}: {sweep_dir}", flush=True)


def placement(sweep_dir: Path) -> Placement | None:
    """How the launcher placed this sweep's jobs (None: another launcher)."""
    state = _read(sweep_dir)
    return Placement(**state["placement"]) if state and "placement" in state else None


def _read(sweep_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((sweep_dir / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _locked(sweep_dir: Path) -> Iterator[None]:
    with (sweep_dir / _LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def job_ended(sweep_dir: Path, job: str, status: str) -> str:
    """Count a job as ended; returns '[3/8 done, about 0:18 left]'."""
    with _locked(sweep_dir):
        state = _read(sweep_dir)
        if state is None:
            return ""
        state["ended"][job] = status
        state["done"] = len(state["ended"])
        atomic.write_text(sweep_dir / PROGRESS_FILE, json.dumps(state))
    done, total = state["done"], state["total"]
    left = (time.time() - state["started"]) / done * (total - done) if done < total else 0.0
    estimate = f", about {int(left) // 60}:{int(left) % 60:02d} left" if done < total else ""
    return f"[{done}/{total} done{estimate}]"


def interrupted_line(sweep_dir: Path) -> str:
    """What a stopped sweep says last: how many jobs were interrupted, and how to go on."""
    state = _read(sweep_dir) or {"ended": {}, "total": 0}
    interrupted = sum(1 for status in state["ended"].values() if status == "interrupted")
    waiting = state["total"] - len(state["ended"])
    return (
        f"interrupted: {interrupted} running job(s) saved a checkpoint, {waiting} not started; continue each with "
        f"resume=last (the newest interrupted job first), or rebuild the report with experiments-compare "
        f"sweep_dir={sweep_dir}"
    )


def _result(run_dir: Path, seconds: float) -> tuple[str, str]:
    """(status, what the end line says) from the job's run.json."""
    try:
        record = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return "failed", "no run.json (see train.log)"
    status = str(record.get("status", "failed"))
    if status != "completed":
        return status, str(record.get("error") or "see train.log")
    metrics = record.get("metrics") or {}
    parts = [
        f"{name} {metrics[key]:.2%}"
        for name, key in (("val acc", "val/acc_best"), ("test acc", "test/acc"))
        if isinstance(metrics.get(key), (int, float))
    ]
    return status, f"{', '.join(parts) or 'no metrics'} ({seconds:.1f} s)"


class SweepConsole(Callback):
    """Hydra callback (conf/hydra/default.yaml): in a parallel sweep, each job's console output goes to its
    train.log and the console gets one line as the job starts and one as it ends. Other launchers: nothing."""

    def __init__(self) -> None:
        self._console: tuple[IO[str], IO[str]] | None = None
        self._log: IO[str] | None = None
        self._started = 0.0

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not runs_in_parallel(config.hydra):
            return
        stops.hold_between_jobs(str(config.hydra.sweep.dir))  # a Ctrl-C from here on: see lifecycle.stops
        run_dir = Path(str(config.hydra.runtime.output_dir))
        self._started = time.perf_counter()
        if stops.noted() is None:  # else the job does not start (experiments.launch.parallel)
            print(f"start  {run_dir.name}", flush=True)
        root = logging.getLogger()
        for handler in list(root.handlers):  # Hydra's console handler; the job's file handler stays
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                root.removeHandler(handler)
        files = [h.baseFilename for h in root.handlers if isinstance(h, logging.FileHandler)]
        self._log = open(files[0] if files else run_dir / "train.log", "a", buffering=1)  # noqa: SIM115
        self._console = (sys.stdout, sys.stderr)
        sys.stdout = sys.stderr = self._log  # warnings, prints and the job's `error:` line

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if self._console is None:
            return
        sys.stdout, sys.stderr = self._console
        self._console = None
        if self._log is not None:
            self._log.close()
            self._log = None
        run_dir = Path(str(config.hydra.runtime.output_dir))
        if not run_dir.exists():  # never started: the sweep was stopped first
            return
        status, said = _result(run_dir, time.perf_counter() - self._started)
        count = job_ended(Path(str(config.hydra.sweep.dir)), run_dir.name, status)
        word = {"completed": "done"}.get(status, status)
        # A failed or interrupted job's line goes where every error line goes: stderr.
        print(
            f"{word:6} {run_dir.name}: {said}  {count}",
            file=sys.stdout if status == "completed" else sys.stderr,
            flush=True,
        )
