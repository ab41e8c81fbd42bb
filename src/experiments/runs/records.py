"""What a run records about itself in run.json, shared by the writer (RunRecord) and the readers (sweep
report): no heavy imports. What it shows in TensorBoard's HParams: experiments.runs.hparams."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments import atomic


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Readers (the sweep report, a resumed run) never see a half-written file."""
    atomic.write_text(path, json.dumps(data, indent=2, default=str))


def finite_or_none(value: Any) -> float | None:
    """A float for JSON, or None for NaN/inf/missing/non-numeric values (JSON has no NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def run_info(cfg: DictConfig, overrides: list[str]) -> dict[str, Any]:
    """The run's identity in run.json: its overrides and the settings a sweep report shows."""
    return {
        "overrides": overrides,
        "batch_size": cfg.data.batch_size,
        "lr": cfg.model.optimizer.lr,
        "optimizer": str(cfg.model.optimizer._target_).rsplit(".", 1)[-1],
        # Defaults for the configs of runs started before there was a choice (a resumed run keeps its config).
        "model": cfg.model.get("net", "mlp"),
        "loss": str(OmegaConf.select(cfg, "model.loss._target_", default="cross_entropy")).rsplit(".", 1)[-1],
        "hidden_sizes": list(cfg.model.get("hidden_sizes") or []),
        "dataset": cfg.data.dataset,
        "seed": cfg.seed,
    }
