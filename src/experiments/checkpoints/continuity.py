"""TensorBoard continuity for resumed runs: every step once, and nothing the checkpoint holds lost.

A run killed in epoch k+1 has already written that epoch's train/loss (and its epoch-start learning rate)
into its event file; resumed from the end-of-epoch-k checkpoint, it writes them again. Steps alone cannot
tell the two apart (epoch k's val/acc and epoch k+1's first train/loss share a step), wall time can:
`EpochStarts` notes when each epoch starts and when training ends, and on resume `drop_after_checkpoint`
removes from the existing event files every event written after the first such mark that followed the
checkpoint (so a run killed while testing keeps its last epoch, and loses only its test events).

Lightning writes an epoch's training metrics (train/acc) only after that epoch's checkpoint. A kill
between the two loses them for good, since the resumed run starts at the next epoch: when no mark
follows the checkpoint, they are written back from the epoch's row, which travels in the checkpoint.

Why not TensorBoard's own `purge_step` (`SummaryWriter(purge_step=...)`, which Lightning's
TensorBoardLogger passes on): it writes a SessionLog.START event at that step and leaves the old events
in the files, for each reader to hide. TensorBoard's Python loader hides every older event at or after
that step, but only if the run had written a START before (it takes a run's first START for its
beginning, not a restart), so every fresh run would need one too. Its default Rust loader
(tensorboard-data-server) ignores SessionLog events: it drops a tag's later points only when that tag's
step goes back, so an event the killed attempt logged past the resume point under a tag the resumed run
does not log again stays. Other readers of the files see both copies. And purging by step cannot work
here anyway: epoch k's val/acc and train/acc sit at the step where epoch k+1's first train/loss is
redone, so purging from that step deletes finished epoch metrics, and purging after it keeps the redone
point twice.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from experiments import atomic
from experiments.rundir import RunDir

# What Lightning writes to the loggers after an end-of-epoch checkpoint: the epoch-level metrics the
# LightningModule logs in its on_train_epoch_end (MNISTClassifier: train/acc). Validation metrics are
# written before the checkpoint, step metrics belong to the steps that a resumed run takes again.
AFTER_CHECKPOINT = ("train/acc",)


class EpochStarts(Callback):
    """Appends `{"epoch", "step", "time", "mark"}` to the run's epoch marks (RunDir.epoch_marks) as each training epoch
    starts and as training ends; flushes the loggers at each checkpoint, so that the events of the work a
    checkpoint holds are on disk when the checkpoint is.

    Must come first among the callbacks, before any callback that logs at epoch start.
    """

    def __init__(self, run_dir: RunDir) -> None:
        self.path = run_dir.epoch_marks

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark(trainer, "epoch_start")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._mark(trainer, "train_end")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # Lightning's logger connector already calls save() after each log_metrics; loggers written to
        # directly (LearningRateMonitor, images) are not, and a SummaryWriter flushes only every 120 s.
        # The flush survives a kill; the fsync (as for the checkpoint itself) survives a power loss.
        for logger in trainer.loggers:
            logger.save()
            if isinstance(logger, TensorBoardLogger) and trainer.is_global_zero:
                for events_file in RunDir(Path(logger.log_dir)).event_files():
                    _fsync(events_file)

    def _mark(self, trainer: L.Trainer, mark: str) -> None:
        if not trainer.is_global_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"epoch": trainer.current_epoch, "step": trainer.global_step, "time": time.time(), "mark": mark}
        with self.path.open("a") as marks:
            marks.write(json.dumps(entry) + "\n")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mark_times(run_dir: RunDir) -> list[float]:
    marks_file = run_dir.epoch_marks
    times = []
    for line in marks_file.read_text().splitlines() if marks_file.is_file() else []:
        try:
            times.append(float(json.loads(line)["time"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a power loss: its mark was never complete
    return times


def _epoch_row(checkpoint: Path) -> dict[str, Any] | None:
    """The run record's row of the epoch an end-of-epoch checkpoint ends, else None (a mid-epoch checkpoint)."""
    from experiments.lifecycle.record import RunRecord

    # mmap: only the few small values read here are loaded, not the weights.
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    history = RunRecord.history_in(saved)
    row = history[-1] if history else None
    ends_epoch = row is not None and (row.get("epoch"), row.get("global_step")) == (
        saved["epoch"],
        saved["global_step"],
    )
    return row if ends_epoch else None


def _scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
    from tensorboard.compat.proto.event_pb2 import Event
    from torch.utils.tensorboard.summary import scalar

    return Event(wall_time=wall_time, step=step, summary=scalar(tag, value)).SerializeToString()


def drop_after_checkpoint(run_dir: RunDir, checkpoint: Any) -> int:
    """Before a resumed run logs anything: remove the events of the work it will redo, and write back the
    epoch-end metrics that a kill right after the checkpoint kept from the files. Returns the count dropped."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event

    if not checkpoint:
        return 0
    saved_at = Path(checkpoint).stat().st_mtime
    later = [t for t in _mark_times(run_dir) if t > saved_at]
    # Killed after an end-of-epoch checkpoint: the next mark (epoch start, end of training). Killed before
    # any mark followed it, or stopped on a signal (checkpoint written mid-epoch, process gone right
    # after): nothing of the work the checkpoint holds was logged after the checkpoint itself.
    cutoff = min(later) if later else saved_at
    files = run_dir.event_files()
    records = {f: list(RawEventFileLoader(str(f)).Load()) for f in files}
    kept = {f: [r for r in rs if Event.FromString(r).wall_time <= cutoff] for f, rs in records.items()}
    restored: list[bytes] = []
    row = _epoch_row(Path(checkpoint)) if files and not later else None
    if row is not None:
        logged = {
            (value.tag, event.step)
            for rs in kept.values()
            for event in map(Event.FromString, rs)
            for value in event.summary.value
        }
        restored = [
            _scalar_event(tag, float(row[tag]), int(row["global_step"]), saved_at)
            for tag in AFTER_CHECKPOINT
            if row.get(tag) is not None and (tag, row["global_step"]) not in logged
        ]
    for f in files:
        extra = restored if f == files[-1] else []
        if len(kept[f]) != len(records[f]) or extra:
            _write_events(f, [*kept[f], *extra])
    _wait_for_a_later_file_name(files)
    return sum(len(records[f]) - len(kept[f]) for f in files)


def _write_events(events_file: Path, records: list[bytes]) -> None:
    """Replace an event file's records, atomically (a kill leaves the old file or the new one)."""
    from tensorboard.summary.writer.record_writer import RecordWriter

    with atomic.atomic_write(events_file) as out:
        writer = RecordWriter(out)
        for record in records:
            writer.write(record)
        writer.flush()


def _wait_for_a_later_file_name(files: list[Path]) -> None:
    """TensorBoard reads a directory's event files in name order, and the names start with the second
    they were created in (`events.out.tfevents.<seconds>.<host>.<pid>...`). A resume within the same
    second as the last file could sort before it, and TensorBoard would take the older steps for a
    restart and hide the new ones: wait (under a second) so the new file sorts last."""
    seconds = [int(parts[3]) for f in files if len(parts := f.name.split(".")) > 3 and parts[3].isdigit()]
    while seconds and time.time() < max(seconds) + 1:
        time.sleep(0.05)
