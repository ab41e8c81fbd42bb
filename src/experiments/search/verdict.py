"""A search that ends without one completed trial has no answer: after its report is written, one
`error:` line and exit status 1.

A Hydra callback, listed first in conf/hydra/default.yaml: Hydra calls the `on_multirun_end` hooks in reverse
order, so this one runs after the sweep report's.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.search.study import SWEEPER, open_storage, storage_path


class SearchVerdict(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper = config.hydra.sweeper
        if sweeper.get("_target_") != SWEEPER:
            return
        import optuna

        sweep_dir = Path(str(config.hydra.sweep.dir))
        path = storage_path(sweeper.storage, sweep_dir)
        study = optuna.load_study(study_name=str(sweeper.study_name), storage=open_storage(path))
        states = Counter(trial.state.name.lower() for trial in study.get_trials(deepcopy=False))
        if states["complete"]:
            return
        if not states:
            message = f"hydra.sweeper.n_trials={sweeper.n_trials}: the search ran no trial; set it to 1 or more"
        else:
            counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
            message = (
                f"no trial of the search completed ({counts}), so it has no best configuration; "
                f"each trial's error is in {sweep_dir / 'summary.md'}"
            )
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(1)
