"""What a run shows in TensorBoard's HParams and Custom Scalars tabs, written with TensorBoard's hparams API.

HParams reads three kinds of summaries (tensorboard.plugins.hparams.summary, module docstring):
- an *experiment*: the hyperparameter columns and the metrics. A sweep writes one in its report run,
  `<sweep dir>/zz_report` (`SweepHParamsCallback`; experiments.tensorboard.sweep), listing the keys it
  varies; a single run writes its own, listing `CURATED`.
  TensorBoard uses the first experiment it finds, so jobs of a sweep write none.
- a *session start* per run: its hyperparameter values, written when the run starts, so a running, killed
  or failed run is a row too;
- a *session end* per run: its status, success or failure, written by experiments.rundir.RunDir with the
  status in run.json (a sweep job that failed before it had a logger gets its start there too). An
  interrupted run writes none (TensorBoard
  has no "aborted" status: it shows "Unknown", as for a running one), so that its resume can still end it:
  TensorBoard keeps the first session end of a run directory.

The metrics are the scalar tags the run logs anyway (HParams shows each one's last value), so no extra
`hp/*` charts. Heavy imports (tensorboard, torch) happen inside the functions: Hydra imports this module
at start-up (the sweep callback), before torch is loaded.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams.summary_v2 import Domain

# Last values: val/acc_best is the best epoch's accuracy, test/* are logged once, after training.
METRICS = ("val/acc_best", "val/acc", "test/acc", "test/loss", "train/loss")
# HParams shows the first five hyperparameters (in name order) ticked: these sort so that the learning
# rate is among them.
CURATED = (
    "data.batch_size",
    "data.dataset",
    "model.net",
    "model.optimizer",
    "model.optimizer.lr",
    "model.scheduler",
    "seed",
    "trainer.max_epochs",
)
# Custom Scalars: train and validation side by side. Tags are regular expressions; `^lr-` is
# LearningRateMonitor's name when no scheduler names it (model/scheduler=none).
LAYOUT = {
    "train vs val": {
        "loss": ["Multiline", ["^train/loss$", "^val/loss$"]],
        "accuracy": ["Multiline", ["^train/acc$", "^val/acc$"]],
        "learning rate": ["Multiline", ["^train/lr$", "^lr-"]],
    }
}


def plain(value: Any) -> bool | int | float | str:
    """A value as HParams stores it: bool, number or string (lists as Python writes them, None as null)."""
    if value is None:
        return "null"
    if isinstance(value, (bool, int, float, str)):
        return value
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    return str(list(value) if isinstance(value, tuple) else value)


def _name(target: Any) -> str:
    return str(target).rsplit(".", 1)[-1]


def curated(cfg: DictConfig) -> dict[str, bool | int | float | str]:
    """The `CURATED` settings of a run, flat (optimizer and scheduler by class name)."""
    scheduler = OmegaConf.select(cfg, "model.scheduler._target_", default=None)
    values = {
        "data.batch_size": cfg.data.batch_size,
        "data.dataset": cfg.data.dataset,
        "model.net": cfg.model.get("net", "mlp"),
        "model.optimizer": _name(cfg.model.optimizer._target_),
        "model.optimizer.lr": cfg.model.optimizer.lr,
        "model.scheduler": _name(scheduler) if scheduler else "none",
        "seed": cfg.seed,
        "trainer.max_epochs": cfg.trainer.get("max_epochs"),
    }
    return {key: plain(values[key]) for key in CURATED}


def override_values(overrides: Iterable[str]) -> dict[str, bool | int | float | str]:
    """`key=value` overrides as HParams values, parsed by Hydra as the sweep's own values are (so that
    `data.batch_size=64` is the number 64 in both); group choices (`model=cnn`) under the group's name."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return {
        o.key_or_group: plain(o.value())
        for o in parsed
        if not o.is_sweep_override() and not o.is_delete() and not o.key_or_group.startswith("hydra.")
    }


def session_hparams(cfg: DictConfig | None, overrides: Iterable[str]) -> dict[str, bool | int | float | str]:
    """A run's HParams row: the curated settings and everything its overrides set (a sweep's varied keys)."""
    return {**(curated(cfg) if cfg is not None else {}), **override_values(overrides)}


