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
from lightning.pytorch.trainer.states import TrainerFn
from PIL import Image

from experiments.atomic import atomic_write
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
        with atomic_write(out_dir / f"{tag.split('/')[-1]}.png") as png:
            Image.fromarray(image).save(png, format="PNG")
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
        self._trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer  # for state_dict, which Lightning calls without it

    def state_dict(self) -> dict[str, Any]:
        """The record's part of every checkpoint, so a resumed run continues exactly the history its
        checkpoint holds: every finished epoch once, none that the checkpoint does not hold.

        Lightning builds an end-of-epoch checkpoint after the module's on_train_epoch_end has logged
        train/acc, so the epoch's row is complete here: it is written to run.json now, before the
        checkpoint exists, and goes into the checkpoint with the rows before it.
        """
        if self._trainer is not None:
            self._flush_epoch(self._trainer)
        return {"history": list(self.record["history"]), "train_seconds": self.record.get("train_seconds", 0.0)}

    @staticmethod
    def history_in(checkpoint: dict[str, Any]) -> list[dict[str, Any]]:
        """The run record's history a checkpoint holds (written by state_dict through RunLifecycle)."""
        state = checkpoint.get("callbacks", {}).get(RunLifecycle.__qualname__, {}).get(RunRecord.__name__, {})
        return list(state.get("history", []))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callbacks from every checkpoint it loads, also the best one `trainer.test` reads.
        if self._trainer is None or self._trainer.state.fn != TrainerFn.FITTING:
            return
        self.record["history"] = list(state_dict["history"])
        self.record["train_seconds"] = state_dict["train_seconds"]
        self.record["epochs"] = len(self.record["history"])

    def final_metrics(self, trainer: L.Trainer, keys: tuple[str, ...]) -> dict[str, float | None]:
        """The fit's last value of each key: Lightning's, or, where the fit had nothing left to run (a run
        resumed after its last epoch), the last epoch's row, which came back with the checkpoint."""
        last = self.record["history"][-1] if self.record["history"] else {}
        metrics = trainer.callback_metrics
        return {key: finite_or_none(metrics[key]) if key in metrics else last.get(key) for key in keys}

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
        """Write the finished epoch's row. Deferred to here (its checkpoint, else the next epoch's start)
        because the LightningModule's own on_train_epoch_end (which logs train/acc) runs after the
        callbacks' one; `epoch_seconds` is the whole epoch: training, validation, up to its checkpoint."""
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
