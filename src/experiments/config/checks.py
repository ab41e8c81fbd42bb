"""The config checks that need torch: whether the requested accelerator exists on this machine.

Every other check runs earlier, without torch: the schema's types and ranges (experiments.config.schema).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from experiments.errors import ConfigError

_GPU_NAMES = ("gpu", "cuda")


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError when trainer.accelerator names a device this machine does not have."""
    accelerator = str(cfg.trainer.accelerator).lower()
    if accelerator in _GPU_NAMES and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={cfg.trainer.accelerator}: no CUDA GPU visible; use trainer.accelerator=cpu or auto"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator=mps: no Apple MPS device available; use trainer.accelerator=cpu or auto")
