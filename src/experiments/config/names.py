"""OmegaConf resolvers used by the configs; registered when `experiments.train` is imported."""

from __future__ import annotations

import re

from omegaconf import OmegaConf

from experiments.runs import resume

_MAX_NAME = 120


def short_overrides(override_dirname: str) -> str:
    """'data.batch_size=32,model.optimizer.lr=0.1' -> 'batch_size=32,lr=0.1' (last key part only)."""
    return re.sub(r"(^|,)[+~]*(?:[\w-]+[./])*([\w-]+)=", r"\1\2=", override_dirname)


def run_suffix(run_name: str, override_dirname: str) -> str:
    """'_<name>' for a run directory: the explicit run_name, else the shortened overrides, else ''."""
    name = str(run_name or "") or short_overrides(str(override_dirname or ""))
    # Optuna proposes values like lr=0.02038415671047589; 4 significant digits keep names readable and
    # the job number in front of a sweep's names keeps them unique.
    name = re.sub(r"(?<![\w.])\d+\.\d{5,}(?:e-?\d+)?", lambda m: f"{float(m.group()):.4g}", name)
    name = re.sub(r"[^\w=,.+\-\[\]]", "_", name)[:_MAX_NAME]
    return f"_{name}" if name else ""


def register() -> None:
    OmegaConf.register_new_resolver("experiments.run_suffix", run_suffix, replace=True)
    OmegaConf.register_new_resolver("experiments.run_dir", resume.hydra_run_dir, replace=True)
    OmegaConf.register_new_resolver("experiments.hydra_subdir", resume.hydra_output_subdir, replace=True)
