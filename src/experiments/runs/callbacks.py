"""End-of-test figures, and the callbacks every run has: the run record and its lifecycle."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image

from experiments.runs import figures as plots
from experiments.runs.records import finite_or_none, write_json_atomic


def write_test_figures(trainer: L.Trainer, model: L.LightningModule, datamodule: Any, num_samples: int) -> None:
    """After testing: the confusion matrix and a grid of sample predictions, in TensorBoard and as PNGs.

    A function called once after `trainer.test`, not a callback: Lightning calls every callback's hooks on
    every training step, and these figures need nothing from those steps.
    """
    confusion = model.test_confusion.compute().cpu()  # every rank: compute() syncs under DDP
    if not trainer.is_global_zero or trainer.fast_dev_run or num_samples <= 0:
        return
    classes = getattr(datamodule, "classes", None) or [str(i) for i in range(len(confusion))]
    x, y = next(iter(datamodule.test_dataloader()))
    x, y = x[:num_samples], y[:num_samples]
    model.eval()
    with torch.inference_mode():
        probabilities = model(x.to(model.device)).float().softmax(-1).cpu()
    figures = {
        "test/confusion_matrix": plots.confusion_matrix_figure(confusion, classes),
        "test/predictions": plots.predictions_figure(x.cpu(), y.cpu(), probabilities, classes),
    }
    out_dir = Path(trainer.default_root_dir)
    for tag, figure in figures.items():
        image = plots.render(figure)
        Image.fromarray(image).save(out_dir / f"{tag.split('/')[-1]}.png")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(tag, image, global_step=trainer.global_step, dataformats="HWC")


class RunRecord(Callback):
    """Keeps `run.json` in the run directory up to date: status, per-epoch metrics, timing, throughput.

    It is rewritten after every validation, so an interrupted job still tells how far it got; the
    sweep report and `experiments-compare` read these files instead of parsing event logs.
    """

    def __init__(self, path: Path, info: dict[str, Any]) -> None:
        self.path = path
        self.record: dict[str, Any] = {"status": "running", **info, "history": []}
        if path.is_file():  # a resumed run continues its own record
            previous = json.loads(path.read_text())
            self.record["history"] = previous.get("history", [])
            self.record["train_seconds"] = previous.get("train_seconds", 0.0)
        self._epoch_start = self._last_batch_end = 0.0
        self._train_samples = 0
        self._pending: dict[str, Any] | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Also the epoch start of a run resumed mid-epoch, for which Lightning skips on_train_epoch_start.
        self._epoch_start = self._last_batch_end = time.perf_counter()
        self.save(trainer)  # from here on the run directory holds a started run (kept, even if it fails)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush_epoch(trainer)
        self._epoch_start = time.perf_counter()
        self._train_samples = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._train_samples += len(batch[1])
        self._last_batch_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The time stops at the last training batch, so validation is excluded from samples/s.
        seconds = max(self._last_batch_end - self._epoch_start, 1e-9)
        self.record["train_seconds"] = round(self.record.get("train_seconds", 0.0) + seconds, 3)
        self._pending = {
            "epoch": trainer.current_epoch,
            "seconds": round(seconds, 4),
            "samples_per_sec": round(self._train_samples * trainer.world_size / seconds, 1),
        }

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush_epoch(trainer)

    def _flush_epoch(self, trainer: L.Trainer) -> None:
        """Write the finished epoch's row. Deferred to here because the LightningModule's own
        on_train_epoch_end (which logs train/acc) runs after the callbacks' one; `epoch_seconds` is the
        whole epoch: training, validation, checkpoints and logging."""
        if self._pending is None:
            return
        metrics = trainer.callback_metrics
        logged = {k: finite_or_none(v) for k, v in metrics.items() if k.startswith(("train/", "val/"))}
        epoch_seconds = round(time.perf_counter() - self._epoch_start, 4)
        row = {**self._pending, "epoch_seconds": epoch_seconds, "global_step": trainer.global_step, **logged}
        self._pending = None
        history = [h for h in self.record["history"] if h["epoch"] != row["epoch"]]
        self.record["history"] = [*history, row]
        self.record["epochs"] = len(self.record["history"])
        self.save(trainer)

    def finish(self, status: str, trainer: L.Trainer | None = None, **extra: Any) -> None:
        self.record.update(status=status, **extra)
        self.save(trainer)

    def save(self, trainer: L.Trainer | None = None) -> None:
        if trainer is None or trainer.is_global_zero:
            write_json_atomic(self.path, self.record)


class RunLifecycle(Callback):
    """The callbacks every run has (epoch marks, run record, NaN guard, clean stop), called as one.

    Lightning calls every hook of every callback on every step, at a fixed cost per callback: one
    callback instead of four keeps that cost off the training step. The parts stay ordinary callbacks,
    called in the order given.
    """

    def __init__(self, *parts: Callback) -> None:
        self.parts = parts

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
