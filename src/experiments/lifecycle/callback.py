"""`RunLifecycle`: the callbacks every run has, called by Lightning as one."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class RunLifecycle(Callback):
    """The callbacks every run has (epoch marks, run record, NaN guard, clean stop), called as one.

    Lightning calls every hook of every callback on every step, at a fixed cost per callback: one
    callback instead of four keeps that cost off the training step. The parts stay ordinary callbacks,
    called in the order given.
    """

    def __init__(self, *parts: Callback) -> None:
        self.parts = parts

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for part in self.parts:
            part.setup(trainer, pl_module, stage)

    def state_dict(self) -> dict[str, Any]:
        states = {type(part).__name__: part.state_dict() for part in self.parts}
        return {name: state for name, state in states.items() if state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for part in self.parts:
            if type(part).__name__ in state_dict:
                part.load_state_dict(state_dict[type(part).__name__])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for part in self.parts:
            part.on_train_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for part in self.parts:
            part.on_train_epoch_start(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        for part in self.parts:
            part.on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for part in self.parts:
            part.on_train_epoch_end(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for part in self.parts:
            part.on_validation_start(trainer, pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        for part in self.parts:
            part.on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for part in self.parts:
            part.on_train_end(trainer, pl_module)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        for part in self.parts:
            part.on_exception(trainer, pl_module, exception)
