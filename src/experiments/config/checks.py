"""Checks on the composed config that fail fast, before any data is read or any file is written.

Each failure is a ConfigError whose message names the key, what was given and what is allowed.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from experiments.errors import ConfigError
from experiments.models.mlp import ACTIVATIONS

_GPU_NAMES = ("gpu", "cuda")
_SINGLE_DEVICE_STRATEGIES = ("single_device", "single_xla")


def _number(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{key}={value!r} must be a number")
    return value


def _integer(cfg: DictConfig, key: str) -> int:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}={value!r} must be an integer")
    return value


def check_data(cfg: DictConfig) -> None:
    if _integer(cfg, "data.batch_size") <= 0:
        raise ConfigError(f"data.batch_size={cfg.data.batch_size} must be > 0")
    if _integer(cfg, "data.val_size") < 0:
        raise ConfigError(f"data.val_size={cfg.data.val_size} must be >= 0")
    if _number(cfg, "data.std") <= 0:
        raise ConfigError(f"data.std={cfg.data.std} must be > 0")


def check_model(cfg: DictConfig) -> None:
    model = cfg.model
    if model.activation not in ACTIVATIONS:
        raise ConfigError(f"model.activation={model.activation!r} is not supported; choose one of {list(ACTIVATIONS)}")
    sizes = model.hidden_sizes
    if not OmegaConf.is_list(sizes) or len(sizes) == 0:
        raise ConfigError(f"model.hidden_sizes={sizes!r} must be a non-empty list of layer widths, e.g. [128,128]")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise ConfigError(f"model.hidden_sizes={list(sizes)} must contain positive integers only")
    dropout = _number(cfg, "model.dropout")
    if not 0 <= dropout < 1:
        raise ConfigError(f"model.dropout={dropout} must be in [0, 1)")
    if OmegaConf.select(cfg, "model.optimizer._target_") is None:
        raise ConfigError("model.optimizer is not set; pick one with model/optimizer=sgd|adam|adamw|rmsprop|adagrad")
    lr = _number(cfg, "model.optimizer.lr")
    if not 0 < lr < float("inf"):
        raise ConfigError(f"model.optimizer.lr={lr} must be > 0")
    weight_decay = OmegaConf.select(cfg, "model.optimizer.weight_decay", default=0.0)
    if weight_decay is not None and _number(cfg, "model.optimizer.weight_decay") < 0:
        raise ConfigError(f"model.optimizer.weight_decay={weight_decay} must be >= 0")


def check_trainer(cfg: DictConfig) -> None:
    trainer = cfg.trainer
    max_epochs = _integer(cfg, "trainer.max_epochs")
    if max_epochs == 0 or max_epochs < -1:
        raise ConfigError(f"trainer.max_epochs={max_epochs} must be >= 1, or -1 for no epoch limit")
    max_steps = trainer.get("max_steps", -1)
    if max_epochs == -1 and (max_steps is None or max_steps < 0) and not trainer.get("max_time"):
        raise ConfigError(
            "trainer.max_epochs=-1 trains forever without trainer.max_steps or trainer.max_time; set one of them"
        )
    devices = trainer.get("devices")
    count = len(devices) if OmegaConf.is_list(devices) else devices if isinstance(devices, int) else None
    if count is not None and count > 1 and str(trainer.get("strategy")) in _SINGLE_DEVICE_STRATEGIES:
        # Lightning would quietly train on one device only.
        raise ConfigError(
            f"trainer.devices={devices} needs a multi-device strategy, not trainer.strategy={trainer.strategy}; "
            "use trainer=ddp (or trainer.devices=1)"
        )
    accelerator = str(trainer.accelerator).lower()
    if accelerator in _GPU_NAMES and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={trainer.accelerator}: no CUDA GPU visible; use trainer.accelerator=cpu or auto"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator=mps: no Apple MPS device available; use trainer.accelerator=cpu or auto")


def check_config(cfg: DictConfig) -> None:
    """Raise ConfigError for the first invalid value found."""
    check_data(cfg)
    check_model(cfg)
    check_trainer(cfg)
