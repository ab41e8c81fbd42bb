"""`hydra/sweeper=optuna` (conf/hydra/sweeper/optuna.yaml): an Optuna search under Hydra 1.3, written on
Optuna's current ask-and-tell API.

Why our own: hydra-optuna-sweeper 1.3 pins optuna<3 (and with it SQLAlchemy<2) and never lets a job see its
trial, so nothing can prune; its rewrite for Optuna 4 ships only with Hydra 1.4 (facebookresearch/hydra#3211).

How a search runs:
- The study is in a file (experiments.search.study: a JournalStorage, `<sweep dir>/optuna.journal` unless
  `storage` names another), created or, when it exists, continued: a stopped search goes on from where it
  was with the same command and `hydra.sweep.dir=<its sweep dir>`.
- In batches of `n_jobs`: ask that many trials, launch them as one batch through the configured launcher
  (in parallel with a parallel one), each job numbered after its trial and told the storage's path, and
  tell each trial its job's return value (a float; anything else is a FAIL). A job that pruned itself has
  told its trial already (experiments.search.pruning); `tell(skip_if_finished=True)` leaves it so.
- Search space: `params` and the command line's sweep overrides, in Hydra's override grammar:
  `interval(a, b)` (log scale with `tag(log, ...)`; integers when both ends are), `choice(...)`, `range(...)`.
"""

from __future__ import annotations

import logging
import math
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from experiments import atomic
from experiments.console import shown, this_program
from experiments.errors import ConfigError, full_error
from experiments.search.study import make_pruner, open_storage, storage_path

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"


def distribution(override: Override) -> Any:
    """The Optuna distribution of one sweep override."""
    import optuna.distributions as d

    value = override.value()
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return d.IntDistribution(int(value.start), int(value.end), log=log_scale)
        return d.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    if isinstance(value, ChoiceSweep | RangeSweep):
        choices = list(override.sweep_iterator())
        if not all(isinstance(c, int | float | str | bool) for c in choices):  # lists, dicts: Hydra's text
            choices = list(override.sweep_string_iterator())
        return d.CategoricalDistribution(choices)
    raise ConfigError(f"{override.input_line}: Optuna cannot search {type(value).__name__}")


def as_override(key: str, value: Any) -> str:
    """A sampled value as a command-line override (lists chosen as Hydra text stay text)."""
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    return f"{key}={value}"


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        study_name: str,
        direction: str,
        n_trials: int,
        n_jobs: int | None,
        sampler: Any,  # an Optuna sampler: Hydra builds it from its _target_ with the sweeper
        params: Mapping[str, str] | None = None,
        storage: str | None = None,
    ) -> None:
        self.study_name = study_name
        self.direction = direction
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.sampler = sampler
        self.params = dict(params or {})
        self.storage = storage

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def batch_size(self) -> int:
        """Trials launched together: `n_jobs`, or (null) as many as the launcher runs at once: its own
        `n_jobs` when set, one for Hydra's basic launcher (one job at a time), else one per usable core."""
        if self.n_jobs is not None:
            return self.n_jobs
        launcher = self.config.hydra.launcher
        width = launcher.get("n_jobs")
        if isinstance(width, int) and width > 0:
            return width
        if str(launcher.get("_target_", "")).endswith(".BasicLauncher"):
            return 1
        return len(os.sched_getaffinity(0))

    def search_space(self, arguments: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
        """The searched keys with their distributions, and the fixed overrides every job gets."""
        parser = OverridesParser.create()
        lines = {**{k: f"{k}={v}" for k, v in self.params.items()}}
        for override in parser.parse_overrides(list(arguments)):  # the command line replaces a preset's key
            lines[override.get_key_element()] = override.input_line
        space, fixed = {}, []
        for key, line in lines.items():
            override = parser.parse_overrides([line])[0]
            if override.is_sweep_override():
                space[key] = distribution(override)
            else:
                fixed.append(line)
        return space, fixed

    def sweep(self, arguments: list[str]) -> None:
        try:
            self.search(arguments)
        except ConfigError as exc:  # one line, as the jobs report theirs (HYDRA_FULL_ERROR=1: the traceback)
            if full_error():
                raise
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(1)

    def search(self, arguments: list[str]) -> None:
        import optuna

        for key, value, low in (("n_trials", self.n_trials, 0), ("n_jobs", self.batch_size(), 1)):
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"hydra.sweeper.{key}={value} must be an integer >= {low}")
        space, fixed = self.search_space(arguments)
        search = self.config.get("hparams_search")
        if search is not None:  # a wrong pruner would fail every job alike: say it once, before any starts
            make_pruner(str(search.pruner))
        path = storage_path(self.storage, self.sweep_dir)
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # its per-trial lines repeat the sweep's own
        study = optuna.create_study(
            study_name=self.study_name,
            storage=open_storage(path),
            sampler=self.sampler,
            direction=self.direction,
            load_if_exists=True,
        )
        # Trials left RUNNING by a killed search: their jobs are gone, so they count as failed.
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        done = len(study.get_trials(deepcopy=False))
        log.info(
            f"Optuna study {self.study_name}: {done} of {self.n_trials} trials done, storage {shown(path)}"
            + (f"; continue a stopped search with: {continue_command(self.sweep_dir)}" if self.storage is None else "")
        )
        while done < self.n_trials:
            trials = [study.ask(space) for _ in range(min(self.batch_size(), self.n_trials - done))]
            batch = [
                [*fixed, *(as_override(k, v) for k, v in trial.params.items()), f"hydra.sweeper.storage={path}"]
                for trial in trials
            ]
            self.validate_batch_is_legal(batch)
            first = trials[0].number
            if [t.number for t in trials] == list(range(first, first + len(trials))):
                returns = list(self.launcher.launch(batch, initial_job_idx=first))
            else:  # another process asked in between: each job still takes its trial's number
                returns = [
                    self.launcher.launch([jobs], initial_job_idx=t.number)[0]
                    for t, jobs in zip(trials, batch, strict=True)
                ]
            for trial, ret in zip(trials, returns, strict=True):
                value = job_value(ret)
                if value is None:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                else:
                    study.tell(trial, value, skip_if_finished=True)
            done += len(trials)
        self.save_results(study)

    def save_results(self, study: Any) -> None:
        """The best trial, as hydra-optuna-sweeper wrote it (`<sweep dir>/optimization_results.yaml`)."""
        import optuna

        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            return  # experiments.search.verdict reports it, after the sweep's report is written
        best = study.best_trial
        results = {"name": "optuna", "best_params": best.params, "best_value": best.value, "best_trial": best.number}
        atomic.write_text(self.sweep_dir / RESULTS_FILE, OmegaConf.to_yaml(OmegaConf.create(results)))
        chosen = " ".join(as_override(k, v) for k, v in best.params.items())
        log.info(f"Best trial {best.number}: {best.value:.4f} with {chosen}")


def job_value(ret: Any) -> float | None:
    """A job's return value as a trial value: a finite float, or None (the job failed or returned nothing)."""
    try:
        value = ret.return_value  # raises the job's exception when it failed
    except Exception:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def continue_command(sweep_dir: Path) -> str:
    """The command as typed, pointed at this sweep directory: it continues the study stored there."""
    args = [shlex.quote(a) for a in sys.argv[1:] if not a.startswith("hydra.sweep.dir=")]
    return " ".join([*this_program(), *args, f"hydra.sweep.dir={shlex.quote(shown(sweep_dir))}"])
