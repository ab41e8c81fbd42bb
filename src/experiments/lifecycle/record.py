"""`RunRecord`: the callback that keeps a run's record (run.json) up to date while it trains."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from experiments.errors import RunPruned
from experiments.lifecycle.callback import RunLifecycle
from experiments.rundir import RunDir, finite_or_none


class RunRecord(Callback):
    """Keeps `run.json` in the run directory up to date: status, per-epoch metrics, timing, throughput.

    It is rewritten after every validation, so an interrupted job still tells how far it got; the
    sweep report and `experiments-compare` read these files instead of parsing event logs.
    """

    def __init__(self, run_dir: RunDir, info: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.record = run_dir.new_record(info)  # a resumed run continues its own history
        self._epoch_start = self._last_batch_end = 0.0
        self._train_samples = 0
        self._pending: dict[str, Any] | None = None  # the finished epoch, until its row is complete
        self._row: dict[str, Any] | None = None  # that row, once complete: the same in checkpoint and run.json
        self._trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer  # for state_dict, which Lightning calls without it

    def state_dict(self) -> dict[str, Any]:
        """The record's part of every checkpoint, so a resumed run continues exactly the history its
        checkpoint holds: every finished epoch once, none that the checkpoint does not hold.

        Lightning builds an end-of-epoch checkpoint after the module's on_train_epoch_end has logged
        train/acc, so the epoch's row is complete here and goes into the checkpoint with the rows before
        it. Writes nothing: `on_save_checkpoint`, which Lightning calls next for the same checkpoint,
        writes the row to run.json before the checkpoint file exists.
        """
        history = self.record["history"]
        if self._pending is not None and self._trainer is not None:
            self._row = self._row or self._complete_row(self._trainer)
            history = self._with_row(self._row)
        return {"history": list(history), "train_seconds": self.record.get("train_seconds", 0.0)}

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._flush_epoch(trainer)

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

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, RunPruned):  # stopped at the end of a finished epoch: that epoch is kept
            self._flush_epoch(trainer)

    def _flush_epoch(self, trainer: L.Trainer) -> None:
        """Write the finished epoch's row. Deferred to here (its checkpoint, else the next epoch's start)
        because the LightningModule's own on_train_epoch_end (which logs train/acc) runs after the
        callbacks' one; `epoch_seconds` is the whole epoch: training, validation, up to its checkpoint."""
        if self._pending is None:
            return
        row = self._row or self._complete_row(trainer)
        self._pending = self._row = None
        self.record["history"] = self._with_row(row)
        self.record["epochs"] = len(self.record["history"])
        self.save(trainer)

    def _complete_row(self, trainer: L.Trainer) -> dict[str, Any]:
        assert self._pending is not None
        metrics = trainer.callback_metrics
        logged = {k: finite_or_none(v) for k, v in metrics.items() if k.startswith(("train/", "val/"))}
        epoch_seconds = round(time.perf_counter() - self._epoch_start, 4)
        return {**self._pending, "epoch_seconds": epoch_seconds, "global_step": trainer.global_step, **logged}

    def _with_row(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        return [*(h for h in self.record["history"] if h["epoch"] != row["epoch"]), row]

    def complete(self, trainer: L.Trainer, **extra: Any) -> None:
        """The run ended well: its final metrics and totals, and the status `completed` (rank zero only)."""
        if trainer.is_global_zero:
            self.run_dir.complete({**self.record, **extra})

    def save(self, trainer: L.Trainer) -> None:
        if trainer.is_global_zero:  # DDP child ranks share rank 0's directory and never write into it
            self.run_dir.save_progress(self.record)
