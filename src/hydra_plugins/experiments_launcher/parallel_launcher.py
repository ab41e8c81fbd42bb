"""`hydra/launcher=parallel` (the default, conf/hydra/launcher/parallel.yaml): Hydra's joblib launcher, sized to
the machine. The work is in experiments.launch.launcher; Hydra accepts a launcher class only from here."""

from __future__ import annotations

from collections.abc import Sequence
from threading import Thread
from typing import Any

from hydra.core.utils import JobReturn
from hydra.types import HydraContext, RunMode, TaskFunction
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from omegaconf import DictConfig

from experiments.launch.launcher import launch_side_by_side, warm_up


class ParallelLauncher(JoblibLauncher):
    def __init__(self, jobs_per_gpu: int = 4, gpus_for: Sequence[str] = ("auto", "gpu", "cuda"), **joblib: Any) -> None:
        super().__init__(**joblib)  # every other key is joblib.Parallel's
        self.jobs_per_gpu, self.gpus_for = jobs_per_gpu, tuple(gpus_for)
        self.warming: Thread | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        if config.hydra.mode == RunMode.MULTIRUN:
            self.warming = warm_up(self, self.jobs_per_gpu, self.gpus_for)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        warming, self.warming = self.warming, None  # Optuna launches several batches: the first waits for it
        return launch_side_by_side(
            self, job_overrides, initial_job_idx, self.jobs_per_gpu, self.gpus_for, warming=warming
        )
