"""Checkpoints written atomically, through Lightning's CheckpointIO plugin API, and the leftovers of a killed write.

Lightning's own TorchCheckpointIO saves through fsspec's transaction, which writes the file in `$TMPDIR`
and then copies it over the target: across filesystems that copy is not atomic, so a kill during it
leaves a truncated `last.ckpt` (the run can never be resumed) and the whole temporary file in /tmp.
`AtomicCheckpointIO` writes with `experiments.atomic.atomic_write` (temporary file next to the target,
fsync, rename) instead. train.py hands it to the Trainer through `plugins=` (`trainer_plugins`), which
Lightning gives to whichever strategy runs (DDP included: the strategy saves on rank 0 only). It is not
in conf/trainer/default.yaml because a `plugins:` list there would make `+trainer.plugins=[...]` fail
(Hydra refuses to add a key that exists) and `trainer.plugins=[...]` drop it silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import AsyncCheckpointIO, CheckpointIO, TorchCheckpointIO
from omegaconf import DictConfig

from experiments import atomic
from experiments.config.build import build
from experiments.rundir import RunDir


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local saves are atomic: a kill leaves the old file or the new one, never a
    part of one (and at most a `.<name>.<random>.tmp` next to it, which a resume deletes). Remote paths
    (s3://, gs://, ...) and loading/removing stay Lightning's."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)  # refuses storage_options, as documented
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_write(target) as handle:
            torch.save(checkpoint, handle)


def trainer_plugins(trainer_cfg: DictConfig) -> list[Any]:
    """The Trainer's `plugins`: the configured ones (`+trainer.plugins=[...]`), and AtomicCheckpointIO unless
    a configured plugin or strategy already decides how checkpoints are written (Lightning accepts one)."""
    node = trainer_cfg.get("plugins")
    built = build(node, "trainer.plugins") if node else []
    plugins = list(built) if isinstance(built, (list, tuple)) else [built]
    strategy = trainer_cfg.get("strategy")
    if isinstance(strategy, DictConfig) and strategy.get("checkpoint_io") is not None:
        return plugins
    given = [p for p in plugins if isinstance(p, CheckpointIO)]
    if not given:
        return [*plugins, AtomicCheckpointIO()]
    for plugin in given:
        # AsyncCheckpointIO saves (in a thread) through a base CheckpointIO; without one given, Lightning
        # would put its TorchCheckpointIO there.
        if isinstance(plugin, AsyncCheckpointIO) and plugin.checkpoint_io is None:
            plugin.checkpoint_io = AtomicCheckpointIO()
    return plugins


def remove_leftovers(run_dir: RunDir, trainer: Any) -> list[Path]:
    """Before a resumed run writes anything: delete the temporary files a killed write left behind
    (checkpoints, run.json, event-file rewrites). Returns what was removed."""
    dirpaths = [getattr(callback, "dirpath", None) for callback in trainer.checkpoint_callbacks]
    folders = {run_dir.path, run_dir.checkpoints, *(Path(str(d)) for d in dirpaths if d)}
    return [path for folder in sorted(folders) for path in atomic.remove_stale(folder)]
