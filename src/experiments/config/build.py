"""Objects from config nodes: `hydra.utils.instantiate`, with failures as one line naming the config key."""

from __future__ import annotations

from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from experiments.errors import ConfigError, ExperimentError


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


def build_group(cfg: DictConfig, group: str) -> list[Any]:
    """Every object of a group of named nodes (`callbacks`, `logger`); empty nodes are switched off."""
    nodes = cfg.get(group) or {}
    return [build(node, f"{group}.{name}") for name, node in nodes.items() if node and "_target_" in node]