def discrete(values: Iterable[Any]) -> Domain:
    """The Discrete domain of some values: numbers, bools or strings (a mix, as strings)."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    values = [plain(v) for v in values]
    if all(isinstance(v, bool) for v in values):
        return hp.Discrete(values, dtype=bool)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return hp.Discrete([float(v) for v in values], dtype=float)
    return hp.Discrete([str(v) for v in values], dtype=str)


def experiment_summary(domains: Mapping[str, Domain | None]) -> Summary:
    """The experiment: these hyperparameter columns (with their values' domains) and `METRICS`."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    return hp.hparams_config_pb(
        hparams=[hp.HParam(name, domain) for name, domain in domains.items()],
        metrics=[hp.Metric(tag) for tag in METRICS],
    )


def session_start_summary(hparams: Mapping[str, bool | int | float | str]) -> Summary:
    from tensorboard.plugins.hparams import summary_v2 as hp

    # An empty trial id leaves the session group unnamed, and TensorBoard then names the row after the
    # run (its directory, relative to --logdir): unique, unlike a hash or the directory's own name.
    return hp.hparams_pb(dict(hparams), trial_id="")


def session_end_summary(status: str) -> Summary:
    """The session end, built as tensorboard.plugins.hparams.summary.session_end_pb builds it: that module
    imports TensorFlow, and summary_v2 (TensorFlow-free) has no session end."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    # HParams has no "pruned": a run a search stopped early on purpose ended as planned, with its last values.
    statuses = {"completed": api_pb2.STATUS_SUCCESS, "pruned": api_pb2.STATUS_SUCCESS, "failed": api_pb2.STATUS_FAILURE}
    info = plugin_data_pb2.SessionEndInfo(status=statuses[status], end_time_secs=time.time())
    content = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(session_end_info=info))
    summary = Summary()
    summary.value.add(tag=metadata.SESSION_END_INFO_TAG, metadata=content, tensor=metadata.NULL_TENSOR)
    return summary


def write(log_dir: Path, summaries: Iterable[Summary]) -> None:
    """Summaries in a new event file of `log_dir` (TensorBoard reads every event file of a directory as one run)."""
    from torch.utils.tensorboard.writer import FileWriter

    writer = FileWriter(str(log_dir))
    for summary in summaries:
        writer.add_summary(summary)
    writer.close()


def start_session(loggers: Iterable[Any], cfg: DictConfig, overrides: list[str], in_sweep: bool) -> None:
    """At run start, through each TensorBoardLogger's own writer: the Custom Scalars layout, the session
    start and, outside a sweep, the run's experiment. Rank zero only."""
    from lightning.pytorch.loggers import TensorBoardLogger

    hparams = session_hparams(cfg, overrides)
    summaries = [] if in_sweep else [experiment_summary({key: discrete([hparams[key]]) for key in CURATED})]
    summaries.append(session_start_summary(hparams))
    for logger in loggers:
        if not isinstance(logger, TensorBoardLogger):
            continue
        writer = logger.experiment  # torch's SummaryWriter
        writer.add_custom_scalars(LAYOUT)  # also opens its event file: writer.file_writer below
        if writer.file_writer is None:
            raise RuntimeError("torch SummaryWriter.add_custom_scalars left no file_writer to add summaries to")
        for summary in summaries:
            writer.file_writer.add_summary(summary)
        writer.flush()  # on disk now: a run killed later is still a row


# -- a sweep's experiment: the columns are the keys it varies --


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
            domains[key] = discrete(override.sweep_iterator())
        else:
            domains[key] = None
    return domains


def logs_to_tensorboard(config: DictConfig) -> bool:
    """Whether a run or sweep config has a TensorBoardLogger among its loggers."""
    loggers = config.get("logger") or {}
    return any(str(node.get("_target_", "")).endswith("TensorBoardLogger") for node in loggers.values() if node)


class SweepHParamsCallback(Callback):
    """hydra.callbacks.sweep_hparams in conf/hydra/default.yaml: when a multirun starts, the experiment
    summary in the sweep's report run (`<sweep dir>/zz_report`, listed after the jobs), so
    `tensorboard --logdir <sweep dir>` shows the varied keys as columns (a sweep stopped half way too).
    Each job writes its own session start and end."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not logs_to_tensorboard(config):
            return
        from experiments.tensorboard.sweep import REPORT_DIR

        report_dir = Path(str(config.hydra.sweep.dir)) / REPORT_DIR
        report_dir.mkdir(parents=True, exist_ok=True)
        write(report_dir, [experiment_summary(varied_keys(config))])
