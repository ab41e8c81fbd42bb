"""The LightningModule that trains a classifier network (linear, MLP or CNN) with a loss on its logits."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from experiments.errors import ConfigError
from experiments.models import losses
from experiments.models.cnn import LeNet
from experiments.models.linear import SoftmaxRegression
from experiments.models.mlp import MLP

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# The networks by the name the config (`net`) and the checkpoints use.
NETWORKS: dict[str, type[torch.nn.Module]] = {"linear": SoftmaxRegression, "mlp": MLP, "cnn": LeNet}

# Schedulers whose length must match the run: the argument that receives the total number of steps.
_TOTAL_STEPS_ARGUMENTS = ("total_steps", "T_max")


def describe_factory(factory: Callable[..., Any] | None) -> dict[str, Any] | None:
    """A plain-data description of a functools.partial, so checkpoints hold no pickled callables."""
    if factory is None:
        return None
    if isinstance(factory, functools.partial):
        func = factory.func
        return {"name": f"{func.__module__}.{func.__qualname__}", **factory.keywords}
    return {"name": getattr(factory, "__qualname__", repr(factory))}


def direct_loss(loss: Loss) -> Loss:
    """The loss as a plain functools.partial when it is one of this project's own (models/losses.py).

    The loss runs on every training, validation and test step. A partial built by Hydra (`_partial_: true`)
    checks its target against Hydra's instantiate policy again on every call (hydra-core >= 1.3.8), which
    costs many times what the loss itself does on these networks. Hydra authorised the target when it built
    the partial; for the project's own loss functions the step calls the same function with the same
    arguments directly. Any other callable is kept as given, checks included.
    """
    if isinstance(loss, functools.partial) and loss.func in losses.LOSSES.values():
        return functools.partial(loss.func, *loss.args, **loss.keywords)
    return loss


def logs_step_metrics(trainer: L.Trainer, step: int) -> bool:
    """Whether Lightning writes the step metrics of optimizer step `step` (0-based) to the loggers: every
    `trainer.log_every_n_steps` steps, and every step under fast_dev_run."""
    every = trainer.log_every_n_steps
    return bool(trainer.fast_dev_run) or (every > 0 and (step + 1) % every == 0)


class MNISTClassifier(L.LightningModule):
    """Trains the network named by `net` with a loss on its logits; softmax only where probabilities are wanted.

    `network` holds the network's own arguments (models/linear.py, mlp.py, cnn.py): the checkpoint keeps
    them with `net`, so that experiments.checkpoints.load.model_from_checkpoint can build the same network again.
    """

    def __init__(
        self,
        net: str = "mlp",
        num_classes: int = 10,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | dict | None = None,
        loss: Loss | None = None,
        l1: float = 0.0,
        compile: bool = False,
        **network: Any,
    ) -> None:
        super().__init__()
        if net not in NETWORKS:
            raise ValueError(f"net={net!r} is not a network; choose {' | '.join(NETWORKS)}")
        # Only plain values go into the checkpoint (loadable with torch.load(weights_only=True)):
        # the optimizer/scheduler/loss partials are stored as descriptions, not as pickled objects.
        self.save_hyperparameters(ignore=["optimizer", "scheduler", "loss"])
        self.hparams["optimizer"] = describe_factory(optimizer)
        self.optimizer_factory = optimizer or functools.partial(torch.optim.SGD, lr=0.05)
        # An empty scheduler config (the `none` option) means a constant learning rate.
        self.scheduler_factory = scheduler if callable(scheduler) else None
        self.hparams["scheduler"] = describe_factory(self.scheduler_factory)
        self.criterion = direct_loss(loss) if loss is not None else functools.partial(losses.cross_entropy)
        self.hparams["loss"] = describe_factory(self.criterion)
        self.l1 = l1

        self.net = NETWORKS[net](num_classes=num_classes, **network)
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
        # Train accuracy of the predictions made while training, counted on the device: no host sync, and
        # far cheaper per step than a torchmetrics update. Not saved: a run resumed mid-epoch counts the
        # rest of that epoch.
        # In-place updates (add_) also skip nn.Module's attribute bookkeeping on every step.
        self.register_buffer("train_correct", torch.zeros((), dtype=torch.long), persistent=False)
        self.register_buffer("train_seen", torch.zeros((), dtype=torch.long), persistent=False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """What the network takes per image: (rows, columns), or (pixels,) for the networks that flatten."""
        return tuple(self.net.input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self.criterion(logits, y)
        logging = self._is_logging_step()
        if self.l1 > 0:
            penalty = self.l1 * self.l1_norm()
            loss = loss + penalty
            if logging:
                self.log("train/l1", penalty.detach(), on_step=True, on_epoch=False)
        self.train_correct.add_((logits.detach().argmax(dim=-1) == y).sum())
        self.train_seen.add_(len(y))
        if logging:
            self.log("train/loss", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def l1_norm(self) -> torch.Tensor:
        """The sum of |w| over the weight matrices and kernels: biases and BatchNorm scales (1-D) are left free."""
        return sum(p.abs().sum() for p in self.net.parameters() if p.dim() > 1)

    def _is_logging_step(self) -> bool:
        """Whether Lightning writes this batch's step metrics to the loggers: calling self.log on the other
        steps costs Python time for a value nobody reads."""
        return logs_step_metrics(self.trainer, self.trainer.global_step)

    def on_train_epoch_start(self) -> None:
        self.train_correct.zero_()
        self.train_seen.zero_()

    def on_train_epoch_end(self) -> None:
        accuracy = self.train_correct.float() / self.train_seen.clamp(min=1)
        self.log("train/acc", accuracy, sync_dist=self.trainer.world_size > 1)
        self._log_x_axis()

    def _log_x_axis(self) -> None:
        # Lightning plots metrics logged with a "step" value at that step. Validation runs before Lightning
        # counts the batch that triggered it, so without this its points would sit one step early;
        # with it, every epoch-level point sits at the number of optimizer steps taken.
        self.log("step", float(self.global_step))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_loss(self.criterion(logits, y), weight=len(y))
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

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.test_loss(self.criterion(logits, y), weight=len(y))
        self.test_acc(logits, y)
        self.test_confusion(logits, y)
        self.log("test/loss", self.test_loss, on_step=False, on_epoch=True)
        self.log("test/acc", self.test_acc, on_step=False, on_epoch=True)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return F.softmax(self(x), dim=-1)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        parameters = inspect.signature(self.scheduler_factory).parameters
        length = {k: self._total_optimizer_steps() for k in _TOTAL_STEPS_ARGUMENTS if k in parameters}
        try:
            scheduler = self.scheduler_factory(optimizer, **length)
        except (ValueError, ZeroDivisionError) as exc:  # e.g. OneCycleLR over too few steps for its phases
            where = ", ".join(f"{k}={v}" for k, v in length.items()) or "this run"
            name = self.hparams["scheduler"]["name"]
            raise ConfigError(
                f"model.scheduler: {name} cannot schedule {where} ({exc or type(exc).__name__}); "
                "train for more steps, change model.scheduler, or use model/scheduler=none"
            ) from exc
        # `name`: LearningRateMonitor's tag, next to the other train/ curves in TensorBoard.
        config = {"scheduler": scheduler, "interval": "step", "name": "train/lr"}
        return {"optimizer": optimizer, "lr_scheduler": config}

    def _total_optimizer_steps(self) -> int:
        # Lightning's own count: max_steps, max_epochs, limit_train_batches and accumulate_grad_batches.
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ConfigError(
                "the learning-rate schedule needs a finite run: set trainer.max_epochs or trainer.max_steps, "
                "or use model/scheduler=none"
            )
        return max(int(total), 1)
