"""A sweep's guards at its two ends (Hydra callbacks in conf/hydra/default.yaml): every job of a grid is
composed before the sweep starts, and a sweep whose every job failed exits non-zero."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.config import mistakes
from experiments.rundir import FAILED, RunDir
from experiments.search.study import SWEEPER
from experiments.sweeps.plan import grid_jobs
from experiments.sweeps.results import is_job_dir


class SweepCheck(Callback):
    """A Hydra callback: every job of a grid sweep (the basic sweeper's) is composed before the sweep starts,
    so that a lab given an override one of its configurations lacks (`experiment=compare_models
    model.hidden_sizes=[64]`: the linear model has no hidden layers) is one line, not a sweep directory
    holding a plan and the jobs before the one that cannot exist. Values are still checked per job (a job
    with a bad value fails, and the sweep goes on)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.global_hydra import GlobalHydra
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        sweeper = config.hydra.sweeper
        grid = str(sweeper.get("_target_", "")).endswith(".BasicSweeper")
        if not grid or not GlobalHydra.instance().is_initialized():
            return
        arguments = [str(a) for a in config.hydra.overrides.task]
        try:
            jobs = grid_jobs(sweeper.get("params") or {}, arguments)
        except Exception:  # what only Hydra's own expansion knows (glob, ranges): Hydra reports it
            return
        loader = GlobalHydra.instance().hydra.config_loader  # type: ignore[union-attr]
        for num, job in enumerate(jobs):
            try:
                loader.load_sweep_config(config, job)
            except (HydraException, OmegaConfBaseException) as exc:
                reason = mistakes.describe(exc) or mistakes.other(exc)
                given = {a.split("=", 1)[0] for a in arguments if "," not in a}
                swept = [o for o in job if o.split("=", 1)[0] not in given] or job
                _fail(
                    f"job {num} of the sweep ({' '.join(swept)}) cannot be composed: {reason[:300]}; drop the "
                    "override that this job's configuration lacks, or sweep only configurations that have it"
                )


class SweepOutcome(Callback):
    """A Hydra callback, first in conf/hydra/default.yaml so that its on_multirun_end runs last (Hydra calls
    the end hooks in reverse order), after the report: a sweep whose every job failed exits non-zero, as a
    single run that fails does. Each failed job already printed its own line and is listed in the report."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if str(config.hydra.sweeper.get("_target_", "")) == SWEEPER:  # a search: its own verdict says it
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = [RunDir(p) for p in sorted(sweep_dir.iterdir()) if is_job_dir(p)] if sweep_dir.is_dir() else []
        if jobs and all(job.status() == FAILED for job in jobs):
            first = jobs[0].record().get("error", "")
            print(
                f"error: all {len(jobs)} jobs of the sweep failed (the first: {first}); fix that and run it again",
                file=sys.stderr,
                flush=True,
            )
            sys.exit(1)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)
