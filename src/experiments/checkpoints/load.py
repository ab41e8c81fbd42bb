"""Finding, loading and checking checkpoints, with one clear error naming the file when anything is wrong.

Every load goes through `load_checkpoint`, which uses `torch.load(weights_only=True)`: a checkpoint is
data, and unpickling arbitrary objects from a file someone handed you runs their code. What a checkpoint
asks to be built is data too: `model_from_checkpoint` checks its hyperparameters (types, known names,
layer widths, total size) before building anything, and no network is loaded with NaN/inf weights.

Before any of that, `check_integrity` makes sure the bytes are the ones written: the sha256 the run
recorded when it wrote the file (experiments.checkpoints.io), or, for a checkpoint without one, the CRC
of every member of its zip archive (torch.save's format). Damage is called corruption, never a
divergence or a mismatch, whatever the bytes would have decoded to.
"""

from __future__ import annotations

import functools
import inspect
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from experiments.config.schema import MAX_WIDTH
from experiments.errors import CheckpointError
from experiments.rundir import CHECKPOINTS, LAST_FILE, checkpoint_problem

# The training settings among a checkpoint's hyper_parameters; the others name the network and its arguments.
TRAINING_KEYS = ("optimizer", "scheduler", "loss", "l1", "compile")
# The most a checkpoint may ask evaluate or predict to build: layer widths within the config's own limit
# (MAX_WIDTH), at most MAX_LAYERS hidden layers and MAX_PARAMETERS weights in all (400 MB of float32).
MAX_LAYERS = 64
MAX_PARAMETERS = 100_000_000
# Keys every checkpoint Lightning writes for training has; a plain state_dict or a save_weights_only file lacks them.
TRAINING_STATE = ("pytorch-lightning_version", "optimizer_states")
# The state_dict prefix of the network's weights. The metrics' states are not checked for NaN/inf:
# val_acc_best starts at -inf until the first validation.
NETWORK_PREFIX = "net."


def check_integrity(path: Path) -> None:
    """CheckpointError saying "corrupt" unless the file holds the bytes its run wrote (the recorded sha256)
    or, with no checksum recorded for it, a zip archive whose every member passes its CRC check."""
    problem = checkpoint_problem(path)
    if problem:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt: {_short(problem, 200)}; it was damaged after it was "
            "written. Use another checkpoint (an earlier run's, or retrain)"
        )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint as a dict of tensors and plain values, or CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    check_integrity(path)
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
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(checkpoint).__name__}, not a Lightning checkpoint")
    state_dict = checkpoint.get("state_dict")
    if state_dict is None and checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointError(
            f"checkpoint {path} is a bare state_dict ({len(checkpoint)} tensors saved with torch.save), not a "
            "checkpoint written by this project's training: use a .ckpt from a run's checkpoints/ folder"
        )
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"checkpoint {path} is not a Lightning checkpoint (no state_dict of tensors)")
    return checkpoint


def check_finite(checkpoint: dict[str, Any], path: str | Path) -> None:
    """CheckpointError naming the file and the tensor when a network weight is NaN or infinite: such a model
    predicts one class for everything, and training from it goes nowhere."""
    for key, tensor in checkpoint["state_dict"].items():
        if key.startswith(NETWORK_PREFIX) and tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise CheckpointError(
                    f"checkpoint {path} holds {bad} NaN/inf values in {key}: the run diverged before it was "
                    "saved; use an earlier checkpoint of it, or retrain"
                )


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
    hparams = checkpoint.get("hyper_parameters")
    if hparams is None:
        raise CheckpointError(
            f"checkpoint {path} holds weights only (a state_dict, no hyper_parameters saying what network they "
            "belong to): use a .ckpt that this project's training wrote, from a run's checkpoints/ folder"
        )
    if not isinstance(hparams, dict):
        raise CheckpointError(f"checkpoint {path}: hyper_parameters is a {type(hparams).__name__}, not a dict")
    # Checkpoints from before the network was a choice hold an MLP's arguments and no `net`.
    if "net" not in hparams and "hidden_sizes" not in hparams:
        raise CheckpointError(f"checkpoint {path} has no net (or hidden_sizes) in its hyper_parameters")
    network = {k: v for k, v in hparams.items() if k not in TRAINING_KEYS}
    check_network(network, path)
    check_finite(checkpoint, path)
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


