"""The commands besides training: evaluate, predict, doctor, compare.

Each is a Hydra app with a flat config of its own (conf/<command>.yaml) that writes no run directory and
no log file. What they share is here: a user mistake ends with one `error:` line and exit status 1.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.errors import ConfigError, ExperimentError

# The same folder train.py composes from; each command reads its own <command>.yaml there.
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def one_line_errors(task: Callable[[DictConfig], None]) -> Callable[[DictConfig], None]:
    """Wrap a Hydra task: an ExperimentError becomes `error: <message>` on stderr and exit status 1
    (the traceback instead with HYDRA_FULL_ERROR=1, the switch Hydra and train.py use)."""

    @functools.wraps(task)
    def run(cfg: DictConfig) -> None:
        try:
            task(cfg)
        except ExperimentError as exc:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
            sys.exit(1)

    return run


def required(cfg: DictConfig, key: str, how: str) -> Any:
    """`cfg[key]`; a key still at `???` is a ConfigError saying how to give it, not OmegaConf's traceback."""
    if OmegaConf.is_missing(cfg, key):
        raise ConfigError(f"{key} is required: {how}")
    return cfg[key]
