"""`logger=mlflow`: Lightning's MLFlowLogger, writing to a local MLflow store under `paths.log_dir`.

A function and not a bare `_target_: MLFlowLogger` in the yaml only because the names come from the run
directory: single runs share the experiment `runs`, the jobs of a sweep the experiment `sweeps/<time>`
(MLflow's UI compares the runs of one experiment side by side), and each run is named after its directory.
MLflow is imported by Lightning only when this logger is built (it takes seconds).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any


def mlflow_logger(run_dir: str, log_dir: str, **kwargs: Any) -> Any:
    from lightning.pytorch.loggers import MLFlowLogger

    from experiments.errors import ConfigError

    try:
        import mlflow  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "logger=mlflow needs MLflow: .venv/bin/pip install -e '.[mlflow]' (or pick logger=tensorboard)"
        ) from exc
    run, root = Path(os.path.abspath(run_dir)), Path(os.path.abspath(log_dir))
    group = run.parent.relative_to(root).as_posix() if run.parent.is_relative_to(root) else run.parent.name
    # A database store: MLflow 3 refuses new file stores (./mlruns) unless told otherwise.
    store = f"sqlite:///{root / 'mlflow.db'}"
    # The jobs of a parallel sweep start together: the first to open the database creates and migrates it
    # and the sweep's experiment, the others wait (two migrations at once fail: "duplicate column name").
    with open(root / ".mlflow.db.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        logger = MLFlowLogger(
            experiment_name=group,
            run_name=run.name,
            tracking_uri=store,
            artifact_location=(root / "mlflow-artifacts" / group).as_uri(),
            **kwargs,
        )
        _ = logger.experiment  # opens the store, the experiment and this run, under the lock
    return logger
