"""The MLP classifier: a plain nn.Module network wrapped in a LightningModule that trains it."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]

# Schedulers whose length must match the run: the argument that receives the total number of steps.
_TOTAL_STEPS_ARGUMENTS = ("total_steps", "T_max")


class MLP(nn.Sequential):
    """Flatten -> [Linear -> activation -> Dropout] * len(hidden_sizes) -> Linear. Returns logits."""

    def __init__(
        self,
        input_size: int = 784,
        hidden_sizes: Sequence[int] = (128, 128),
        num_classes: int = 10,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        width = input_size
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)


def describe_factory(factory: Callable[..., Any] | None) -> dict[str, Any] | None:
    """A plain-data description of a functools.partial, so checkpoints hold no pickled callables."""
    if factory is None:
        return None
    if isinstance(factory, functools.partial):
        func = factory.func
        return {"name": f"{func.__module__}.{func.__qualname__}", **factory.keywords}
    return {"name": getattr(factory, "__qualname__", repr(factory))}


def backward_hooks_are_idle(trainer: L.Trainer) -> bool:
    """True when Lightning's manual_backward would only call loss.backward().

    manual_backward routes each backward through the strategy, the precision plugin and four hook
    dispatches: ~80 us per step here, 10 % of a step of this MLP on a CPU. They matter for DDP (the reducer
    is prepared per backward), for loss scaling (16-bit precision) and for anyone listening to the
    backward hooks; with one process, plain fp32 and no listener they do nothing.
    """
    listeners = [*trainer.callbacks, trainer.lightning_module]
    hooks = ("on_before_backward", "on_after_backward", "backward")
    return (
        trainer.world_size == 1
        and type(trainer.precision_plugin) is Precision
        and not any(is_overridden(hook, listener) for listener in listeners for hook in hooks)
    )


class MNISTClassifier(L.LightningModule):
    """Trains an MLP with cross-entropy on logits; softmax only where probabilities are wanted."""

    def __init__(
        self,
        input_size: int = 784,
        num_classes: int = 10,
        hidden_sizes: Sequence[int] = (128, 128),
        activation: str = "relu",
        dropout: float = 0.0,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | dict | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        # Manual optimization: training_step takes one optimizer step per mini-batch, and a batch may hold
        # several (data.steps_per_batch). It also skips Lightning's closure machinery, which cost ~15 % of a
        # step of this small MLP on a CPU.
        self.automatic_optimization = False
        # Only plain values go into the checkpoint (loadable with torch.load(weights_only=True)):
        # the optimizer/scheduler partials are stored as descriptions, not as pickled objects.
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.hparams["hidden_sizes"] = list(hidden_sizes)
        self.hparams["optimizer"] = describe_factory(optimizer)
        self.optimizer_factory = optimizer or functools.partial(torch.optim.SGD, lr=0.05)
        # An empty scheduler config (the `none` option) means a constant learning rate.
        self.scheduler_factory = scheduler if callable(scheduler) else None
        self.hparams["scheduler"] = describe_factory(self.scheduler_factory)

        self.net = MLP(input_size, hidden_sizes, num_classes, activation, dropout)
        if compile:
            self.net.compile()  # in place: state_dict keys stay loadable without compile
        # validate_args=False: the argument checks sync with the host on every update.
        metric_args = {"num_classes": num_classes, "validate_args": False}
        self.val_acc = MulticlassAccuracy(average="micro", **metric_args)
        self.test_acc = MulticlassAccuracy(average="micro", **metric_args)
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # saved in checkpoints: a resumed run keeps its best score
        self.test_confusion = MulticlassConfusionMatrix(**metric_args)
        self._direct_backward = False  # decided in on_train_start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        x, y = batch
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers() if self.scheduler_factory is not None else None
        size = self._micro_batch_size(len(y))
        first_step = self.global_step  # 0-based index of the first optimizer step in this batch
        max_steps = self.trainer.max_steps
        all_logits = []
        # One optimizer step per mini-batch. A batch holds several of them when the resident loader groups
        # them (data.steps_per_batch), so Lightning's per-batch overhead is paid once per group.
        for offset, (inputs, targets) in enumerate(zip(x.split(size), y.split(size), strict=True)):
            step = first_step + offset
            if 0 < max_steps <= step:
                y = y[: offset * size]
                break
            logits = self(inputs)
            loss = F.cross_entropy(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            if self._direct_backward:
                loss.backward()
            else:
                self.manual_backward(loss)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            all_logits.append(logits.detach())
            if self._is_logging_step(step):
                self._log_to_loggers({"train/loss": loss.detach()}, step)
        # Train accuracy of the predictions made while training, counted once per batch on the device:
        # no host sync, and far cheaper than a per-step torchmetrics update. val/test use torchmetrics.
        if not all_logits:
            return None
        self.train_correct += (torch.cat(all_logits).argmax(dim=-1) == y).sum()
        self.train_seen += len(y)
        self.log("train/loss", loss.detach(), logger=False)  # latest value, for callbacks and the run record
        return loss

    def _micro_batch_size(self, batch_length: int) -> int:
        datamodule = self.trainer.datamodule
        return getattr(datamodule, "batch_size", None) or batch_length

    def _is_logging_step(self, step: int) -> bool:
        every = self.trainer.log_every_n_steps
        return every > 0 and ((step + 1) % every == 0 or bool(self.trainer.fast_dev_run))

    def _log_to_loggers(self, metrics: dict[str, torch.Tensor], step: int) -> None:
        """Write straight to the loggers at an optimizer step: self.log would place per-step values at
        Lightning's batch count, which is coarser when batches hold several steps. The float() is the
        only host sync, once every log_every_n_steps, as Lightning's own step logging does."""
        values = {name: float(value) for name, value in metrics.items()}
        for logger in self.loggers:
            logger.log_metrics(values, step=step)

    def _log_x_axis(self) -> None:
        # Lightning uses a logged "step" value as the x-axis of the metrics logged with it: epoch-level
        # metrics then line up with train/loss on the optimizer-step axis.
        self.log("step", float(self.global_step), sync_dist=False)

    def on_train_epoch_start(self) -> None:
        self.train_correct = torch.zeros((), dtype=torch.long, device=self.device)
        self.train_seen = 0

    def on_train_epoch_end(self) -> None:
        accuracy = self.train_correct.float() / max(self.train_seen, 1)
        self.log("train/acc", accuracy, sync_dist=self.trainer.world_size > 1)
        self._log_x_axis()

    def on_train_start(self) -> None:
        self._direct_backward = backward_hooks_are_idle(self.trainer)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_loss(F.cross_entropy(logits, y), weight=len(y))
        self.val_acc(logits, y)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:  # sanity steps must not count towards the best score
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)
        self._log_x_axis()

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def on_test_epoch_end(self) -> None:
        self._log_x_axis()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        x, y = batch
        logits = self(x)
        self.test_loss(F.cross_entropy(logits, y), weight=len(y))
        self.test_acc(logits, y)
        self.test_confusion(logits, y)
        self.log("test/loss", self.test_loss, on_step=False, on_epoch=True)
        self.log("test/acc", self.test_acc, on_step=False, on_epoch=True)
        return {"logits": logits}

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return F.softmax(self(x), dim=-1)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        parameters = inspect.signature(self.scheduler_factory).parameters
        length = {k: self._total_optimizer_steps() for k in _TOTAL_STEPS_ARGUMENTS if k in parameters}
        scheduler = self.scheduler_factory(optimizer, **length)
        # Stepped by training_step after every optimizer step (manual optimization).
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _total_optimizer_steps(self) -> int:
        trainer = self.trainer
        if trainer.max_steps > 0:
            return trainer.max_steps  # already counted in optimizer steps; training_step stops there
        # Lightning counts its batches; each holds up to steps_per_batch optimizer steps. The product
        # over-counts only the short last batch of an epoch (the LR ends a hair above its floor), while an
        # under-count would make OneCycleLR raise.
        return trainer.estimated_stepping_batches * getattr(trainer.datamodule, "steps_per_batch", 1)
