"""Untrusted input: bad data files, bad checkpoints and bad images each end with one `error:` line naming
the input, a non-zero exit, no traceback and nothing half-written (no run directory, no output file)."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.data.synthetic import FILES, idx_bytes, write_dataset
from tests.conftest import FAST_RUN

TRAIN_IMAGES, TRAIN_LABELS = FILES[("train", "images")], FILES[("train", "labels")]
TEST_IMAGES = FILES[("test", "images")]


def assert_one_error(result, named: str, outputs: list[Path]) -> str:
    assert result.code != 0
    assert len(result.error_lines) == 1, result.err
    line = result.error_lines[0]
    assert named in line, line
    assert "Traceback" not in result.err and "Traceback" not in result.out
    for output in outputs:
        assert not output.exists() or (output.is_dir() and not any(output.iterdir())), f"{output} was written"
    return line


# --- data files: (id, damage(raw dir), file the line names, words it says) ---


def _rewrite(path: Path, change: Callable[[bytearray], None]) -> None:
    data = bytearray(path.read_bytes())
    change(data)
    path.write_bytes(bytes(data))


def _labels_with_12(raw: Path) -> None:
    _rewrite(raw / TRAIN_LABELS, lambda d: d.__setitem__(8 + 3, 12))


def _images_32x32(raw: Path) -> None:
    write_dataset(raw, gz=False, size=32)


def _set_byte(name: str, index: int, value: int) -> Callable[[Path], None]:
    return lambda raw: _rewrite(raw / name, lambda d: d.__setitem__(index, value))


def _labels_2d(raw: Path) -> None:
    labels = np.frombuffer((raw / TRAIN_LABELS).read_bytes()[8:], dtype=np.uint8)
    (raw / TRAIN_LABELS).write_bytes(idx_bytes(labels.reshape(-1, 1)))


def _one_label_short(raw: Path) -> None:
    labels = np.frombuffer((raw / TRAIN_LABELS).read_bytes()[8:], dtype=np.uint8)
    (raw / TRAIN_LABELS).write_bytes(idx_bytes(labels[:-1]))


def _cut(name: str, keep: int) -> Callable[[Path], None]:
    return lambda raw: (raw / name).write_bytes((raw / name).read_bytes()[:keep])


def _folder_instead(raw: Path) -> None:
    (raw / TEST_IMAGES).unlink()
    (raw / TEST_IMAGES).mkdir()


def _gzipped(damage: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    """Compress all four files (after `damage`), as they are published."""

    def apply(raw: Path) -> None:
        if damage:
            damage(raw)
        for name in FILES.values():
            (raw / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes(), compresslevel=1))
            (raw / name).unlink()

    return apply


def _compress_in_place(name: str) -> Callable[[Path], None]:
    return lambda raw: (raw / name).write_bytes(gzip.compress((raw / name).read_bytes()))


def _truncated_gz(raw: Path) -> None:
    _gzipped()(raw)
    archive = raw / f"{TRAIN_IMAGES}.gz"
    archive.write_bytes(archive.read_bytes()[:300])


def _unreadable(raw: Path) -> None:
    (raw / TRAIN_LABELS).chmod(0)


BAD_DATA = [
    ("label-12", _labels_with_12, TRAIN_LABELS, "holds label 12 at index 3; MNIST labels must be 0-9"),
    ("32x32-images", _images_32x32, TRAIN_IMAGES, "holds 32x32 images but the model takes 784-pixel images"),
    ("bad-magic", _set_byte(TRAIN_IMAGES, 0, 0x42), TRAIN_IMAGES, "is not an IDX file"),
    ("gzip-named-plain", _compress_in_place(TRAIN_LABELS), TRAIN_LABELS, f"gzip-compressed: name it {TRAIN_LABELS}.gz"),
    ("float-dtype", _set_byte(TRAIN_IMAGES, 2, 0x0D), TRAIN_IMAGES, "has IDX data type 0x0d"),
    ("2d-labels", _labels_2d, TRAIN_LABELS, "has 2 dimensions, but a labels file has 1"),
    ("count-mismatch", _one_label_short, TRAIN_LABELS, "holds 600 images but"),
    ("truncated", _cut(TEST_IMAGES, 1000), TEST_IMAGES, "is truncated or corrupt"),
    ("empty", _cut(TRAIN_LABELS, 0), TRAIN_LABELS, "is empty (0 bytes)"),
    ("folder", _folder_instead, TEST_IMAGES, "is a folder, not a file"),
    ("truncated-gz", _truncated_gz, f"{TRAIN_IMAGES}.gz", "is truncated or corrupt (EOFError"),
    ("short-gz", _gzipped(_cut(TRAIN_IMAGES, 5000)), f"{TRAIN_IMAGES}.gz", "decompresses to 4984 bytes of data"),
    ("unreadable", _unreadable, TRAIN_LABELS, "is not readable (permission denied)"),
]


@pytest.mark.parametrize(("damage", "named", "says"), [c[1:] for c in BAD_DATA], ids=[c[0] for c in BAD_DATA])
def test_bad_data_files(cli, tmp_path: Path, damage: Callable[[Path], None], named: str, says: str) -> None:
    if damage is _unreadable and os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    raw = write_dataset(tmp_path / "data" / "MNIST" / "raw", gz=False)
    damage(raw)
    result = cli(f"paths.data_dir={tmp_path / 'data'}", *FAST_RUN)
    line = assert_one_error(result, named, [tmp_path / "outputs" / "runs"])
    assert says in line
    assert not [p.name for p in raw.iterdir() if p.name.endswith(".tmp")], "no temporary file may remain"


# --- checkpoints: for train's ckpt_path=, evaluate and predict ---


def _model(**hparams: object) -> torch.nn.Module:
    from experiments.models.classifier import MNISTClassifier

    return MNISTClassifier(**hparams)


class Payload:
    """A pickled object that runs a command when it is unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _full(**hparams: object) -> dict:
    """A checkpoint of the default 784-128-128-10 MLP (what train.py builds), with these hyperparameters."""
    model = _model()
    return {"state_dict": model.state_dict(), "hyper_parameters": {**dict(model.hparams), **hparams}}


