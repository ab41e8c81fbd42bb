"""Test-only callbacks that inject faults on cue: a signal to their own process, `kill -9`, NaN weights.

Used through the command line, e.g. `+callbacks.interrupt._target_=tests.faults.SignalAt`. The
marker file makes it fire once, so the resumed run (which reuses the saved config) is not stopped again.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any
from unittest import mock

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from experiments import atomic
from experiments.checkpoints.io import AtomicCheckpointIO


class SignalAt(Callback):
    """Sends `signal_name` to its own process `count` times in a row (count=2: Ctrl-C pressed twice)."""

    def __init__(self, epoch: int, batch: int, signal_name: str, marker: str, count: int = 1) -> None:
        self.epoch, self.batch, self.signal_name, self.marker = epoch, batch, signal_name, Path(marker)
        self.count = count

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch) and not self.marker.exists():
            self.marker.write_text(f"{self.signal_name} at step {trainer.global_step}\n")
            for _ in range(self.count):
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


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAt(Callback):
    """`kill -9` of its own process at one point of a run, once (the marker file), as a user would kill it.

    point: `setup` (Lightning's setup, before the first step), `train_batch` / `validation_batch` /
    `test_batch` (after that batch of `epoch`), or `figures` (the end-of-test figures' forward pass).
    """

    def __init__(self, point: str, marker: str, epoch: int = 0, batch: int = 0) -> None:
        self.point, self.marker, self.epoch, self.batch = point, Path(marker), epoch, batch

    def _fire(self, point: str, epoch: int = 0, batch: int = 0) -> None:
        if (point, epoch, batch) == (self.point, self.epoch, self.batch) and not self.marker.exists():
            self.marker.write_text(f"SIGKILL at {point}\n")
            _kill_self()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            self._fire("setup")

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._fire("train_batch", trainer.current_epoch, batch_idx)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        batch_idx = args[2] if len(args) > 2 else 0
        if not trainer.sanity_checking:
            self._fire("validation_batch", trainer.current_epoch, batch_idx)

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._fire("test_batch", 0, args[2] if len(args) > 2 else 0)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The figures come after the test, outside any Lightning hook: their forward pass is the cue.
        if self.point == "figures":
            pl_module.register_forward_pre_hook(lambda module, args: self._fire("figures"))


class KillOnSave(AtomicCheckpointIO):
    """`kill -9` of its own process while (`when=during`) or right after (`when=after`) the checkpoint file
    `name` of `epoch` is written, once (the marker file). "During" is after `after_bytes` bytes have
    reached the file: what is on disk then is the start of the new checkpoint."""

    def __init__(self, marker: str, when: str, epoch: int, name: str = "last.ckpt", after_bytes: int = 65536) -> None:
        super().__init__()
        self.marker, self.when, self.epoch, self.name, self.after_bytes = Path(marker), when, epoch, name, after_bytes

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        fire = (Path(path).name, checkpoint.get("epoch")) == (self.name, self.epoch) and not self.marker.exists()
        if fire:
            self.marker.write_text(f"SIGKILL {self.when} writing {path}\n")
        if fire and self.when == "during":
            with mock.patch.object(atomic, "atomic_write", _killing_after(atomic.atomic_write, self.after_bytes)):
                super().save_checkpoint(checkpoint, path, storage_options)
            raise AssertionError(f"{path} is under after_bytes={self.after_bytes} bytes: not killed while written")
        super().save_checkpoint(checkpoint, path, storage_options)
        if fire:
            _kill_self()


def _killing_after(atomic_write: Callable[..., Any], limit: int) -> Callable[..., Any]:
    @contextlib.contextmanager
    def killing_write(path: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        with atomic_write(path, *args, **kwargs) as handle:
            yield _KillingFile(handle, limit)

    return killing_write


class _KillingFile:
    """A file that kills its process once `limit` bytes have been written to it (and reached the OS)."""

    def __init__(self, handle: IO[bytes], limit: int) -> None:
        self.handle, self.limit, self.written = handle, limit, 0

    def write(self, data: bytes) -> int:
        count = self.handle.write(data)
        self.written += count
        if self.written >= self.limit:
            self.handle.flush()
            _kill_self()
        return count

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)
