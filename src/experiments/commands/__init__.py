"""The commands besides training: evaluate, predict, doctor, compare.

Each is a Hydra app with a flat config of its own (conf/<command>.yaml) that writes no run directory and
no log file. What they share is here: a failure ends with one `error:` line and exit status 1, and a file
they are asked to write is checked before the work.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.config.preflight import writable_problem
from experiments.console import tolerant_streams
from experiments.errors import ConfigError, full_error, is_bug, one_line

# The same folder train.py composes from; each command reads its own <command>.yaml there.
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def one_line_errors(task: Callable[[DictConfig], None]) -> Callable[[DictConfig], None]:
    """Wrap a Hydra task: any failure becomes `error: <message>` on stderr and exit status 1 (the traceback
    instead with HYDRA_FULL_ERROR=1, the switch Hydra and train.py use). A user mistake's message names
    the input and the fix; an OSError names the file and what its errno means; anything else is a bug,
    reported by type and message."""

    @functools.wraps(task)
    def run(cfg: DictConfig) -> None:
        tolerant_streams()
        try:
            task(cfg)
        except Exception as exc:
            if full_error():
                raise
            message = one_line(exc)
            if is_bug(exc):
                message += " (HYDRA_FULL_ERROR=1 prints the traceback)"
            print(f"error: {message}", file=sys.stderr, flush=True)
            sys.exit(1)

    return run


def required(cfg: DictConfig, key: str, how: str) -> Any:
    """`cfg[key]`; a key still at `???` is a ConfigError saying how to give it, not OmegaConf's traceback."""
    if OmegaConf.is_missing(cfg, key):
        raise ConfigError(f"{key} is required: {how}")
    return cfg[key]


def output_file(cfg: DictConfig, key: str, example: str) -> Path | None:
    """The file `cfg[key]` names for the command to write at its end (None: not asked for), checked before
    the work starts: not a folder, in a folder that exists and can take a file."""
    value = cfg.get(key)
    if value is None or str(value) == "":
        return None
    path = Path(str(value))
    if path.is_dir():
        raise ConfigError(f"{key}={value} is a folder; name a file in it, e.g. {key}={path / example}")
    folder = Path(os.path.abspath(path)).parent
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise ConfigError(f"{key}={value}: its folder {folder} {what}; name a file in an existing folder")
    problem = writable_problem(folder, min_free=0)  # a full disk fails the (atomic) write with one line
    if problem:
        raise ConfigError(f"{key}={value}: {problem}; name a file in a writable folder")
    return path
