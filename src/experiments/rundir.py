"""The run directory, and the one class that knows its files and writes its status: `RunDir`.

    <run dir>/
      config.yaml                       the resolved config, written when the run starts (a resume keeps it)
      run.json                          the run record: status, overrides, one row per epoch, final metrics
      train.log                         Hydra's job log: what the run printed, tracebacks of bugs
      checkpoints/last.ckpt             written after every epoch: where `resume=<run dir>` continues
      checkpoints/epoch_starts.jsonl    when each epoch started (experiments.checkpoints.continuity)
      checkpoints/checksums.json        the sha256 of each checkpoint the run wrote (experiments.checkpoints.io)
      events.out.tfevents.*             TensorBoard
      .lock                             held by the process that writes the run (its PID inside)

A run's status goes `running` (training started) -> `completed`, `failed`, `interrupted` or (in a search)
`pruned`; a run killed
hard stays `running`. Only `RunDir` writes it, and a status that ends a run ends its TensorBoard HParams
session in the same call. Reading never writes. Only json and the standard library here: Hydra's
resolvers, the sweep report and the failure path all use this module, before torch is imported.

One writer per run: the process that trains a run directory holds an exclusive `flock` on its `.lock`
file (`RunDir.acquire`) from before it writes anything until it exits; the OS releases it when the
process dies however it dies, so a killed run is resumable at once and a live one is never attached to.
Why flock and not a PID file alone: a PID outlives its process (and is reused), a lock does not.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import time
import zipfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments import atomic
from experiments.errors import ConfigError

CONFIG = "config.yaml"
RECORD = "run.json"
# Hydra's job logging writes `<run dir>/<job name>.log`, and the job is `train`.
LOG = "train.log"
CHECKPOINTS = "checkpoints"
LAST_FILE = "last.ckpt"  # conf/callbacks/default.yaml's last_checkpoint writes it (tests/test_config.py checks)
EPOCH_MARKS = "epoch_starts.jsonl"
CHECKSUMS = "checksums.json"
LOCK = ".lock"
EVENT_FILES = "events.out.tfevents.*"

RUNNING, COMPLETED, FAILED, INTERRUPTED = "running", "completed", "failed", "interrupted"
PRUNED = "pruned"  # stopped early by a search's pruner (experiments.search.pruning)
# What `resume=last` picks: interrupted runs, and "running" ones that are not running any more (killed hard).
RESUMABLE = (INTERRUPTED, RUNNING)

# The lock files this process holds, by run directory: open until the process exits (the OS closes them).
_HELD: dict[Path, object] = {}


class RunBusy(ConfigError):
    """Another live process writes this run directory; `pid` is its process id (None if unknown)."""

    def __init__(self, run_dir: Path, pid: int | None) -> None:
        super().__init__(f"{run_dir} is being written by process {pid if pid is not None else '(unknown)'}")
        self.pid = pid


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def finite_or_none(value: Any) -> float | None:
    """A float for JSON, or None for NaN/inf/missing/non-numeric values (JSON has no NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def run_info(cfg: DictConfig, overrides: list[str]) -> dict[str, Any]:
    """The run's identity in run.json: its overrides and the settings a sweep report shows."""
    return {
        "overrides": overrides,
        "batch_size": cfg.data.batch_size,
        "lr": cfg.model.optimizer.lr,
        "optimizer": str(cfg.model.optimizer._target_).rsplit(".", 1)[-1],
        # Defaults for the configs of runs started before there was a choice (a resumed run keeps its config).
        "model": cfg.model.get("net", "mlp"),
        "loss": str(OmegaConf.select(cfg, "model.loss._target_", default="cross_entropy")).rsplit(".", 1)[-1],
        "hidden_sizes": list(cfg.model.get("hidden_sizes") or []),
        "dataset": cfg.data.dataset,
        "seed": cfg.seed,
    }


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint file `path` does not hold the bytes that were written, or None: the sha256 its run
    recorded (in the checksums.json of its checkpoints/ folder), or, with none recorded, the CRC of every
    member of its zip archive (torch.save's format). Reads only."""
    run = RunDir(path.parent.parent) if path.parent.name == CHECKPOINTS else None
    if run is not None and path.name in run.checksums():
        return run.checksum_problem(path)
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as exc:
        return f"not a readable zip archive, as torch.save writes ({exc})"
    except (OSError, EOFError, RuntimeError, ValueError, NotImplementedError) as exc:
        return f"its zip archive cannot be read ({type(exc).__name__}: {exc})"
    return f"the CRC of {bad} in its zip archive is wrong" if bad else None


class RunDir:
    """A run directory: where its files are, what they say, and the writes that change its status."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.config = self.path / CONFIG
        self.record_file = self.path / RECORD
        self.log = self.path / LOG
        self.checkpoints = self.path / CHECKPOINTS
        self.last_checkpoint = self.checkpoints / LAST_FILE
        self.epoch_marks = self.checkpoints / EPOCH_MARKS
        self.checksums_file = self.checkpoints / CHECKSUMS
        self.lock_file = self.path / LOCK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def event_files(self) -> list[Path]:
        return sorted(self.path.glob(EVENT_FILES))

    # -- questions, answered without writing anything --

    def exists(self) -> bool:
        """Whether this is a run directory: a run wrote its config.yaml here."""
        return self.config.is_file()

    def started(self) -> bool:
        """Whether training started (or a sweep job failed and says so): run.json exists."""
        return self.record_file.is_file()

    def record(self) -> dict[str, Any]:
        """run.json as a dict; empty when it is missing or unreadable."""
        try:
            record = json.loads(self.record_file.read_text())
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def status(self) -> str | None:
        status = self.record().get("status")
        return status if isinstance(status, str) else None

    def resumable(self) -> bool:
        """Whether `resume=last` may pick it: stopped (interrupted, or killed while running) with a
        last.ckpt, and no live process writing it."""
        return self.exists() and self.last_checkpoint.is_file() and self.status() in RESUMABLE and self.writer() is None

    def writer(self) -> int | None:
        """The PID of another live process that writes this run (holds its lock), or None. -1: alive, PID
        not written yet. Tested with a shared lock held for an instant (`acquire` retries around it)."""
        if self.path.resolve() in _HELD:
            return None
        try:
            handle = self.lock_file.open("rb")
        except OSError:  # no lock file: no run of this code ever wrote here, or it is gone
            return None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = handle.read().decode(errors="replace").strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(handle, fcntl.LOCK_UN)
        return None

    def checksums(self) -> dict[str, list[str]]:
        """checksums.json: each checkpoint file name and the sha256 values it may have (one, or two while
        a new version replaces the old one); empty when missing or unreadable."""
        try:
            recorded = json.loads(self.checksums_file.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(recorded, dict):
            return {}
        return {str(k): [str(s) for s in v] for k, v in recorded.items() if isinstance(v, list)}

    def checksum_problem(self, checkpoint: Path) -> str | None:
        """Why `checkpoint` (a file of this run's checkpoints/) is not what the run wrote, or None; None too
        when no checksum was recorded for it (then only its zip integrity can be checked)."""
        expected = self.checksums().get(checkpoint.name)
        if not expected:
            return None
        actual = sha256_of(checkpoint)
        if actual in expected:
            return None
        return f"its sha256 {actual[:12]}... is not the {expected[-1][:12]}... recorded in {self.checksums_file}"

    @classmethod
    def of_checkpoint(cls, checkpoint: Path) -> RunDir | None:
        """The run directory a checkpoint belongs to (<run>/checkpoints/x.ckpt), when it looks like one."""
        run_dir = cls(checkpoint.parent.parent)
        return run_dir if checkpoint.parent.name == CHECKPOINTS and run_dir.exists() else None

    @classmethod
    def newest_resumable(cls, log_dir: Any) -> RunDir | None:
        """The most recently modified resumable run under log_dir (runs/ and sweeps/*/ jobs)."""
        root = Path(str(log_dir))
        runs = [run for path in (*root.glob("runs/*"), *root.glob("sweeps/*/*")) if (run := cls(path)).resumable()]
        return max(runs, key=lambda run: run._modified(), default=None)

    def _modified(self) -> float:
        # run.json is rewritten after every epoch and when the run is interrupted; last.ckpt at every save.
        return max(self.record_file.stat().st_mtime, self.last_checkpoint.stat().st_mtime)

    # -- the writers: the lock, the record while training, checksums, and the status --

    def acquire(self) -> None:
        """Hold this run's lock until the process exits, or RunBusy naming the live process that holds it.
        Creates the run directory if needed. A reader's `writer()` holds a shared lock for an instant: a
        few tries over a fraction of a second tell that apart from a live writer."""
        key = self.path.resolve()
        if key in _HELD:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        handle = self.lock_file.open("a+b")
        for attempt in range(10):
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 9:
                    handle.seek(0)
                    text = handle.read().decode(errors="replace").strip()
                    handle.close()
                    raise RunBusy(self.path, int(text) if text.isdigit() else None) from None
                time.sleep(0.02)
        handle.truncate(0)
        handle.write(str(os.getpid()).encode())
        handle.flush()
        _HELD[key] = handle

    def release(self) -> None:
        """Give the lock back before the process ends (tests that run several runs in one process)."""
        handle = _HELD.pop(self.path.resolve(), None)
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()  # type: ignore[attr-defined]

    def record_checksum(self, name: str, sha256: str, replacing: bool) -> None:
        """Note the sha256 of checkpoint `name`. `replacing=True` adds it next to the old value, before the
        new file replaces the old one; then `replacing=False` keeps the new value only. A kill between
        any two steps leaves a file whose checksum is recorded."""
        recorded = self.checksums()
        recorded[name] = [*(s for s in recorded.get(name, []) if s != sha256), sha256] if replacing else [sha256]
        atomic.write_text(self.checksums_file, json.dumps(recorded, indent=1))

    def forget_checksum(self, name: str) -> None:
        recorded = self.checksums()
        if recorded.pop(name, None) is not None:
            atomic.write_text(self.checksums_file, json.dumps(recorded, indent=1))

    def new_record(self, info: dict[str, Any]) -> dict[str, Any]:
        """The record a run starts with: a resumed run continues its own history."""
        previous = self.record()
        return {
            "status": RUNNING,
            **info,
            "history": list(previous.get("history", [])),
            "train_seconds": previous.get("train_seconds", 0.0),
        }

    def save_progress(self, record: dict[str, Any]) -> None:
        """Write the record of a run that is training (status `running`); readers never see half a file."""
        self._write({**record, "status": RUNNING})

    def complete(self, record: dict[str, Any]) -> None:
        self._write({**record, "status": COMPLETED})
        self._end_session(COMPLETED)

    def fail(self, message: str, overrides: list[str], tensorboard: bool) -> None:
        """Mark the run failed, with the one line that says why. A sweep job that failed before training
        gets a record too (the report lists it) and, when the sweep logs to TensorBoard, its HParams row."""
        started = self.started()
        record = self.record() if started else {"overrides": overrides, "history": []}
        self._write({**record, "status": FAILED, "error": message})
        if started or not tensorboard or self.event_files():
            self._end_session(FAILED)
            return
        from experiments.tensorboard import hparams

        start = hparams.session_start_summary(hparams.session_hparams(None, overrides))
        hparams.write(self.path, [start, hparams.session_end_summary(FAILED)])

    def prune(self, message: str) -> None:
        """Mark a run that a search's pruner stopped early; its checkpoints and epochs so far stay."""
        self._write({**self.record(), "status": PRUNED, "error": message})
        self._end_session(PRUNED)

    def interrupt(self, message: str) -> None:
        """Mark a run stopped by a signal after saving last.ckpt. Its HParams session stays open (TensorBoard
        has no "aborted"; it keeps the first session end) so that the resumed run can end it."""
        self._write({**self.record(), "status": INTERRUPTED, "error": message})

    def _write(self, record: dict[str, Any]) -> None:
        atomic.write_text(self.record_file, json.dumps(record, indent=2, default=str))

    def _end_session(self, status: str) -> None:
        if self.event_files():  # the run logs to TensorBoard
            from experiments.tensorboard import hparams  # TensorBoard: only when there is something to write

            hparams.write(self.path, [hparams.session_end_summary(status)])
