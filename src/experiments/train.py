"""`python train.py [group=option ...] [key=value ...]`: train, validate and test one model.

Hydra composes `conf/train.yaml`; everything is built with `hydra.utils.instantiate` from `_target_`.
User mistakes (bad values, missing data, no GPU) end with one line on stderr and a non-zero exit;
set HYDRA_FULL_ERROR=1 to get the traceback instead.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from experiments.config import names
from experiments.config.checks import check_config
from experiments.errors import CheckpointError, ConfigError, DataError, ExperimentError, RunInterrupted
from experiments.runs import checkpoints, events, resume
from experiments.runs.callbacks import RunLifecycle, RunRecord, write_test_figures
from experiments.runs.guards import DivergenceGuard, GracefulStop
from experiments.runs.records import write_json_atomic
from experiments.sweeps import ddp, parallel

# The configs ship inside the package (the repository's top-level `conf/` links here), so an installed
# wheel finds them as an editable install does.
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")

log = logging.getLogger(__name__)
names.register()


def rejected(node: DictConfig, key: str, exc: BaseException) -> ConfigError:
    """A library's refusal as one line, led by the config key its message names first (`trainer.precision=...`)."""
    reason = " ".join(str(exc).split())
    named = [str(name) for name in node if not str(name).startswith("_") and str(name) in reason]
    first = min(named, key=reason.index, default=None)
    return ConfigError(f"{key}.{first}={node[first]}: {reason}" if first else f"{key}: {reason}")


def build(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, with our own errors unwrapped and library errors named by config key."""
    try:
        return hydra.utils.instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        if isinstance(cause, ExperimentError):
            raise cause from None
        raise rejected(node, key, cause or exc) from exc


def build_callbacks(cfg: DictConfig, with_loggers: bool = True) -> list[Callback]:
    nodes = cfg.get("callbacks") or {}
    callbacks = [build(node, f"callbacks.{name}") for name, node in nodes.items() if node and "_target_" in node]
    # LearningRateMonitor refuses to run without a logger; `logger=none` should just mean "no LR curve".
    return [c for c in callbacks if with_loggers or not isinstance(c, LearningRateMonitor)]


def build_loggers(cfg: DictConfig) -> list[Logger]:
    nodes = cfg.get("logger") or {}
    return [build(node, f"logger.{name}") for name, node in nodes.items() if node and "_target_" in node]


def hparams_for_logging(cfg: DictConfig) -> dict[str, Any]:
    """The knobs worth comparing in TensorBoard's HParams tab, flattened, as plain scalars/strings."""
    flat: dict[str, Any] = {}

    def visit(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "_target_":
                    flat[prefix] = str(value).rsplit(".", 1)[-1]
                elif not key.startswith("_") and key not in ("data_dir", "cache_dir", "search_dirs"):
                    visit(f"{prefix}.{key}", value)
        else:
            flat[prefix] = node if isinstance(node, (int, float, str, bool)) else str(node)

    container = OmegaConf.to_container(cfg, resolve=True)
    visit("data", container["data"])
    visit("model", container["model"])
    for key in ("max_epochs", "precision", "accelerator"):
        flat[f"trainer.{key}"] = str(cfg.trainer.get(key))
    flat["seed"] = cfg.seed
    return flat


def run_info(cfg: DictConfig, overrides: list[str]) -> dict[str, Any]:
    return {
        "overrides": overrides,
        "batch_size": cfg.data.batch_size,
        "lr": cfg.model.optimizer.lr,
        "optimizer": str(cfg.model.optimizer._target_).rsplit(".", 1)[-1],
        "hidden_sizes": list(cfg.model.hidden_sizes),
        "dataset": cfg.data.dataset,
        "seed": cfg.seed,
    }


def _scalar(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


def train(cfg: DictConfig, output_dir: Path, overrides: list[str]) -> dict[str, float | None]:
    """Fit and test as configured; returns the final metrics. Raises ExperimentError on user mistakes."""
    check_config(cfg)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 matmuls: free speed on Ampere and newer
    torch.set_flush_denormal(bool(cfg.get("flush_denormal", True)))
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = build(cfg.data, "data")
    datamodule.prepare_data()  # missing or corrupt files fail here, before anything else is built
    model = build(cfg.model, "model")
    start_checkpoint = checkpoints.verify_start(cfg.get("ckpt_path"), model) if cfg.train else None
    record = RunRecord(output_dir / "run.json", run_info(cfg, overrides))
    loggers = build_loggers(cfg)
    # Always on, whatever the callbacks group, and first: epoch-start marks (before anything logs at epoch
    # start) so a resumed run never logs a step twice, a stop on a NaN/inf loss before anything else sees
    # the batch, the run record, and a clean stop on Ctrl-C/SIGTERM.
    lifecycle = RunLifecycle(events.EpochStarts(output_dir), DivergenceGuard(), record, GracefulStop())
    trainer: L.Trainer = build(
        cfg.trainer,
        "trainer",
        callbacks=[lifecycle, *build_callbacks(cfg, bool(loggers))],
        logger=loggers or False,
    )
    if ddp.is_global_zero():  # DDP child ranks share rank 0's directory and never write into it
        if cfg.get("resume"):  # the run's config.yaml stays as it was written at its start
            events.drop_after_checkpoint(output_dir, start_checkpoint)
        else:
            OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)

    started = time.perf_counter()
    if cfg.train:
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=start_checkpoint, weights_only=True)
        except (MisconfigurationException, ValueError) as exc:
            # Lightning checks some Trainer values against the data only when fit starts
            # (val_check_interval larger than an epoch, ...): before the first step that is a config mistake.
            if record.path.is_file() or not any(str(k) in str(exc) for k in cfg.trainer):
                raise
            raise rejected(cfg.trainer, "trainer", exc) from exc
    metrics: dict[str, float | None] = {
        "val/acc_best": _scalar(trainer.callback_metrics, "val/acc_best"),
        "val/acc": _scalar(trainer.callback_metrics, "val/acc"),
    }
    if cfg.test:
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) and cfg.train else ""
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
        metrics["test/acc"] = _scalar(trainer.callback_metrics, "test/acc")
        metrics["test/loss"] = _scalar(trainer.callback_metrics, "test/loss")
        write_test_figures(trainer, model, datamodule, int(cfg.test_figures))

    hp_metrics = {f"hp/{k.replace('/', '_')}": v for k, v in metrics.items() if v is not None}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(hparams_for_logging(cfg), metrics=hp_metrics)
    record.finish(
        "completed",
        trainer,
        metrics=metrics,
        global_step=trainer.global_step,
        wall_seconds=round(time.perf_counter() - started, 3),
    )
    return metrics


