"""The jobs a sweep is going to run, written into the sweep directory before the first one starts.

A sweep killed hard (SIGKILL, a lost node) ends without Hydra's `on_multirun_end`, and the jobs it never
reached leave no directory: only this plan, `<sweep dir>/planned_jobs.json`, written atomically when the
multirun starts (`SweepReportCallback.on_multirun_start`), lets the report list them as `not started`.

- Basic sweeper (grids): every job with its overrides, in Hydra's order, so job number i is the i-th
  combination. Hydra keeps this expansion in `BasicSweeper.split_arguments`, in the private
  `hydra._internal` package; `grid_jobs` does the same with the public override parser, and
  tests/test_sweeps.py checks it against the jobs a real multirun writes.
- Optuna: `n_trials` jobs whose overrides are unknown until Optuna proposes them.
- Any other sweeper: no plan (the report then lists the job directories it finds, as before).

When the multirun ends normally, the plan is marked finished: the sweeper ran every job it was going to
(Optuna's GridSampler, for one, runs fewer than `n_trials` when its grid is smaller), so planned jobs
without a directory are no longer reported.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from experiments import atomic

PLAN_FILE = "planned_jobs.json"
GRID, SEARCH = "grid", "search"  # what the report draws: a heatmap of a grid, a scatter of a search

log = logging.getLogger(__name__)


@dataclass
class PlannedJob:
    num: int  # Hydra's job number: the leading digits of the job directory's name
    overrides: list[str] | None  # None: chosen by the sweeper when the job starts (Optuna)


@dataclass
class SweepPlan:
    kind: str  # GRID | SEARCH
    metric: str  # the value the task function returns, which a search optimises
    jobs: list[PlannedJob]
    finished: bool = False  # the multirun ended normally: every job it was going to run has a directory


def grid_jobs(params: Mapping[str, Any], arguments: Sequence[str]) -> list[list[str]]:
    """The basic sweeper's jobs: the cartesian product of `hydra.sweeper.params` and the command line's
    overrides, a command-line key replacing the preset's list for that key (as `BasicSweeper.sweep`)."""
    overrides = OverridesParser.create().parse_overrides([*(f"{k}={v}" for k, v in params.items()), *arguments])
    choices: dict[str, list[str]] = {}
    for override in overrides:
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise ValueError(f"{key}: the basic sweeper cannot enumerate {override.value_type}")
    return [list(job) for job in itertools.product(*choices.values())]


def plan_for(config: DictConfig) -> SweepPlan | None:
    """The plan of the multirun that `config` (Hydra's config at `on_multirun_start`) is about to run."""
    sweeper = config.hydra.sweeper
    target = str(sweeper.get("_target_", ""))
    metric = str(config.get("optimized_metric") or "val/acc_best")
    if target.endswith(".BasicSweeper"):
        arguments = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
        assert isinstance(arguments, list)
        jobs = grid_jobs(sweeper.get("params") or {}, [str(a) for a in arguments])
        return SweepPlan(GRID, metric, [PlannedJob(num, job) for num, job in enumerate(jobs)])
    if target.endswith(".OptunaSweeper"):
        return SweepPlan(SEARCH, metric, [PlannedJob(num, None) for num in range(int(sweeper.n_trials))])
    return None


def write_plan(config: DictConfig) -> Path | None:
    """Write the plan into the sweep directory (created here: Optuna's sweeper creates it only with the
    first job). A plan that cannot be worked out is skipped with a warning: the sweep itself goes on."""
    try:
        plan = plan_for(config)
    except Exception as exc:  # e.g. glob() choices, which only Hydra's config loader can expand
        log.warning(f"no list of planned jobs ({type(exc).__name__}: {exc}); the report lists the jobs it finds")
        return None
    if plan is None:
        return None
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    return _save(plan, sweep_dir)


def mark_finished(sweep_dir: Path) -> None:
    plan = read_plan(sweep_dir)
    if plan is not None:
        plan.finished = True
        _save(plan, sweep_dir)


def _save(plan: SweepPlan, sweep_dir: Path) -> Path:
    jobs = [{"num": job.num, "overrides": job.overrides} for job in plan.jobs]
    body = {"kind": plan.kind, "metric": plan.metric, "finished": plan.finished, "jobs": jobs}
    path = sweep_dir / PLAN_FILE
    atomic.write_text(path, json.dumps(body, indent=1) + "\n")
    return path


def read_plan(sweep_dir: Path) -> SweepPlan | None:
    """The sweep's plan, or None when it has none (another sweeper, an older sweep, an unreadable file)."""
    try:
        body = json.loads((sweep_dir / PLAN_FILE).read_text())
        jobs = [
            PlannedJob(int(job["num"]), None if job["overrides"] is None else [str(o) for o in job["overrides"]])
            for job in body["jobs"]
        ]
        return SweepPlan(str(body["kind"]), str(body["metric"]), jobs, bool(body.get("finished", False)))
    except (OSError, ValueError, KeyError, TypeError):
        return None