def _integers(value: Any, low: int, high: int, count: tuple[int, int]) -> bool:
    """Whether `value` is a list of `count[0]`..`count[1]` ints (not floats, not bools) in [low, high]."""
    return (
        isinstance(value, (list, tuple))
        and count[0] <= len(value) <= count[1]
        and all(isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in value)
    )


def _network_rules() -> dict[str, tuple[Any, str]]:
    """Each network argument a checkpoint may hold: a check of its value, and what the check wants."""
    from experiments.models.mlp import ACTIVATIONS

    widths = f"[1, {MAX_WIDTH}]"
    return {
        "num_classes": (lambda v: _integers([v], 2, MAX_WIDTH, (1, 1)), f"an integer in [2, {MAX_WIDTH}]"),
        "input_size": (lambda v: _integers([v], 1, MAX_WIDTH, (1, 1)), f"an integer in {widths}"),
        "hidden_sizes": (
            lambda v: _integers(v, 1, MAX_WIDTH, (0, MAX_LAYERS)),
            f"a list of at most {MAX_LAYERS} integer widths in {widths}",
        ),
        "channels": (lambda v: _integers(v, 1, MAX_WIDTH, (2, 2)), f"two integer channel counts in {widths}"),
        "activation": (lambda v: v in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}"),
        "dropout": (
            lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1,
            "a number in [0, 1)",
        ),
        "batch_norm": (lambda v: isinstance(v, bool), "true or false"),
    }


def check_network(network: dict[str, Any], path: str | Path) -> None:
    """CheckpointError naming the file and the setting unless `network` (net and its arguments, from a
    checkpoint's hyper_parameters) is a network this code builds within the limits above. Checked before
    anything is built: a checkpoint is someone else's file, and hidden_sizes=[100000000] would ask for
    hundreds of GB."""
    from experiments.models.classifier import NETWORKS

    name = network.get("net", "mlp")
    if not isinstance(name, str) or name not in NETWORKS:
        raise CheckpointError(
            f"checkpoint {path}: hyper_parameters.net={name!r} is not a network of this project; "
            f"it knows {', '.join(NETWORKS)}"
        )
    accepted = set(inspect.signature(NETWORKS[name]).parameters)
    rules = _network_rules()
    for key, value in network.items():
        if key == "net":
            continue
        if key not in accepted or key not in rules:
            raise CheckpointError(f"checkpoint {path}: hyper_parameters.{key} is not a setting of net={name}")
        check, wanted = rules[key]
        if not check(value):
            raise CheckpointError(f"checkpoint {path}: hyper_parameters.{key}={value!r} must be {wanted}")
    arguments = {k: v for k, v in network.items() if k != "net"}
    with torch.device("meta"):  # shapes only: counts the weights without allocating them
        size = sum(p.numel() for p in NETWORKS[name](**arguments).parameters())
    if size > MAX_PARAMETERS:
        raise CheckpointError(
            f"checkpoint {path}: its hyper_parameters describe a network (net={name}) of {size:,} weights, "
            f"more than the {MAX_PARAMETERS:,} this project builds from a checkpoint"
        )


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
    folder = path / CHECKPOINTS if (path / CHECKPOINTS).is_dir() else path
    files = sorted(folder.glob("*.ckpt"))
    best = [f for f in files if f.name != LAST_FILE]
    last = folder / LAST_FILE
    if which == "best" and best:
        # ModelCheckpoint keeps one best file (save_top_k=1); with several, the newest is the best so far.
        return max(best, key=lambda f: f.stat().st_mtime)
    if last.is_file():
        return last
    raise CheckpointError(f"ckpt_path={spec}: no checkpoint ({'*.ckpt' if which == 'best' else LAST_FILE}) in {folder}")


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
    checkpoint = load_checkpoint(path)
    check_finite(checkpoint, path)
    check_matches(checkpoint, model, path)
    # Lightning's fit(ckpt_path=) restores the optimizer and loops too, and reports a weights-only file as
    # a KeyError traceback. Starting a new run from such weights is not offered: the model's settings
    # would have to be guessed, and the run would claim a history it does not have.
    if not all(key in checkpoint for key in TRAINING_STATE):
        raise CheckpointError(
            f"checkpoint {path} holds weights only (no optimizer or loop state; a plain state_dict or a "
            "save_weights_only file), but ckpt_path= continues training from a full Lightning checkpoint: "
            "use a .ckpt that this project's training wrote (a run's checkpoints/last.ckpt)"
        )
    return str(path)
