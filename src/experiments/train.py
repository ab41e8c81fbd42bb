"""`python train.py [group=option ...] [key=value ...]`: train, validate and test one model.

Hydra composes `conf/train.yaml`; everything is built with `hydra.utils.instantiate` from `_target_`.
User mistakes (bad values, missing data, no GPU) end with one line on stderr and a non-zero exit;
set HYDRA_FULL_ERROR=1 to get the traceback instead.

torch and Lightning are imported only once a run starts: `--help`, `--cfg job` and config mistakes
answer without them.
"""

from __future__ import annotations

import logging
import shlex
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from experiments import console
from experiments.checkpoints import resume
from experiments.config import mistakes, names, schema
from experiments.config.build import build, build_group, rejected
from experiments.launch.launcher import runs_in_parallel
from experiments.lifecycle.failures import report_failure
from experiments.rundir import RunDir, run_info
from experiments.tensorboard import hparams

# The configs ship inside the package (the repository's top-level `conf/` links here), so an installed
# wheel finds them as an editable install does.
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")
names.register()
resume.register()
schema.register()
# Hydra's job logging prints these lines and keeps them in <run dir>/train.log (conf/hydra/job_logging/run.yaml).
log = logging.getLogger(__name__)


def train(cfg: DictConfig, run_dir: RunDir, overrides: list[str], in_sweep: bool = False) -> dict[str, float | None]:
    """Fit and test as configured; returns the final metrics. Raises ExperimentError on user mistakes."""
    import lightning as L
    import torch
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from experiments import atomic
    from experiments.checkpoints import continuity, io, load
    from experiments.config.preflight import check_accelerator, check_trainer_arguments
    from experiments.launch import ddp
    from experiments.lifecycle.callback import RunLifecycle
    from experiments.lifecycle.guards import DivergenceGuard, GracefulStop
    from experiments.lifecycle.record import RunRecord
    from experiments.tensorboard.figures import write_test_figures

    check_accelerator(cfg)
    check_trainer_arguments(cfg.trainer)
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")  # TF32 matmuls: free speed on Ampere and newer
    torch.set_flush_denormal(bool(cfg.get("flush_denormal", True)))
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = build(cfg.data, "data")
    datamodule.prepare_data()  # missing or corrupt files fail here, before anything else is built
    model = build(cfg.model, "model")
    datamodule.check_model(model)  # images of the size the network takes, before anything trains
    start_checkpoint = load.verify_start(cfg.get("ckpt_path"), model) if cfg.train else None
    if ddp.is_global_zero():  # only now is the run directory sure to stay: its resume command means something
        log.info(f"Run: {console.shown(run_dir.path)}  (resume if interrupted: {console.resume_command(run_dir.path)})")
    record = RunRecord(run_dir, run_info(cfg, overrides))
    loggers = build_group(cfg, "logger")
    callbacks = build_group(cfg, "callbacks")
    if not loggers:  # LearningRateMonitor refuses to run without a logger: `logger=none` means no LR curve
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    # Always on, whatever the callbacks group, and first: epoch-start marks (before anything logs at epoch
    # start) so a resumed run never logs a step twice, a stop on a NaN/inf loss before anything else sees
    # the batch, the run record, and a clean stop on Ctrl-C/SIGTERM.
    stop = GracefulStop(run_dir.last_checkpoint, str(HydraConfig.get().sweep.dir) if in_sweep else None)
    lifecycle = RunLifecycle(continuity.EpochStarts(run_dir), DivergenceGuard(), record, stop)
    plugins = io.trainer_plugins(cfg.trainer)  # with AtomicCheckpointIO: checkpoints written atomically
    trainer: L.Trainer = build(
        cfg.trainer, "trainer", callbacks=[lifecycle, *callbacks], logger=loggers or False, plugins=plugins
    )
    if ddp.is_global_zero():  # DDP child ranks share rank 0's directory and never write into it
        if cfg.get("resume"):  # the run's config.yaml stays as it was written at its start
            io.remove_leftovers(run_dir, trainer)
            continuity.drop_after_checkpoint(run_dir, start_checkpoint)
        else:
            atomic.write_text(run_dir.config, OmegaConf.to_yaml(cfg, resolve=True))
        hparams.start_session(trainer.loggers, cfg, overrides, in_sweep=in_sweep)
        for logger in trainer.loggers:  # other trackers (MLflow) get the same settings as TensorBoard's HParams
            if not isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(hparams.session_hparams(cfg, overrides))

    started = time.perf_counter()
    if cfg.train:
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=start_checkpoint, weights_only=True)
        except (MisconfigurationException, ValueError) as exc:
            # Lightning checks some Trainer values against the data only when fit starts
            # (val_check_interval larger than an epoch, ...): before the first step that is a config mistake.
            if run_dir.started() or not any(str(k) in str(exc) for k in cfg.trainer):
                raise
            raise rejected(cfg.trainer, "trainer", exc) from exc
    metrics = record.final_metrics(trainer, ("val/acc_best", "val/acc"))
    if cfg.test:
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) and cfg.train else ""
        # verbose=False: Lightning's table of test metrics would repeat the summary printed at the end.
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True, verbose=False)
        metrics.update({key: _scalar(trainer.callback_metrics, key) for key in ("test/acc", "test/loss")})
        write_test_figures(trainer, model, datamodule, int(cfg.test_figures))

    seconds = round(time.perf_counter() - started, 3)
    record.complete(trainer, metrics=metrics, global_step=trainer.global_step, wall_seconds=seconds)
    return metrics


