"""Checks before a run starts: a folder a run can write into, an accelerator this machine has, and
Trainer arguments that Lightning's Trainer takes.

Every other check of the config runs earlier, without torch: the schema's types and ranges
(experiments.config.schema).
"""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import os
import shutil
import sys
import typing
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


# Trainer arguments train.py passes itself, from config groups of their own: a value given as
# `+trainer.<name>=...` would be replaced without a word.
OWN_TRAINER_ARGUMENTS = {
    "callbacks": "callbacks come from the callbacks group: add one with +callbacks.<name>._target_=<class> "
    "(callbacks=none: only the ones every run has)",
    "logger": "loggers come from the logger group: logger=none for none, logger=csv or logger=tensorboard",
}


def check_trainer_arguments(trainer_cfg: DictConfig) -> None:
    """ConfigError naming the key unless every `trainer.<key>` is an argument of Lightning's Trainer whose
    value fits the type Lightning annotates it with (`Trainer.__init__`'s signature: the same rule for
    every argument, those `+trainer.<key>=...` adds included). A `{_target_: ...}` value must name a
    class of the annotated kind. Lightning checks some values only deep inside fit, or not at all
    (`inference_mode=[1]` is truthy): refused here, before anything is built."""
    import lightning as L

    parameters = inspect.signature(L.Trainer.__init__).parameters
    hints = typing.get_type_hints(L.Trainer.__init__)
    for name in trainer_cfg:
        key = str(name)
        if key.startswith("_"):
            continue
        node = trainer_cfg[key]
        value = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        if key in OWN_TRAINER_ARGUMENTS:
            raise ConfigError(f"trainer.{key}={_show(value)}: {OWN_TRAINER_ARGUMENTS[key]}")
        if key not in parameters or key == "self":
            close = difflib.get_close_matches(key, [p for p in parameters if p != "self"], n=1)
            hint = f"; did you mean trainer.{close[0]}?" if close else ""
            raise ConfigError(f"trainer.{key}: Lightning's Trainer has no argument {key}{hint}")
        expected = hints.get(key)
        if expected is not None and not _fits(value, expected):
            raise ConfigError(f"trainer.{key}={_show(value)} must be {_describe(expected)} (Lightning's Trainer)")


def _show(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    return str(value) if value != "" else "''"


def _fits(value: Any, expected: Any) -> bool:
    """Whether a config value (plain Python, `{_target_: ...}` for objects) fits a type annotation."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if expected is Any:
        return True
    if origin is typing.Union:
        return any(_fits(value, arm) for arm in args)
    if origin is typing.Literal:
        return any(value == arm and type(value) is type(arm) for arm in args)
    if expected is type(None):
        return value is None
    if isinstance(value, dict) and "_target_" in value:  # an object Hydra builds: of the annotated kind?
        return isinstance(expected, type) and _builds(value["_target_"], expected)
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected in (str, Path):
        return isinstance(value, str)
    if origin in (list, collections.abc.Iterable, collections.abc.Sequence):
        return isinstance(value, list) and (not args or all(_fits(item, args[0]) for item in value))
    if origin is dict:
        return isinstance(value, dict) and (not args or all(_fits(v, args[1]) for v in value.values()))
    if isinstance(expected, type):
        return isinstance(value, expected)  # an object type (timedelta, Logger): only built from _target_
    return True  # an annotation this check does not read: Lightning's own checks decide


def _builds(target: Any, expected: type) -> bool:
    from hydra.utils import get_class

    try:
        built = get_class(str(target))
    except Exception:  # Hydra's error for a target it cannot import: reported when it is built, by name
        return True
    return issubclass(built, expected)


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


def _describe(expected: Any) -> str:
    """An annotation in words: `true or false`, `an integer or null`, `a Precision or CheckpointIO
    ({_target_: <class>}), a list of them or null`."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    arms = args if origin is typing.Union else (expected,)
    classes = [a.__name__ for a in arms if isinstance(a, type) and a not in _TYPE_NAMES]
    words = [_describe(a) for a in arms if typing.get_origin(a) is typing.Literal]
    words += [_TYPE_NAMES[a] for a in arms if a in _TYPE_NAMES and a is not type(None)]
    if classes:
        words.append(f"a {' or '.join(classes)} ({{_target_: <class>}})")
    if any(typing.get_origin(a) in (list, collections.abc.Iterable, collections.abc.Sequence) for a in arms):
        words.append("a list of them" if classes else "a list")
    if any(typing.get_origin(a) is dict for a in arms):
        words.append("a mapping")
    if type(None) in arms:
        words.append("null")
    return ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else (words[0] if words else str(expected))
