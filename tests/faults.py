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


class Probe(Callback):
    """Records what the Trainer did, for tests that check an option's meaning (`+callbacks.probe...`).

    The last instance is kept on the class, so an in-process run can be inspected after it returns.
    Gradients are read in an optimizer step post-hook (torch's public API): Lightning clips them inside
    the step's closure, and they stay as the update used them until the next zero_grad.
    """

    last: Probe | None = None

    def __init__(self) -> None:
        Probe.last = self
        self.grad_norms: list[float] = []
        self.grad_max_abs: list[float] = []
        self.val_batches: list[int] = []
        self.test_batches = 0
        self.train_targets: dict[int, list[torch.Tensor]] = {}
        self.anomaly = self.deterministic = False
        self.activation_dtypes: set[torch.dtype] = set()
        self.profiler = ""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for optimizer in trainer.optimizers:
            optimizer.register_step_post_hook(self._record_gradients)
        pl_module.net[1].register_forward_hook(lambda module, args, out: self.activation_dtypes.add(out.dtype))
        self.profiler = type(trainer.profiler).__name__

    def _record_gradients(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.grad_norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        self.grad_max_abs.append(max(float(g.abs().max()) for g in grads))

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.anomaly = self.anomaly or torch.is_anomaly_enabled()
        self.deterministic = self.deterministic or torch.are_deterministic_algorithms_enabled()
        self.train_targets.setdefault(trainer.current_epoch, []).append(batch[1].clone())

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.val_batches.append(0)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.val_batches[-1] += 1

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.test_batches += 1
