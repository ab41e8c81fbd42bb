"""Checks before a run starts: a folder a run can write into, and an accelerator this machine has.

Every other check of the config runs earlier, without torch: the schema's types and ranges
(experiments.config.schema).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from experiments.errors import ConfigError, os_error_line

# Room for a run's checkpoints, event files and figures; a disk with less is full for this purpose.
MIN_FREE_BYTES = 16 * 2**20
# Bytes in one file name on the usual file systems (ext4, XFS, APFS, NTFS's 255 UTF-16 units are more).
NAME_MAX = 255
_GPU_NAMES = ("gpu", "cuda")


def folder_problem(folder: Path) -> str | None:
    """Why a run could not write under `folder` (created if missing), or None: checked without creating anything."""
    existing = Path(os.path.abspath(folder))
    while not existing.exists():
        if existing.is_symlink():
            return f"{existing} is a symbolic link that leads nowhere (broken, or a loop)"
        if existing == existing.parent:
            break
        existing = existing.parent
    if not existing.is_dir():
        if existing == Path(os.path.abspath(folder)):
            return "it is a file, not a folder"
        return f"it is inside {existing}, which is a file, not a folder"
    return writable_problem(existing)


def writable_problem(existing: Path, min_free: int = MIN_FREE_BYTES) -> str | None:
    """Why no file could be written into the existing folder `existing`, or None."""
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return f"{existing} is on a read-only file system"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable for you"
    free = shutil.disk_usage(existing).free
    if free < min_free:
        return f"the disk holding {existing} is full ({free / 2**20:.1f} MB free)"
    return None


class LogDirCheck(Callback):
    """A Hydra callback, first in conf/hydra/default.yaml: an unusable paths.log_dir (a file, read-only, full)
    is one line before Hydra creates the run or sweep directory (a failure there would be its traceback).

    Hydra turns an exception in a callback into a warning and goes on, so this prints and exits itself
    (with no traceback under HYDRA_FULL_ERROR=1 either: the problem is the folder, not the code).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    def _check(self, config: DictConfig, run_dir_key: str) -> None:
        run_dir = OmegaConf.select(config, run_dir_key, default=None)  # `${now:...}` is cached: Hydra gets the same
        long = [part for part in Path(str(run_dir)).parts if len(part.encode()) > NAME_MAX] if run_dir else []
        if long:
            _fail(
                f"the folder name {long[0][:40]}... in the run directory is {len(long[0].encode())} bytes, more "
                f"than the {NAME_MAX} a file name may have; use a shorter run_name or paths.log_dir"
            )
        log_dir = OmegaConf.select(config, "paths.log_dir", default=None)
        try:
            problem = folder_problem(Path(str(log_dir))) if log_dir is not None else None
        except OSError as exc:  # what the checks themselves meet (a path too long, a folder we may not list)
            problem = os_error_line(exc)
        if problem:
            _fail(f"paths.log_dir={log_dir}: {problem}; set paths.log_dir to a writable folder with free space")


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def check_accelerator(cfg: DictConfig) -> None:
    """ConfigError when trainer.accelerator names a device this machine does not have."""
    import torch  # this module is imported by Hydra at start-up, torch only when a run starts

    accelerator = str(cfg.trainer.accelerator).lower()
    if accelerator in _GPU_NAMES and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={cfg.trainer.accelerator}: no CUDA GPU visible; use trainer.accelerator=cpu or auto"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator=mps: no Apple MPS device available; use trainer.accelerator=cpu or auto")
