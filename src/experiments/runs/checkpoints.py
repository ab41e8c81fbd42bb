"""Finding, loading and checking checkpoints, with one clear error naming the file when anything is wrong.

Every load goes through `load_checkpoint`, which uses `torch.load(weights_only=True)`: a checkpoint is
data, and unpickling arbitrary objects from a file someone handed you runs their code.
"""

from __future__ import annotations

import functools
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from experiments.errors import CheckpointError

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"
# The training settings among a checkpoint's hyper_parameters; the others name the network and its arguments.
TRAINING_KEYS = ("optimizer", "scheduler", "loss", "l1", "compile")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint as a dict of tensors and plain values, or CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise CheckpointError(
                f"checkpoint {path} holds pickled Python objects, not only tensors and plain values; "
                "refusing to load it (weights_only=True)"
            ) from None
        raise CheckpointError(f"checkpoint {path} is corrupt ({_short(exc)}); use another checkpoint") from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        # torch reports a truncated file as a RuntimeError from its zip reader, random bytes as a KeyError.
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(exc).__name__}: {_short(exc)}); use another checkpoint"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"checkpoint {path} is not a Lightning checkpoint (no state_dict)")
    return checkpoint


def _short(exc: BaseException, limit: int = 120) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_matches(checkpoint: dict[str, Any], model: nn.Module, path: str | Path) -> None:
    """CheckpointError naming the file and the first differences when the weights do not fit the model."""
    saved: dict[str, torch.Tensor] = checkpoint["state_dict"]
    expected = model.state_dict()
    problems = [f"missing {k}" for k in expected if k not in saved]
    problems += [f"unexpected {k}" for k in saved if k not in expected]
    problems += [
        f"{k} is {list(saved[k].shape)} in the checkpoint but {list(v.shape)} in the model"
        for k, v in expected.items()
        if k in saved and saved[k].shape != v.shape
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(
            f"checkpoint {path} does not match the model config: {'; '.join(problems[:3])}{more}. "
            "Use the model settings the checkpoint was trained with (its run's config.yaml)"
        )


def model_from_checkpoint(path: str | Path) -> nn.Module:
    """An MNISTClassifier with the checkpoint's network, loss and weights, in eval mode."""
    # Lightning import: only when a model is wanted.
    from experiments.models.classifier import MNISTClassifier
    from experiments.models.losses import LOSSES

    checkpoint = load_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters") or {}
    # Checkpoints from before the network was a choice hold an MLP's arguments and no `net`.
    if "net" not in hparams and "hidden_sizes" not in hparams:
        raise CheckpointError(f"checkpoint {path} has no net (or hidden_sizes) in its hyper_parameters")
    network = {k: v for k, v in hparams.items() if k not in TRAINING_KEYS}
    # The loss as describe_factory stored it; cross-entropy, the only loss before there was a choice, if none.
    loss = dict(hparams.get("loss") or {"name": "cross_entropy"})
    try:
        criterion = functools.partial(LOSSES[str(loss.pop("name")).rsplit(".", 1)[-1]], **loss)
        model = MNISTClassifier(loss=criterion, **network)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} describes a model this code cannot build: {_short(exc)}") from None
    check_matches(checkpoint, model, path)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run directory a checkpoint belongs to (<run>/checkpoints/x.ckpt), when it looks like one."""
    run_dir = checkpoint.parent.parent
    return run_dir if checkpoint.parent.name == CHECKPOINT_DIR and (run_dir / "config.yaml").is_file() else None


def find_checkpoint(spec: str | Path, which: str = "best") -> Path:
    """A checkpoint file from a file path, a run directory or its checkpoints/ folder.

    In a directory, `which="best"` picks the best checkpoint ModelCheckpoint kept (falling back to
    last.ckpt), `which="last"` picks last.ckpt.
    """
    path = Path(spec)
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"ckpt_path={spec}: no such file or directory")
    folder = path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).is_dir() else path
    files = sorted(folder.glob("*.ckpt"))
    best = [f for f in files if f.name != LAST]
    last = folder / LAST
    if which == "best" and best:
        # ModelCheckpoint keeps one best file (save_top_k=1); with several, the newest is the best so far.
        return max(best, key=lambda f: f.stat().st_mtime)
    if last.is_file():
        return last
    raise CheckpointError(f"ckpt_path={spec}: no checkpoint ({'*.ckpt' if which == 'best' else LAST}) in {folder}")


def verify_start(spec: str | None, model: nn.Module) -> str | None:
    """The checkpoint a training run starts from (`ckpt_path`), checked against the model before Lightning
    loads it: Lightning would report a mismatch as a long traceback."""
    if spec is None:
        return None
    if str(spec) in ("last", "best"):
        raise CheckpointError(
            f"ckpt_path={spec} picks a checkpoint of the run being resumed: add resume=<run dir>, "
            "or give ckpt_path=<file.ckpt>"
        )
    path = find_checkpoint(spec, which="last")
    check_matches(load_checkpoint(path), model, path)
    return str(path)
