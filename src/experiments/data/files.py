"""Finding, checking and reading the four IDX files of an MNIST-format dataset.

Real-world copies come gzip-compressed, flat (Debian's dataset packages) and in read-only places (shared
mounts), so we look in a few places and extract `.gz` files ourselves into torchvision's
`<root>/<ClassName>/raw/` layout (what its dataset classes, used by the `dataloader` path, want): next to
the files, or into a cache when their own folder is read-only.

Every file is checked once, when it is loaded (`prepare_root`): that it is a readable, non-empty file, its
IDX header, its size against that header, image against label counts and the label range, each defect with
a one-line message of its own naming the file and the fix. Extracted and copied files are written with
`atomic_write`: a kill leaves no half-written file, only a temporary one that the next start removes.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torchvision.datasets import MNIST, FashionMNIST

from experiments.atomic import atomic_write, remove_stale
from experiments.errors import DataError

DATASETS: dict[str, type[MNIST]] = {"mnist": MNIST, "fashion_mnist": FashionMNIST}

# The IDX format (yann.lecun.com/exdb/mnist, "FILE FORMATS"): two zero bytes, a data type code (0x08:
# unsigned byte), the number of dimensions, each dimension as a big-endian uint32, then the data. Parsed
# here rather than by torchvision so that each defect gets a message of its own naming the file.
UNSIGNED_BYTE = 0x08
# MNIST's training images are 47 MB; a header announcing more than this is corrupt, and no .gz is inflated
# beyond it (a gzip bomb stops here, not when the disk is full).
MAX_DATA_BYTES = 1 << 30


def dataset_class(name: str) -> type[MNIST]:
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"data.dataset={name!r} is not supported; choose one of {sorted(DATASETS)}") from None


def raw_file_names(cls: type[MNIST]) -> list[str]:
    """Uncompressed file names torchvision expects, e.g. 'train-images-idx3-ubyte'."""
    return [os.path.splitext(os.path.basename(url))[0] for url, _ in cls.resources]


def split_file_names(cls: type[MNIST], train: bool) -> tuple[str, str]:
    """The images and the labels file of one official split."""
    prefix = "train" if train else "t10k"
    names = [n for n in raw_file_names(cls) if n.startswith(prefix)]
    return next(n for n in names if "idx3" in n), next(n for n in names if "idx1" in n)


def _candidate_dirs(cls: type[MNIST], data_dir: Path, search_dirs: list[Path]) -> list[Path]:
    dirs = []
    for base in [data_dir, *search_dirs]:
        dirs += [base / cls.__name__ / "raw", base]
    return dirs


def _has_all(directory: Path, names: list[str]) -> bool:
    # lexists, not is_file: a folder or an unreadable file where a data file should be is reported, not skipped.
    return all(os.path.lexists(directory / n) or os.path.lexists(directory / f"{n}.gz") for n in names)


def find_raw_dir(cls: type[MNIST], data_dir: Path, search_dirs: list[Path]) -> Path | None:
    """The first directory holding all four files (plain or .gz), or None."""
    names = raw_file_names(cls)
    return next((d for d in _candidate_dirs(cls, data_dir, search_dirs) if _has_all(d, names)), None)


def _writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK)


def _problem(path: Path) -> str | None:
    """Why `path` cannot be read as a data file, with the fix; None when it can."""
    if not os.path.lexists(path):
        return "does not exist"
    if path.is_dir():
        return "is a folder, not a file: remove or rename it and put the file there"
    if not path.is_file():
        return "is not a regular file (a broken link?): replace it with the file itself"
    if not os.access(path, os.R_OK):
        return "is not readable (permission denied): make it readable (chmod a+r) or set paths.data_dir to a copy"
    if path.stat().st_size == 0:
        return "is empty (0 bytes): delete it and provide a fresh copy"
    return None


def _source(directory: Path, name: str) -> Path:
    """The file `name` is read from: the IDX file when it is usable, else its .gz. An unusable extracted copy
    (e.g. someone else's 0600 file) must not hide a readable archive next to it."""
    problems = {path: _problem(path) for path in (directory / name, directory / f"{name}.gz")}
    for path, problem in problems.items():
        if problem is None:
            return path
    raise DataError("; ".join(f"{path} {why}" for path, why in problems.items() if why != "does not exist"))


def _describe(dims: tuple[int, ...]) -> str:
    return f"{dims[0]} images of {dims[1]}x{dims[2]}" if len(dims) == 3 else f"{dims[0]} labels"


def _parse_header(head: bytes, name: str, shown: str) -> tuple[int, ...]:
    """The dimensions an IDX header announces, or DataError saying what is wrong with it."""
    ndim = 3 if "idx3" in name else 1
    if head[:2] == b"\x1f\x8b":
        raise DataError(f"{shown} is gzip-compressed: name it {name}.gz")
    if len(head) >= 4 and head[:2] != b"\0\0":
        raise DataError(
            f"{shown} is not an IDX file (it starts with bytes {head[:4].hex(' ')}, not 00 00 08 {ndim:02x}): "
            f"provide the {name} file of an MNIST-format dataset"
        )
    if len(head) >= 4 and head[2] != UNSIGNED_BYTE:
        raise DataError(
            f"{shown} has IDX data type 0x{head[2]:02x}, but MNIST-format files hold unsigned bytes (0x08): "
            f"provide the {name} file of an MNIST-format dataset"
        )
    if len(head) >= 4 and head[3] != ndim:
        kind = "an images file has 3 (count, rows, columns)" if ndim == 3 else "a labels file has 1 (count)"
        raise DataError(
            f"{shown} has {head[3]} dimensions, but {kind}: provide the {name} file of an MNIST-format dataset"
        )
    if len(head) < 4 + 4 * ndim:
        raise DataError(
            f"{shown} is truncated or corrupt: {len(head)} bytes, shorter than its IDX header; "
            "replace it with a fresh copy"
        )
    dims = struct.unpack(f">{ndim}I", head[4 : 4 + 4 * ndim])
    if math.prod(dims) > MAX_DATA_BYTES:
        raise DataError(
            f"{shown} announces {_describe(dims)}, more than the {MAX_DATA_BYTES} bytes an MNIST-format file "
            "may hold: its header is corrupt; replace it with a fresh copy"
        )
    return dims


def _header(path: Path, name: str, shown: str) -> tuple[int, ...]:
    """The dimensions of an IDX file on disk, checked against its size."""
    with path.open("rb") as handle:
        head = handle.read(16)  # the longest header: 4 bytes and 3 dimensions
    dims = _parse_header(head, name, shown)
    held, announced = path.stat().st_size - 4 - 4 * len(dims), math.prod(dims)
    if held != announced:
        raise DataError(
            f"{shown} is truncated or corrupt: its header announces {_describe(dims)} ({announced} bytes of data) "
            f"but it holds {held}; replace it with a fresh copy"
        )
    return dims


def _read(handle: IO[bytes], size: int, archive: Path) -> bytes:
    try:
        return handle.read(size)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError, a cut-off stream an EOFError
        raise DataError(
            f"{archive} is truncated or corrupt ({type(exc).__name__}: {exc}); replace it with a fresh copy"
        ) from None


def _idx_chunks(archive: Path, name: str) -> Iterator[bytes]:
    """The decompressed bytes of a .gz IDX file, its header first, checked on the way: DataError when the
    archive is damaged or holds more or less data than its header announces."""
    with gzip.open(archive, "rb") as src:
        head = _read(src, 4, archive)
        if len(head) == 4:
            head += _read(src, 4 * head[3], archive)
        dims = _parse_header(head, name, str(archive))
        yield head
        announced, held = math.prod(dims), 0
        while chunk := _read(src, 1 << 20, archive):
            held += len(chunk)
            if held > announced:
                break
            yield chunk
        if held != announced:
            amount = f"more than {announced}" if held > announced else str(held)
            raise DataError(
                f"{archive} decompresses to {amount} bytes of data, but the IDX header inside announces "
                f"{_describe(dims)} ({announced} bytes): it is not a complete {name}; replace it with a fresh copy"
            )


def _extract(archive: Path, target: Path, name: str) -> None:
    """Decompress through atomic_write, checking the IDX header on the way: a kill, a truncated archive or
    one holding more or less data than its header announces leaves no file behind."""
    with _writing(target) as dst:
        for chunk in _idx_chunks(archive, name):
            dst.write(chunk)


def found_problem(cls: type[MNIST], found: Path) -> str | None:
    """What train would refuse in the files `find_raw_dir` found (unreadable, truncated, not IDX, a .gz that
    does not decompress to what its header announces), or None; reads only (experiments-doctor)."""
    try:
        for name in raw_file_names(cls):
            source = _source(found, name)
            if source.suffix == ".gz":
                for _ in _idx_chunks(source, name):
                    pass
            else:
                _header(source, name, str(source))
    except DataError as exc:
        return str(exc)
    return None


def _copy(source: Path, target: Path) -> None:
    with source.open("rb") as src, _writing(target) as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)