def _nan_weights(tmp: Path) -> dict:
    checkpoint = _full()
    checkpoint["state_dict"]["net.1.weight"][0, 0] = float("nan")
    return checkpoint


BAD_CHECKPOINTS = {
    "state-dict-only": (lambda tmp: {"state_dict": _model().state_dict()}, "holds weights only"),
    "bare-tensors": (lambda tmp: _model().state_dict(), "is a bare state_dict"),
    "nan-weights": (_nan_weights, "holds 1 NaN/inf values in net.1.weight"),
    "float-width": (lambda tmp: _full(hidden_sizes=[1e8]), "hyper_parameters.hidden_sizes=[100000000.0] must be"),
    "huge-widths": (lambda tmp: _full(hidden_sizes=[10**6, 10**6]), "must be a list of at most 64 integer widths"),
    "too-many-weights": (lambda tmp: _full(hidden_sizes=[65536, 65536]), "more than the 100,000,000"),
    "unknown-net": (lambda tmp: _full(net="transformer"), "hyper_parameters.net='transformer' is not a network"),
    "unknown-setting": (lambda tmp: _full(depth=3), "hyper_parameters.depth is not a setting of net=mlp"),
    "pickle": (lambda tmp: {"state_dict": {}, "payload": Payload(tmp / "pwned")}, "refusing to load it"),
}
# train's ckpt_path= builds the model from its own config, never from a checkpoint's hyperparameters: the
# cases about those are for evaluate and predict only. A state_dict alone cannot continue training.
TRAIN_CASES = {"state-dict-only": "ckpt_path= continues training from a full Lightning checkpoint"}
TRAIN_CASES |= {kind: BAD_CHECKPOINTS[kind][1] for kind in ("bare-tensors", "nan-weights", "pickle")}
CASES = [(kind, use) for kind in BAD_CHECKPOINTS for use in ("evaluate", "predict")]
CASES += [(kind, "train") for kind in TRAIN_CASES]


@pytest.fixture(scope="module")
def digit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("images") / "digit.png"
    Image.new("L", (28, 28)).save(path)
    return path


@pytest.mark.parametrize(("kind", "use"), CASES, ids=[f"{k}:{u}" for k, u in CASES])
def test_bad_checkpoints(cli, command, mnist_dir: Path, tmp_path: Path, digit: Path, kind: str, use: str) -> None:
    make, says = BAD_CHECKPOINTS[kind]
    path = tmp_path / f"{kind}.ckpt"
    torch.save(make(tmp_path), path)
    output = tmp_path / "out.file"
    if use == "train":
        result = cli(f"paths.data_dir={mnist_dir}", *FAST_RUN, f"ckpt_path={path}")
        says = TRAIN_CASES[kind]
    elif use == "evaluate":
        result = command("evaluate", f"ckpt_path={path}", f"data_dir={mnist_dir}", f"output={output}")
    else:
        result = command("predict", f"ckpt_path={path}", f"inputs={digit}", f"csv={output}")
    line = assert_one_error(result, str(path), [output, tmp_path / "outputs" / "runs"])
    assert says in line
    assert not (tmp_path / "pwned").exists(), "unpickling ran the payload"


# --- images given to predict ---


def _png(width: int, height: int) -> bytes:
    """A valid black 1-bit PNG, written by hand so that a 20000x20000 one costs a few KB and no memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed pixels
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


BAD_IMAGES = {
    "20000x20000-png": (lambda: _png(20000, 20000), "more than 64,000,000 pixels"),
    "8001x8001-png": (lambda: _png(8001, 8001), "is 8001x8001 (64,016,001 pixels); predict reads images of up to"),
    "truncated-png": (lambda: _png(64, 64)[:45], "not an image Pillow can read"),
    "text-file": (lambda: b"not an image\n", "not an image Pillow can read"),
}


@pytest.mark.parametrize("kind", list(BAD_IMAGES))
def test_bad_images(command, tmp_path: Path, kind: str) -> None:
    make, says = BAD_IMAGES[kind]
    image = tmp_path / f"{kind}.png"
    image.write_bytes(make())
    checkpoint = tmp_path / "model.ckpt"
    torch.save(_full(), checkpoint)
    output = tmp_path / "predictions.csv"
    result = command("predict", f"ckpt_path={checkpoint}", f"inputs={image}", f"csv={output}")
    line = assert_one_error(result, str(image), [output])
    assert says in line
    assert "DecompressionBomb" not in result.err


def test_a_valid_image_within_the_limit_is_predicted(command, tmp_path: Path) -> None:
    """The control for the cases above: the same checkpoint and a hand-written PNG work."""
    image = tmp_path / "blank.png"
    image.write_bytes(_png(280, 280))
    checkpoint = tmp_path / "model.ckpt"
    torch.save(_full(), checkpoint)
    result = command("predict", f"ckpt_path={checkpoint}", f"inputs={image}", f"csv={tmp_path / 'p.csv'}")
    assert result.code == 0, result.err
    assert (tmp_path / "p.csv").read_text().startswith("path,prediction,probability")