def _scalar(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


def print_summary(metrics: dict[str, float | None], output_dir: Path) -> None:
    lines = []
    if metrics.get("test/acc") is not None:
        lines.append(f"Test accuracy: {metrics['test/acc']:.2%}   (test loss {metrics['test/loss']:.4f})")
    if metrics.get("val/acc_best") is not None:
        lines.append(f"Best val acc:  {metrics['val/acc_best']:.2%}")
    run_dir = console.shown(output_dir)
    tensorboard = f"{console.tool('tensorboard')} --logdir {shlex.quote(run_dir)}"
    lines += [f"Run directory: {run_dir}", f"TensorBoard:   {tensorboard}"]
    for line in lines:
        log.info(line)


def run(cfg: DictConfig) -> float | None:
    """The Hydra task: train, print the summary, and turn failures into one readable line (lifecycle.failures)."""
    console.tolerant_streams()
    hydra_cfg = HydraConfig.get()
    run_dir = RunDir(Path(hydra_cfg.runtime.output_dir))
    overrides = list(hydra_cfg.overrides.task)
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    resuming = bool(cfg.get("resume")) and run_dir.exists()
    is_global_zero = True
    try:
        schema.validate(cfg, overrides)  # a config mistake is reported before torch and Lightning are imported
        log.info(console.loading_line())  # the import below takes seconds: say so at once
        from experiments.launch import ddp, parallel  # torch and Lightning: only now that a run starts

        is_global_zero = ddp.is_global_zero()
        if is_global_zero:
            run_dir.acquire()  # one writer per run (a resume took it in ResumeCheck, before Hydra wrote)
        with parallel.place_job(cfg), ddp.job_scope(cfg):
            if cfg.get("resume"):
                resumed = resume.prepare(cfg, run_dir.path, overrides)
                cfg, overrides = resumed.cfg, resumed.overrides
            console.ignore_spurious_warnings(run_dir.checkpoints if resuming else None)
            metrics = train(cfg, run_dir, overrides, in_sweep)
    except Exception as exc:
        return report_failure(
            exc,
            run_dir,
            overrides,
            resuming=resuming,
            multirun=in_sweep,
            tensorboard=hparams.logs_to_tensorboard(cfg),
            is_global_zero=is_global_zero,
            side_by_side=runs_in_parallel(hydra_cfg),
        )
    finally:
        run_dir.release()
    if is_global_zero:
        print_summary(metrics, run_dir.path)
    return metrics.get(cfg.get("optimized_metric", "val/acc_best"))


@mistakes.one_line_mistakes  # Hydra's config mistakes (unknown key or option, wrong type) as one line
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run(cfg)


if __name__ == "__main__":
    main()
