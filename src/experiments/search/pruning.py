"""Stop a hopeless trial: at the end of each training epoch (after its validation, once the run record and
last.ckpt have the epoch), report the monitored metric to this job's Optuna trial and ask its pruner whether
to go on.

The job runs in its own process (the launcher's: this one, a joblib worker, a SLURM task); it reaches its
trial through the study's storage file (experiments.search.study). A pruned trial is told PRUNED in the
study by the job itself, then the run stops with `Pruned` (optuna.TrialPruned, and RunPruned for the run's
own failure table, experiments.lifecycle.failures): the run ends with status `pruned`, and the sweeper
finds the trial already finished.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import lightning as L
from lightning.pytorch.callbacks import Callback

from experiments.errors import RunPruned
from experiments.search.study import make_pruner

if TYPE_CHECKING:
    import optuna


class OptunaPruning(Callback):
    def __init__(self, pruner: str = "median", monitor: str = "val/acc") -> None:
        make_pruner(pruner)  # an unknown name is a config mistake before anything trains
        self.pruner = pruner
        self.monitor = monitor
        self.trial: optuna.Trial | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit" and self.pruner != "none" and trainer.is_global_zero:
            from experiments.search.study import job_trial

            self.trial = job_trial(self.pruner)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        prune = False
        value = trainer.callback_metrics.get(self.monitor)
        if self.trial is not None and value is not None:
            epoch = trainer.current_epoch
            self.trial.report(float(value), step=epoch)
            last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
            prune = not last and self.trial.should_prune()  # a finished run is worth its test metrics
        # Every DDP rank stops together (only rank 0 talks to the study).
        if trainer.strategy.broadcast(prune, src=0):
            import optuna

            number = self.trial.number if self.trial else "?"
            message = f"trial {number} pruned by the {self.pruner} pruner after epoch {trainer.current_epoch}"
            message += f" ({self.monitor} {float(value):.4f})" if value is not None else ""
            if self.trial is not None:
                self.trial.study.tell(self.trial, state=optuna.trial.TrialState.PRUNED)
            raise pruned(message)


def pruned(message: str) -> Exception:
    """Optuna's own TrialPruned, which the lifecycle also knows as RunPruned (without importing Optuna)."""
    import optuna

    class Pruned(RunPruned, optuna.TrialPruned):
        pass

    return Pruned(message)
