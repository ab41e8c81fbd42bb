"""`experiments-lr-find [group=option ...] [key=value ...]`: Lightning's learning-rate range test.

Composes conf/lr_find.yaml: everything train.py takes (model=..., data=..., experiment=..., trainer....)
and the `lr_find.*` arguments of `Tuner.lr_find`. Builds the model, the data and the Trainer as train.py
does, runs `Tuner(trainer).lr_find(...)` (a short fit that raises the learning rate every step; Lightning
restores the starting weights afterwards) and writes into a directory of its own,
`<paths.log_dir>/lr_find/<time>/`: lr_find.png (loss against learning rate, the suggestion marked),
lr_find.json (the curve and the suggestion) and TensorBoard events (the curve and the plot). It prints the
suggested learning rate and the command that trains with it.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from experiments import console
from experiments.checkpoints import resume
from experiments.commands import CONFIG_DIR, one_line_errors
from experiments.config import names, schema
from experiments.errors import ExperimentError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# What train.py registers: train.yaml's resolvers (run directory names) and the schemas its files name.
names.register()
resume.register()
schema.register()
# Hydra's job logging (train.py's): the console, and lr_find.log in the output directory.
log = logging.getLogger(__name__)


def find_lr(cfg: DictConfig) -> Any:
    """Lightning's range test on the configured model and data, from the configured starting weights: what
    `Tuner.lr_find` returns (its `results` hold the curve, `suggestion()` the suggested rate)."""
    import lightning as L
    from lightning.pytorch.tuner import Tuner

    from experiments.config.build import build
    from experiments.config.preflight import check_accelerator

    check_accelerator(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build(cfg.data, "data")
    datamodule.prepare_data()
    model = build(cfg.model, "model")
    datamodule.check_model(model)
    settings = cfg.lr_find
    # The search is measured in steps: no epoch limit cuts it short on a small training set, and the
    # configured schedule (replaced while searching) is sized for those steps. Nothing else is written:
    # the curve is this command's output.
    trainer = build(
        cfg.trainer,
        "trainer",
        max_epochs=-1,
        max_steps=settings.num_training,
        logger=False,
        callbacks=[],
        enable_checkpointing=False,
    )
    finder = Tuner(trainer).lr_find(
        model,
        datamodule=datamodule,
        min_lr=settings.min_lr,
        max_lr=settings.max_lr,
        num_training=settings.num_training,
        mode=settings.mode,
        early_stop_threshold=settings.early_stop_threshold,
        update_attr=False,
    )
    assert finder is not None  # None only under fast_dev_run, which the Trainer here never has
    return finder


def curve_figure(lrs: list[float], losses: list[float], suggestion: float, index: int, mode: str) -> Figure:
    """Smoothed training loss against learning rate, the suggestion marked (Lightning's plot, without pyplot)."""
    from experiments.plotting import new_figure

    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    ax.plot(lrs, losses, color="tab:blue")
    ax.plot([suggestion], [losses[index]], marker="o", markersize=9, color="tab:red", linestyle="none")
    if mode == "exponential":
        ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title(f"Learning-rate range test: suggested lr {suggestion:.3g} (steepest fall)")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def write_results(cfg: DictConfig, finder: Any, suggestion: float, out_dir: Path) -> Path:
    """lr_find.png, lr_find.json and TensorBoard events in `out_dir`; returns the PNG's path."""
    from lightning.pytorch.loggers import TensorBoardLogger

    from experiments.atomic import write_text
    from experiments.config.build import build_group
    from experiments.plotting import render, save

    lrs, losses = list(finder.results["lr"]), list(finder.results["loss"])
    index = lrs.index(suggestion)  # the suggestion is one of the rates tried
    record = {
        "suggested_lr": suggestion,
        "steps": len(lrs),
        "settings": OmegaConf.to_container(cfg.lr_find),
        "optimizer": str(cfg.model.optimizer._target_),
        "lr": lrs,
        "loss": [loss if math.isfinite(loss) else None for loss in losses],
    }
    write_text(out_dir / "lr_find.json", json.dumps(record, indent=2))
    figure = curve_figure(lrs, losses, suggestion, index, str(cfg.lr_find.mode))
    png = save(figure, out_dir / "lr_find.png")
    for logger in build_group(cfg, "logger"):
        if isinstance(logger, TensorBoardLogger):
            # TensorBoard's x axis is a step: the curve as two scalars over the search's steps, and the plot.
            writer = logger.experiment
            for step, (lr, loss) in enumerate(zip(lrs, losses, strict=True)):
                writer.add_scalar("lr_find/lr", lr, step)
                if math.isfinite(loss):
                    writer.add_scalar("lr_find/loss", loss, step)
            writer.add_image("lr_find/curve", render(figure), 0, dataformats="HWC")
            writer.add_text("lr_find/suggested_lr", f"{suggestion:.3g}", 0)
            logger.finalize("success")
    return png


def train_command(overrides: list[str], suggestion: float) -> str:
    """The train command with this command's overrides (the finder's own left out) and the suggested lr."""
    kept = [o for o in overrides if not o.lstrip("+~").startswith(("lr_find.", "model.optimizer.lr="))]
    kept.append(f"model.optimizer.lr={suggestion:.3g}")
    return " ".join([console.tool("experiments-train"), *map(shlex.quote, kept)])


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="lr_find")
@one_line_errors
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    overrides = list(hydra_cfg.overrides.task)
    schema.validate(cfg, overrides)
    out_dir = Path(hydra_cfg.runtime.output_dir)
    console.ignore_spurious_warnings()
    finder = find_lr(cfg)
    suggestion: Any = finder.suggestion()
    steps = len(finder.results["lr"])
    if suggestion is None:
        raise ExperimentError(
            f"the range test stopped after {steps} of lr_find.num_training={cfg.lr_find.num_training} steps, too "
            "few for a suggestion (the first 10 are skipped): raise lr_find.early_stop_threshold or lower "
            "lr_find.min_lr"
        )
    png = write_results(cfg, finder, float(suggestion), out_dir)
    shown = console.shown(out_dir)
    log.info(
        f"Suggested learning rate: {suggestion:.3g}  (steepest fall of the loss over {steps} steps, "
        f"lr {cfg.lr_find.min_lr:g} to {finder.results['lr'][-1]:.3g})"
    )
    log.info(f"Train with it: {train_command(overrides, float(suggestion))}")
    log.info(f"Curve:         {console.shown(png)}  (lr_find.json alongside)")
    log.info(f"TensorBoard:   {console.tool('tensorboard')} --logdir {shlex.quote(shown)}")


if __name__ == "__main__":
    main()