@contextlib.contextmanager
def _writing(target: Path) -> Iterator[IO[bytes]]:
    try:
        with atomic_write(target) as handle:
            yield handle
    except OSError as exc:  # reading errors are DataErrors already: this is the target's folder
        raise DataError(
            f"cannot write {target} ({exc.strerror or exc}); set paths.cache_dir to a folder you can write"
        ) from None


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[None]:
    """An advisory lock on `directory` while files are placed in it: parallel sweep jobs share one cache,
    and removing stale temporary files must not delete the one another job is still writing. flock on the
    folder itself leaves no lock file behind, and the kernel releases it when its holder is killed."""
    try:
        import fcntl
    except ImportError:  # Windows has no flock; jobs that start together may then both extract
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some network filesystems refuse flock: go on unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def prepare_root(cls: type[MNIST], data_dir: Path, search_dirs: list[Path], cache_dir: Path) -> Path:
    """Return a root that torchvision's `cls(root)` can read, extracting .gz files when needed, with all four
    files checked (`check_files`).

    Raises DataError naming the missing files and where they were looked for when they are nowhere and
    torchvision's download fails (e.g. offline), or naming a file and what is wrong with it.
    """
    names = raw_file_names(cls)
    found = find_raw_dir(cls, data_dir, search_dirs)
    if found is None:
        root = _download(cls, data_dir, names, search_dirs)
        check_files(cls, root / cls.__name__ / "raw")
        return root
    sources = {name: _source(found, name) for name in names}
    standard = found.name == "raw" and found.parent.name == cls.__name__
    if standard and all(sources[n] == found / n for n in names):
        check_files(cls, found)
        return found.parent.parent
    # Build a standard layout next to the files if we may write there and no unusable file is in the way,
    # else in the cache.
    blocked = any(os.path.lexists(found / n) for n in names if sources[n] != found / n)
    if standard and _writable(found) and not blocked:
        root = found.parent.parent
    else:  # one cache folder per source folder, so two different copies never mix
        root = cache_dir / "datasets" / hashlib.sha1(str(found.resolve()).encode()).hexdigest()[:12]
    raw = root / cls.__name__ / "raw"
    try:
        raw.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create {raw} for the files of {found} ({exc.strerror or exc}); "
            "set paths.cache_dir to a folder you can write"
        ) from None
    with _exclusive(raw):
        remove_stale(raw)  # what a kill during an earlier extraction left
        for name in names:
            source, target = sources[name], raw / name
            # An earlier copy is reused unless its source has been replaced since.
            if source == target or (_problem(target) is None and target.stat().st_mtime >= source.stat().st_mtime):
                continue
            if source.suffix == ".gz":
                _extract(source, target, name)
            else:
                _copy(source, target)
    check_files(cls, raw, {n: f"{sources[n]} (read from {raw / n})" for n in names if sources[n] != raw / n})
    return root


