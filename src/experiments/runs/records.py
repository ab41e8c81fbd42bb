"""What a run records about itself (run.json, TensorBoard's HParams), shared by the writer (RunRecord) and the
readers (sweep report): no heavy imports."""

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
