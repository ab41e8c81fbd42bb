"""Test-only callbacks that inject faults on cue: a signal to their own process, NaN weights.

Used through the command line, e.g. `+callbacks.interrupt._target_=tests.faults.SignalAt`. The
marker file makes it fire once, so the resumed run (which reuses the saved config) is not stopped again.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class SignalAt(Callback):
    def __init__(self, epoch: int, batch: int, signal_name: str, marker: str) -> None:
        self.epoch, self.batch, self.signal_name, self.marker = epoch, batch, signal_name, Path(marker)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch) and not self.marker.exists():
            self.marker.write_text(f"{self.signal_name} at step {trainer.global_step}\n")
            os.kill(os.getpid(), getattr(signal, self.signal_name))


class PoisonWeightsAt(Callback):
    """Sets the first weight to NaN before the chosen batch: a diverging run on cue."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))
