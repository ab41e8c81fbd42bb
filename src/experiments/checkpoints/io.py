"""Checkpoints written atomically, through Lightning's CheckpointIO plugin API, and the leftovers of a killed write.

Lightning's own TorchCheckpointIO saves through fsspec's transaction, which writes the file in `$TMPDIR`
and then copies it over the target: across filesystems that copy is not atomic, so a kill during it
leaves a truncated `last.ckpt` (the run can never be resumed) and the whole temporary file in /tmp.
`AtomicCheckpointIO` writes with `experiments.atomic.atomic_write` (temporary file next to the target,
fsync, rename) instead. train.py hands it to the Trainer through `plugins=` (`trainer_plugins`), which
Lightning gives to whichever strategy runs (DDP included: the strategy saves on rank 0 only). It is not
in conf/trainer/default.yaml because a `plugins:` list there would make `+trainer.plugins=[...]` fail
(Hydra refuses to add a key that exists) and `trainer.plugins=[...]` drop it silently.

It also keeps the run's record of what it wrote: the sha256 of each checkpoint, computed from the bytes
as they are written and noted in the run directory (RunDir.record_checksum) around the rename, so that
every reader can tell the file the run wrote from one damaged since (experiments.checkpoints.load).
And it loads a checkpoint of a run directory that was moved as if it had never moved: the paths that
ModelCheckpoint keeps in it (its folder, the best checkpoint) name the old folder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO, Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import AsyncCheckpointIO, CheckpointIO, TorchCheckpointIO
from omegaconf import DictConfig

from experiments import atomic
from experiments.config.build import build
from experiments.rundir import CHECKPOINTS, RunDir


def run_of(path: Path) -> RunDir | None:
    """The run directory whose checkpoints/ folder holds `path` (where its checksums are kept), if any."""
    return RunDir(path.parent.parent) if path.parent.name == CHECKPOINTS else None


class _HashingFile:
    """The file torch.save writes to, hashing the bytes on their way (torch writes its zip archive in
    order, through write() only), and keeping the OSError a write raised: torch reports it as a
    RuntimeError of its zip writer that does not carry it."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle, self.digest, self.error = handle, hashlib.sha256(), None

    def write(self, data: Any) -> int:
        try:
            count = self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise
        self.digest.update(memoryview(data)[:count])
        return count

    def flush(self) -> None:
        self.handle.flush()


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local saves are atomic: a kill leaves the old file or the new one, never a
    part of one (and at most a `.<name>.<random>.tmp` next to it, which a resume deletes), with the
    sha256 of each file recorded in its run directory. Remote paths (s3://, gs://, ...) stay Lightning's."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)  # refuses storage_options, as documented
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        run = run_of(target)
        with atomic.atomic_write(target) as handle:
            hashing = _HashingFile(handle)
            try:
                torch.save(checkpoint, hashing)
            except RuntimeError as exc:
                if hashing.error is not None:  # a full disk, seen by torch's zip writer
                    raise hashing.error from exc
                raise
            if run is not None:  # both values recorded while the old file may still be the one on disk
                run.record_checksum(target.name, hashing.digest.hexdigest(), replacing=True)
        if run is not None:
            run.record_checksum(target.name, hashing.digest.hexdigest(), replacing=False)

    def remove_checkpoint(self, path: Any) -> None:
        super().remove_checkpoint(path)
        run = run_of(Path(path))
        if run is not None and run.checksums_file.is_file():
            run.forget_checksum(Path(path).name)

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> Any:
        from experiments.checkpoints.load import check_integrity

        local = isinstance(get_filesystem(path), LocalFileSystem)
        if local:
            check_integrity(Path(path))
        checkpoint = super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        return remap_moved_run(checkpoint, Path(path)) if local else checkpoint


def remap_moved_run(checkpoint: dict[str, Any], path: Path) -> dict[str, Any]:
    """A checkpoint of a run directory that was moved: ModelCheckpoint's state names the folder it was
    written in (`dirpath`, `best_model_path`, ...). Where that folder was the checkpoint's own
    checkpoints/ folder under its old name, every such path is moved along, so the resumed run tests its
    best checkpoint and goes on keeping one best file, as if the run had never moved."""
    from experiments.checkpoints.resume import replace_prefix

    here = str(path.parent.resolve())
    for name, state in checkpoint.get("callbacks", {}).items():
        old = state.get("dirpath") if isinstance(state, dict) and "ModelCheckpoint" in str(name) else None
        if isinstance(old, str) and old != here and Path(old).name == path.parent.name == CHECKPOINTS:
            checkpoint["callbacks"][name] = replace_prefix(state, old, here)
    return checkpoint


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