def check_files(cls: type[MNIST], raw: Path, shown: dict[str, str] | None = None) -> None:
    """DataError naming the file unless the four IDX files in `raw` are what `cls` expects: unsigned-byte
    images and labels, as many labels as images, labels in [0, number of classes), one image size.
    `shown` names a file in messages where `raw` holds a copy of the user's own file."""
    shown = shown or {}
    classes = len(cls.classes)
    sizes: dict[str, tuple[int, ...]] = {}
    for train in (True, False):
        images, labels = split_file_names(cls, train)
        image_dims = _header(raw / images, images, shown.get(images, str(raw / images)))
        label_dims = _header(raw / labels, labels, shown.get(labels, str(raw / labels)))
        if image_dims[0] != label_dims[0]:
            raise DataError(
                f"{shown.get(images, raw / images)} holds {image_dims[0]} images but {shown.get(labels, raw / labels)} "
                f"holds {label_dims[0]} labels: use the images and labels files of one copy of the dataset"
            )
        values = np.fromfile(raw / labels, dtype=np.uint8, offset=8)
        wrong = np.flatnonzero(values >= classes)
        if wrong.size:
            raise DataError(
                f"{shown.get(labels, raw / labels)} holds label {values[wrong[0]]} at index {wrong[0]}; "
                f"{cls.__name__} labels must be 0-{classes - 1}: the file is corrupt or from another dataset"
            )
        sizes[images] = image_dims[1:]
    (train_images, train_size), (test_images, test_size) = sizes.items()
    if train_size != test_size:
        raise DataError(
            f"{shown.get(test_images, raw / test_images)} holds {'x'.join(map(str, test_size))} images but "
            f"{shown.get(train_images, raw / train_images)} holds {'x'.join(map(str, train_size))} ones: "
            "use the files of one copy of the dataset"
        )


def image_shape(cls: type[MNIST], root: Path) -> tuple[int, int]:
    """(rows, columns) of the images under a root `prepare_root` returned (checked there)."""
    name = split_file_names(cls, train=True)[0]
    path = root / cls.__name__ / "raw" / name
    rows, columns = _header(path, name, str(path))[1:]
    return rows, columns


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
    """Images (N, rows, columns) uint8 and labels (N,) int64 of one official split, checked by `prepare_root`."""
    raw = root / cls.__name__ / "raw"
    images, labels = (_load(raw / name, name) for name in split_file_names(cls, train))
    return images, labels.long()


def _load(path: Path, name: str) -> torch.Tensor:
    dims = _header(path, name, str(path))
    data = np.fromfile(path, dtype=np.uint8, offset=4 + 4 * len(dims))
    return torch.from_numpy(data.reshape(dims))
