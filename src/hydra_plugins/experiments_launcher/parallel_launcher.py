"""`hydra/launcher=parallel` (the default, conf/hydra/launcher/parallel.yaml): Hydra's joblib launcher, sized to
the machine. The work is in experiments.launch.launcher; Hydra accepts a launcher class only from here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

from experiments.launch.launcher import launch_side_by_side


class ParallelLauncher(JoblibLauncher):
    def __init__(self, jobs_per_gpu: int = 4, gpus_for: Sequence[str] = ("auto", "gpu", "cuda"), **joblib: Any) -> None:
        super().__init__(**joblib)  # every other key is joblib.Parallel's
        self.jobs_per_gpu, self.gpus_for = jobs_per_gpu, tuple(gpus_for)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        return launch_side_by_side(self, job_overrides, initial_job_idx, self.jobs_per_gpu, self.gpus_for)
