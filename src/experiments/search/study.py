"""The Optuna study of a search, as the sweeper and each of its jobs open it.

The study lives in a file, Optuna's JournalStorage (an append-only log that several processes share under
a file lock), by default `<sweep dir>/optuna.journal`. The sweeper asks for the trials there; each job,
in whatever process or machine the launcher runs it, reopens the same file to report its val/acc per epoch
and to ask whether to stop (pruning.py). A killed search continues from the file; `optuna-dashboard
<sweep dir>/optuna.journal` shows it.

Optuna is imported only inside the functions: Hydra imports the sweeper plugin at every start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from experiments.errors import ConfigError

if TYPE_CHECKING:
    import optuna

STORAGE_FILE = "optuna.journal"
SWEEPER = "hydra_plugins.experiments_optuna.optuna_sweeper.OptunaSweeper"
PRUNERS = ("median", "hyperband", "none")


def storage_path(storage: str | None, sweep_dir: Path) -> str:
    """Where the study is: `hydra.sweeper.storage` (a journal file, or an RDB URL such as sqlite:///x.db),
    by default the journal file in the sweep directory."""
    return str(storage) if storage else str(sweep_dir / STORAGE_FILE)


def open_storage(path: str) -> optuna.storages.BaseStorage:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if "://" in path:  # an RDB URL: Optuna's RDBStorage (SQLAlchemy)
        return optuna.storages.RDBStorage(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(path))


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """`hparams_search.pruner`: which trials stop early, judged on their per-epoch val/acc."""
    import optuna

    if name == "median":  # below the median of earlier trials at the same epoch (after 5 complete trials)
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if name == "hyperband":  # successive halving over epochs 1..max_epochs, in several brackets
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"hparams_search.pruner={name} must be one of {', '.join(PRUNERS)}")


def job_trial(pruner: str) -> optuna.Trial | None:
    """This job's trial, when it is a job of this project's Optuna sweeper; None otherwise (a single run,
    another sweeper). The sweeper numbers each job after its trial (job number = trial number) and gives it
    the storage's resolved path in `hydra.sweeper.storage`."""
    import optuna

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN or hydra.sweeper.get("_target_") != SWEEPER:
        return None
    storage = open_storage(str(hydra.sweeper.storage))
    name = str(hydra.sweeper.study_name)
    study = optuna.load_study(study_name=name, storage=storage, pruner=make_pruner(pruner))
    # Public storage API (optuna.storages.BaseStorage); Trial(study, trial_id) is how Optuna itself hands a
    # trial to an objective, here in the job's process instead of the sweeper's.
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(name), hydra.job.num)
    return optuna.trial.Trial(study, trial_id)
