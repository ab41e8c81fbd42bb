"""`experiments-evaluate ckpt_path=<run dir or .ckpt> [key=value ...]`: test a checkpoint.

Tests on the official test set with the run's own saved data config (dataset, normalisation) and
prints accuracy, loss and per-class accuracy. A run directory means its best checkpoint. The keys are
in conf/evaluate.yaml (`experiments-evaluate --help`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig

from experiments.atomic import write_text
from experiments.commands import CONFIG_DIR, one_line_errors, output_file, required
from experiments.config.mistakes import one_line_mistakes
from experiments.errors import ConfigError

if TYPE_CHECKING:
    from experiments.commands.checkpoint import RunFiles


@dataclass
class ClassResult:
    name: str
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")


@dataclass
class Evaluation:
    checkpoint: str
    dataset: str
    images: int
    accuracy: float
    loss: float
    per_class: list[ClassResult]


def evaluate(files: RunFiles, data_dir: Any = None, batch_size: int = 1000, device: str = "auto") -> Evaluation:
    """Lightning's `Trainer.test` on the checkpoint's model: the test step, loss and metrics the run itself
    tested with, so evaluate gives the run's own numbers by construction."""
    import logging

    import lightning as L

    from experiments.checkpoints.load import model_from_checkpoint
    from experiments.commands.checkpoint import resolve_device

    target = resolve_device(device)
    model = model_from_checkpoint(files.checkpoint)
    datamodule = files.datamodule(data_dir)
    datamodule.prepare_data()
    datamodule.check_model(model)
    datamodule.eval_batch_size = batch_size
    # Lightning's info lines (devices found, ...) say nothing here: evaluate prints its own report.
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)
    try:
        trainer = L.Trainer(
            accelerator="gpu" if target.type == "cuda" else "cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.test(model, datamodule=datamodule, verbose=False)
    finally:
        lightning_log.setLevel(level)
    confusion = model.test_confusion.compute().cpu()
    correct, totals = confusion.diag(), confusion.sum(dim=1)
    classes = datamodule.classes
    per_class = [ClassResult(name, int(c), int(t)) for name, c, t in zip(classes, correct, totals, strict=True)]
    return Evaluation(
        checkpoint=str(files.checkpoint),
        dataset=str(files.data.get("dataset", "mnist")),
        images=int(totals.sum()),
        accuracy=float(trainer.callback_metrics["test/acc"]),
        loss=float(trainer.callback_metrics["test/loss"]),
        per_class=per_class,
    )


def report(result: Evaluation, files: RunFiles) -> str:
    lines = [
        f"Checkpoint:    {result.checkpoint}",
        f"Config:        {files.config_file or 'none next to the checkpoint: MNIST defaults'}",
        f"Test set:      {result.dataset}, {result.images:,} images",
        f"Test accuracy: {result.accuracy:.2%}",
        f"Test loss:     {result.loss:.4f}",
        "Per-class accuracy:",
    ]
    width = max(len(c.name) for c in result.per_class)
    lines += [f"  {c.name:<{width}}  {c.accuracy:7.2%}  ({c.correct}/{c.total})" for c in result.per_class]
    return "\n".join(lines)


@one_line_mistakes  # Hydra's config mistakes as one line (experiments.config.mistakes)
@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
@one_line_errors
def main(cfg: DictConfig) -> None:
    ckpt_path = required(cfg, "ckpt_path", "ckpt_path=<run dir> or ckpt_path=<file.ckpt>")
    if cfg.which not in ("best", "last"):
        raise ConfigError(f"which={cfg.which!r} must be best or last")
    batch_size = cfg.batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be a positive integer")
    output_file(cfg, "output", "metrics.json")  # checked before the work, not after it

    from experiments.commands.checkpoint import RunFiles  # torch: only now that there is work to do

    files = RunFiles(ckpt_path, which=str(cfg.which))
    result = evaluate(files, cfg.data_dir, batch_size, str(cfg.device))
    print(report(result, files), flush=True)
    if cfg.output:
        payload = {**asdict(result), "per_class": [{**asdict(c), "accuracy": c.accuracy} for c in result.per_class]}
        write_text(Path(str(cfg.output)), json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
