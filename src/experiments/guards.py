"""Callbacks that keep a run trustworthy: stop cleanly on Ctrl-C/SIGTERM, stop at once on a NaN/inf loss.

Both act at a Lightning batch boundary, where the model, optimizer, scheduler and loop counters agree,
so a checkpoint written there resumes exactly (a SIGKILL cannot be caught: it loses at most the epoch in
progress, whose end-of-epoch `last.ckpt` is the resume point).
"""

from __future__ import annotations

import math
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from experiments.errors import RunInterrupted, TrainingDiverged

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _learning_rate(trainer: L.Trainer) -> str:
    optimizers = trainer.optimizers
    return f"{optimizers[0].param_groups[0]['lr']:.4g}" if optimizers else "?"


class GracefulStop(Callback):
    """Ctrl-C or SIGTERM: finish the batch in progress, save `checkpoints/last.ckpt`, stop the run.

    A second Ctrl-C/SIGTERM while that happens stops at once (KeyboardInterrupt), for the impatient.
    The run ends with RunInterrupted, which `experiments.train.run` reports with the resume command.
    """

    def __init__(self, checkpoint: str = "checkpoints/last.ckpt") -> None:
        self.checkpoint = checkpoint
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            self._restore()
            raise KeyboardInterrupt
        self.received = signum

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Signal handlers live in the main thread. Under DDP a signal reaches one rank while saving is
        # collective, so there Lightning's own SIGTERM handling (stop; resume from the last epoch) stays.
        if threading.current_thread() is threading.main_thread() and trainer.world_size == 1:
            self._previous = {s: signal.signal(s, self._handle) for s in _STOP_SIGNALS}
        if trainer.fit_loop.restarted_mid_epoch:
            # Lightning skips on_train_epoch_start when it resumes a checkpoint saved mid-epoch (ours, on a
            # signal), but the module and the run record set up their per-epoch counters there.
            pl_module.on_train_epoch_start()
            for callback in trainer.callbacks:
                if callback is not self:
                    callback.on_train_epoch_start(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.received is None:
            return
        name = signal.Signals(self.received).name
        path = Path(trainer.default_root_dir) / self.checkpoint
        trainer.save_checkpoint(path, weights_only=False)
        raise RunInterrupted(
            f"{name} at step {trainer.global_step} (epoch {trainer.current_epoch}); saved {path}",
            signum=self.received,
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()


class DivergenceGuard(Callback):
    """Stop the run when the training loss becomes NaN or infinite.

    Checked once per Lightning batch (one host sync per `data.steps_per_batch` optimizer steps): the
    exception stops training before the next end-of-epoch checkpoint, so `last.ckpt` and the best
    checkpoint keep the last good weights.
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor) or bool(torch.isfinite(loss).all()):
            return
        value = float(loss.detach().float().reshape(-1)[0])
        kept = trainer.checkpoint_callback
        last = getattr(kept, "last_model_path", "") or "none saved yet"
        raise TrainingDiverged(
            f"training diverged: train/loss={'nan' if math.isnan(value) else value} by step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}, lr {_learning_rate(trainer)}); last good checkpoint: {last}. "
            "Lower model.optimizer.lr or raise data.batch_size"
        )
