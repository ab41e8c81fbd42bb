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
from experiments.lifecycle import stops
from experiments.models.classifier import logs_step_metrics

_STOP_SIGNALS = stops.STOP_SIGNALS


def _learning_rate(trainer: L.Trainer) -> str:
    optimizers = trainer.optimizers
    return f"{optimizers[0].param_groups[0]['lr']:.4g}" if optimizers else "?"


def _describe(value: float | None) -> str:
    if value is None:  # read from a flag on the device: only known to be NaN or infinite
        return "nan/inf"
    return "nan" if math.isnan(value) else str(value)


class GracefulStop(Callback):
    """Ctrl-C or SIGTERM: finish the batch in progress, save `checkpoints/last.ckpt`, stop the run.

    A second Ctrl-C/SIGTERM before that is done stops at once, for the impatient: the run resumes from the
    last.ckpt it had (a checkpoint write it cuts short leaves the previous file, experiments.atomic).
    Either way the run ends with RunInterrupted, which `experiments.train.run` reports with the resume
    command, and run.json says `interrupted`.
    """

    def __init__(self, checkpoint: Path, sweep: str | None = None) -> None:
        self.checkpoint = checkpoint  # the run's last.ckpt, where its resume continues
        self.sweep = sweep  # the sweep directory of a multirun job: a parallel sweep's stop concerns it
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._trainer: L.Trainer | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
            stops.note(signum, self.sweep)  # a parallel sweep's worker then starts no further job
            return
        self._restore()
        trainer, name = self._trainer, signal.Signals(signum).name
        where = f" at step {trainer.global_step} (epoch {trainer.current_epoch})" if trainer is not None else ""
        kept = f"resume continues from {self.checkpoint}" if self.checkpoint.is_file() else "no checkpoint saved yet"
        raise RunInterrupted(f"{name} twice: stopped at once{where}; {kept}", signum=signum)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Signal handlers live in the main thread. Under DDP a signal reaches one rank while saving is
        # collective, so there Lightning's own SIGTERM handling (stop; resume from the last epoch) stays.
        self._trainer = trainer
        if threading.current_thread() is threading.main_thread() and trainer.world_size == 1:
            self._previous = {s: signal.signal(s, self._handle) for s in _STOP_SIGNALS}
        if self.received is None and self.sweep is not None:  # a parallel sweep's worker got the signal
            self.received = stops.noted(self.sweep)  # before this run's training

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.received is None:
            return
        name = signal.Signals(self.received).name
        path = self.checkpoint
        # Lightning resumes exactly from a checkpoint written here (train batch end), but would write this
        # batch's step metrics to the loggers only after the hook: write train/loss now, or the resumed run
        # (which starts at the next step) leaves a hole in the curve.
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and logs_step_metrics(trainer, trainer.global_step - 1):
            for logger in trainer.loggers:
                logger.log_metrics({"train/loss": float(loss)}, step=trainer.global_step - 1)
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

    Every step's loss is checked. On the CPU the check reads the value at once (reading a CPU tensor costs
    no device sync). On an accelerator that read would stall the device queue every step, so each step
    only folds its loss into a flag on the device, and the flag is read every `log_every_n_steps` steps,
    when Lightning reads the logged metrics anyway, and before any checkpoint is written or validation
    starts: a checkpoint never holds diverged weights, and `last.ckpt` keeps the last good epoch.
    """

    def __init__(self) -> None:
        self._nonfinite: torch.Tensor | None = None  # accelerators: any non-finite loss since the last read

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        loss = loss.detach()
        if loss.device.type == "cpu":
            value = loss.item()
            if not math.isfinite(value):
                self._stop(trainer, value)
            return
        bad = ~torch.isfinite(loss)
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        if logs_step_metrics(trainer, trainer.global_step - 1):
            self._read(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._read(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._read(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._read(trainer)

    def _read(self, trainer: L.Trainer) -> None:
        flag, self._nonfinite = self._nonfinite, None
        if flag is not None and bool(flag):
            self._stop(trainer, None)

    def _stop(self, trainer: L.Trainer, value: float | None) -> None:
        # The newest file any checkpoint callback wrote (checkpoints/last.ckpt: written after every epoch).
        written = [
            Path(path)
            for callback in trainer.checkpoint_callbacks
            for path in (getattr(callback, "last_model_path", ""), getattr(callback, "best_model_path", ""))
            if path and Path(path).is_file()
        ]
        last = max(written, key=lambda path: path.stat().st_mtime_ns) if written else "none saved yet"
        raise TrainingDiverged(
            f"training diverged: train/loss={_describe(value)} by step {trainer.global_step} "
            f"(epoch {trainer.current_epoch}, lr {_learning_rate(trainer)}); last good checkpoint: {last}. "
            "Lower model.optimizer.lr or raise data.batch_size"
        )
