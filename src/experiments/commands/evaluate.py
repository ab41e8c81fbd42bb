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
from experiments.errors import ConfigError

if TYPE_CHECKING:
    from experiments.runs.files import RunFiles


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
    import torch

    from experiments.runs.checkpoints import model_from_checkpoint
    from experiments.runs.files import resolve_device

    target = resolve_device(device)
    model = model_from_checkpoint(files.checkpoint).to(target)
    datamodule = files.datamodule(data_dir)
    datamodule.prepare_data()
    datamodule.check_model(model)
    datamodule.setup("test")  # with the run's batch size: setup checks it against the training split
    datamodule.batch_size = batch_size
    classes = datamodule.classes
    correct = torch.zeros(len(classes), dtype=torch.long)
    totals = torch.zeros(len(classes), dtype=torch.long)
    loss_sum, count = 0.0, 0
    with torch.inference_mode():
        for inputs, targets in datamodule.test_dataloader():
            inputs, targets = inputs.to(target), targets.to(target)
            logits = model(inputs)
            loss_sum += float(model.criterion(logits, targets)) * len(targets)  # the run's own loss
            hits = (logits.argmax(-1) == targets).long()
            correct += torch.bincount(targets, weights=hits, minlength=len(classes)).long().cpu()
            totals += torch.bincount(targets, minlength=len(classes)).cpu()
            count += len(targets)
    per_class = [ClassResult(name, int(c), int(t)) for name, c, t in zip(classes, correct, totals, strict=True)]
    return Evaluation(
        checkpoint=str(files.checkpoint),
        dataset=str(files.data.get("dataset", "mnist")),
        images=count,
        accuracy=int(correct.sum()) / max(count, 1),
        loss=loss_sum / max(count, 1),
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

    from experiments.runs.files import RunFiles  # torch: only now that there is work to do

    files = RunFiles(ckpt_path, which=str(cfg.which))
    result = evaluate(files, cfg.data_dir, batch_size, str(cfg.device))
    print(report(result, files), flush=True)
    if cfg.output:
        payload = {**asdict(result), "per_class": [{**asdict(c), "accuracy": c.accuracy} for c in result.per_class]}
        write_text(Path(str(cfg.output)), json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
