"""TensorBoard continuity for resumed runs: no step logged twice.

A run killed in epoch k+1 has already written that epoch's train/loss (and its epoch-start learning rate)
into its event file; resumed from the end-of-epoch-k checkpoint, it writes them again. Steps alone cannot
tell the two apart (epoch k's val/acc and epoch k+1's first train/loss share a step), wall time can:
`EpochStarts` notes when each epoch starts, and on resume `drop_after_checkpoint` removes from the
existing event files every event written after the first epoch start that followed the checkpoint.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

MARKS = Path("checkpoints") / "epoch_starts.jsonl"


class EpochStarts(Callback):
    """Appends `{"epoch", "step", "time"}` to checkpoints/epoch_starts.jsonl as each training epoch starts.

    Must come first among the callbacks, before any callback that logs at epoch start.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / MARKS

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mark = {"epoch": trainer.current_epoch, "step": trainer.global_step, "time": time.time()}
        with self.path.open("a") as marks:
            marks.write(json.dumps(mark) + "\n")


def _cutoff(run_dir: Path, checkpoint: Path) -> float:
    """Wall time after which events belong to work the checkpoint does not hold."""
    saved_at = checkpoint.stat().st_mtime
    marks_file = run_dir / MARKS
    lines = marks_file.read_text().splitlines() if marks_file.is_file() else []
    marks = [json.loads(line) for line in lines if line.strip()]
    later = [m["time"] for m in marks if m["time"] > saved_at]
    # Killed after an end-of-epoch checkpoint: the next epoch's start. Stopped on a signal (checkpoint
    # written mid-epoch, process gone right after): nothing was logged after the checkpoint itself.
    return min(later) if later else saved_at


def _rewrite(events_file: Path, cutoff: float) -> int:
    """Drop the events written after `cutoff` from one file, in place; returns how many were dropped."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    records = list(RawEventFileLoader(str(events_file)).Load())
    kept = [r for r in records if Event.FromString(r).wall_time <= cutoff]
    if len(kept) == len(records):
        return 0
    tmp = events_file.with_name(f".{events_file.name}.tmp")
    with tmp.open("wb") as out:
        writer = RecordWriter(out)
        for record in kept:
            writer.write(record)
        writer.flush()
    os.replace(tmp, events_file)
    return len(records) - len(kept)


def drop_after_checkpoint(run_dir: Path, checkpoint: Any) -> int:
    """Before a resumed run logs anything: remove the events of the work it will redo. Returns the count."""
    if not checkpoint:
        return 0
    cutoff = _cutoff(run_dir, Path(checkpoint))
    files = sorted(run_dir.glob("events.out.tfevents.*"))
    dropped = sum(_rewrite(f, cutoff) for f in files)
    _wait_for_a_later_file_name(files)
    return dropped


def _wait_for_a_later_file_name(files: list[Path]) -> None:
    """TensorBoard reads a directory's event files in name order, and the names start with the second
    they were created in (`events.out.tfevents.<seconds>.<host>.<pid>...`). A resume within the same
    second as the last file could sort before it, and TensorBoard would take the older steps for a
    restart and hide the new ones: wait (under a second) so the new file sorts last."""
    seconds = [int(parts[3]) for f in files if len(parts := f.name.split(".")) > 3 and parts[3].isdigit()]
    while seconds and time.time() < max(seconds) + 1:
        time.sleep(0.05)
