"""TensorBoard's HParams for a sweep: the experiment in the sweep directory, and a row for every job.

`SweepHParamsCallback` (hydra.callbacks.sweep_hparams in conf/hydra/default.yaml) writes, when the multirun
starts, the experiment summary in the sweep directory's root: its columns are the keys the sweep varies
(`key=a,b` overrides and `hydra.sweeper.params`, Optuna's included) and the metrics
(experiments.runs.hparams.METRICS). `tensorboard --logdir <sweep dir>` then shows those, and a sweep stopped
half way has it too. Each job writes its own session start and end (experiments.runs.hparams); a job that
fails before its logger exists (a bad value) gets both here, when it ends, from its overrides.

Imported by Hydra at start-up: tensorboard and torch are imported only when something is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.runs import hparams

if TYPE_CHECKING:
    from hydra.core.utils import JobReturn
    from tensorboard.plugins.hparams.summary_v2 import Domain


def varied_keys(config: DictConfig) -> dict[str, Domain | None]:
    """The keys a multirun varies, each with the domain of its values, in the order Hydra's basic sweeper
    takes them: hydra.sweeper.params, then the command line's (which replace a param of the same key)."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    params = config.hydra.sweeper.get("params") or {}
    specs = [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task)
    domains: dict[str, Domain | None] = {}
    for override in OverridesParser.create().parse_overrides(specs):
        key = override.key_or_group
        if not override.is_sweep_override() or key.startswith("hydra."):
            continue
        sweep = override.value()
        if isinstance(sweep, IntervalSweep):  # Optuna's interval(a, b), also with tag(log, ...)
            domains[key] = hp.RealInterval(float(sweep.start), float(sweep.end))
        elif isinstance(sweep, (ChoiceSweep, RangeSweep)):
            domains[key] = hparams.discrete(override.sweep_iterator())
        else:
            domains[key] = None
    return domains


def _logs_to_tensorboard(config: DictConfig) -> bool:
    loggers = config.get("logger") or {}
    return any(str(node.get("_target_", "")).endswith("TensorBoardLogger") for node in loggers.values() if node)


class SweepHParamsCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not _logs_to_tensorboard(config):
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        hparams.write(sweep_dir, [hparams.experiment_summary(varied_keys(config))])

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """A job that failed before TensorBoard was set up (runs.outcome marked it failed in run.json):
        its row, from its overrides, with status failure."""
        run_dir = Path(str(config.hydra.runtime.output_dir))
        record_path = run_dir / "run.json"
        if not _logs_to_tensorboard(config) or not record_path.is_file() or any(run_dir.glob(hparams.EVENT_FILES)):
            return
        record = json.loads(record_path.read_text())
        if record.get("status") == "failed":
            start = hparams.session_start_summary(hparams.session_hparams(None, record.get("overrides") or []))
            hparams.write(run_dir, [start, hparams.session_end_summary("failed")])
