"""Finding the four IDX files of an MNIST-format dataset and reading them with torchvision.

torchvision's dataset classes want uncompressed files under `<root>/<ClassName>/raw/`. Real-world copies
come gzip-compressed, flat (Debian's dataset packages) and in read-only places (shared mounts), so we
look in a few places and extract `.gz` files ourselves, into a cache when their own folder is read-only.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torchvision.datasets import MNIST, FashionMNIST

from experiments.errors import DataError

DATASETS: dict[str, type[MNIST]] = {"mnist": MNIST, "fashion_mnist": FashionMNIST}


def dataset_class(name: str) -> type[MNIST]:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"data.dataset={name!r} is not supported; choose one of {sorted(DATASETS)}") from None


def raw_file_names(cls: type[MNIST]) -> list[str]:
    """Uncompressed file names torchvision expects, e.g. 'train-images-idx3-ubyte'."""
    return [os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]


def _candidate_dirs(cls: type[MNIST], data_dir: Path, search_dirs: list[Path]) -> list[Path]:
    dirs = []
    for base in [data_dir, *search_dirs]:
        dirs += [base / cls.__name__ / "raw", base]
    return dirs


def _has_all(directory: Path, names: list[str]) -> bool:
    return all((directory / n).is_file() or (directory / f"{n}.gz").is_file() for n in names)


def find_raw_dir(cls: type[MNIST], data_dir: Path, search_dirs: list[Path]) -> Path | None:
    """The first directory holding all four files (plain or .gz), or None."""
    names = raw_file_names(cls)
    return next((d for d in _candidate_dirs(cls, data_dir, search_dirs) if _has_all(d, names)), None)


def _writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK)


def _extract(gz_path: Path, target: Path) -> None:
    """Decompress atomically: a crash or a truncated archive never leaves a half-written file behind."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with gzip.open(gz_path, "rb") as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
        os.replace(tmp, target)
    except (OSError, EOFError) as exc:
        os.unlink(tmp)
        raise DataError(
            f"cannot decompress {gz_path}: {exc}. The file is truncated or corrupt; replace it with a fresh copy"
        ) from None


def prepare_root(cls: type[MNIST], data_dir: Path, search_dirs: list[Path], cache_dir: Path) -> Path:
    """Return a root that torchvision's `cls(root)` can read, extracting .gz files when needed.

    Raises DataError naming the missing files and where they were looked for when they are nowhere and
    torchvision's download fails (e.g. offline).
    """
    names = raw_file_names(cls)
    found = find_raw_dir(cls, data_dir, search_dirs)
    if found is None:
        return _download(cls, data_dir, names, search_dirs)
    standard = found.name == "raw" and found.parent.name == cls.__name__
    if standard and all((found / n).is_file() for n in names):
        return found.parent.parent
    # Build a standard layout next to the files if we may write there, else in the cache.
    if standard and _writable(found):
        root = found.parent.parent
    else:  # one cache folder per source folder, so two different copies never mix
        root = cache_dir / "datasets" / hashlib.sha1(str(found.resolve()).encode()).hexdigest()[:12]
    raw = root / cls.__name__ / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = raw / name
        if target.is_file():
            continue
        if (found / name).is_file():
            shutil.copyfile(found / name, target)
        else:
            _extract(found / f"{name}.gz", target)
    return root


def _download(cls: type[MNIST], data_dir: Path, names: list[str], search_dirs: list[Path]) -> Path:
    raw = data_dir / cls.__name__ / "raw"
    created = [d for d in (raw, raw.parent, data_dir) if not d.exists()]
    try:
        cls(str(data_dir), train=True, download=True)
        cls(str(data_dir), train=False, download=True)
        return data_dir
    except Exception as exc:  # torchvision raises RuntimeError/URLError/OSError depending on what failed
        for directory in created:  # deepest first; leave nothing behind that we made
            with contextlib.suppress(OSError):
                shutil.rmtree(directory) if directory == raw else directory.rmdir()
        looked = ", ".join(str(d) for d in _candidate_dirs(cls, data_dir, search_dirs))
        raise DataError(
            f"{cls.__name__} files not found and download failed ({type(exc).__name__}). "
            f"Put {', '.join(n + '[.gz]' for n in names)} into {data_dir / cls.__name__ / 'raw'} "
            f"or set paths.data_dir to a folder that has them (looked in: {looked})"
        ) from None


def load_split(cls: type[MNIST], root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 28, 28) uint8 and labels (N,) int64 of one official split, parsed by torchvision."""
    split = "training" if train else "test"
    try:
        dataset = cls(str(root), train=train, download=False)
    except Exception as exc:  # a malformed IDX file surfaces as ValueError/RuntimeError/AssertionError
        files = [n for n in raw_file_names(cls) if n.startswith("train" if train else "t10k")]
        raise DataError(
            f"cannot parse the {split} files {', '.join(files)} in {root / cls.__name__ / 'raw'} "
            f"({type(exc).__name__}: {exc}). They look truncated or corrupt: delete them (and stale .gz copies) "
            f"and provide fresh ones"
        ) from None
    images, labels = dataset.data, dataset.targets
    if images.ndim != 3 or len(images) != len(labels):
        raise DataError(
            f"{cls.__name__} {split} files in {root / cls.__name__ / 'raw'} disagree: {len(images)} images "
            f"of shape {tuple(images.shape[1:])} but {len(labels)} labels"
        )
    return images, labels.long()