def print_summary(metrics: dict[str, float | None], output_dir: Path) -> None:
    lines = []
    if metrics.get("test/acc") is not None:
        lines.append(f"Test accuracy: {metrics['test/acc']:.2%}   (test loss {metrics['test/loss']:.4f})")
    if metrics.get("val/acc_best") is not None:
        lines.append(f"Best val acc:  {metrics['val/acc_best']:.2%}")
    lines += [f"Run directory: {output_dir}", f"TensorBoard:   tensorboard --logdir {output_dir}"]
    print("\n".join(lines), flush=True)


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _mark_record(record_path: Path, status: str, message: str) -> None:
    """Set the status of an existing run.json, keeping its history and run info."""
    record = json.loads(record_path.read_text())
    write_json_atomic(record_path, {**record, "status": status, "error": message})


def run(cfg: DictConfig) -> float | None:
    """The Hydra task: train, report, and turn failures into one readable line.

    A single run that fails before training leaves no run directory behind; one that fails later is
    marked failed in its run.json. In a multirun the job is marked failed and the sweep goes on with the
    other jobs. Ctrl-C/SIGTERM saves a checkpoint, marks the run interrupted and ends the process (and a
    sweep). A resumed run's directory is never deleted.
    """
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    record_path = output_dir / "run.json"
    resuming = bool(cfg.get("resume")) and resume.is_run_dir(output_dir)
    try:
        with parallel.place_job(cfg), ddp.job_scope(cfg):
            if cfg.get("resume"):
                resumed = resume.prepare(cfg, output_dir, overrides)
                cfg, overrides = resumed.cfg, resumed.overrides
            metrics = train(cfg, output_dir, overrides)
    except Exception as exc:
        if not ddp.is_global_zero():
            # A DDP child meets the same mistake as rank 0, which reports it; a child exiting non-zero
            # would make Lightning kill rank 0, and with it the rest of a sweep.
            if isinstance(exc, ExperimentError):
                sys.exit(0)
            raise
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if not isinstance(exc, ExperimentError) and not _is_multirun():
            raise  # a bug, not a user mistake: Hydra prints the traceback
        message = " ".join(str(exc).split()) if isinstance(exc, ExperimentError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, RunInterrupted):
            print(f"interrupted: {message}; continue with: {resume.command(output_dir)}", file=sys.stderr)
            _mark_record(record_path, "interrupted", message)
            sys.exit(128 + exc.signum)  # the shell convention for "killed by this signal"; stops a sweep too
        print(f"error: {message}", file=sys.stderr, flush=True)
        if _is_multirun():
            RunRecord(record_path, {"overrides": overrides}).finish("failed", error=message)
            return float("nan")
        # A resumed run that cannot start (data moved, corrupt checkpoint) stays resumable as it was.
        before_training = resuming and isinstance(exc, (ConfigError, DataError, CheckpointError))
        if record_path.is_file() and not before_training:  # training started: keep its files, say how it ended
            _mark_record(record_path, "failed", message)
        elif not resuming:  # training never started: leave nothing half-written
            logging.shutdown()
            shutil.rmtree(output_dir, ignore_errors=True)
        sys.exit(1)
    if ddp.is_global_zero():
        print_summary(metrics, output_dir)
    return metrics.get(cfg.get("optimized_metric", "val/acc_best"))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run(cfg)


if __name__ == "__main__":
    main()
