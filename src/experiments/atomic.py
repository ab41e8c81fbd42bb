"""Files that a kill at any instant leaves either as they were or complete: never half-written.

Every file the project writes for later (checkpoints, run.json, extracted data, reports) goes through
`atomic_write`: the bytes go to a temporary file in the same folder (a rename is atomic only within one
filesystem, which is why `$TMPDIR` is never used), are fsynced, get normal permissions and are renamed
over the target; the folder is fsynced so the rename itself survives a power loss. A kill leaves at most a
temporary file, named `.<target>.<random>.tmp`, which `remove_stale` deletes on the next start.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

SUFFIX = ".tmp"
# What `open()` would give a new file under the usual umask 022: readable by everyone, as data should be.
MODE = 0o644


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: int = MODE) -> Iterator[IO[bytes]]:
    """Open a temporary file next to `path` for writing bytes; on success it replaces `path` in one step.

    On any exception (including KeyboardInterrupt) the temporary file is removed and `path` is untouched.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=_temp_prefix(target), suffix=SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600 files
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path) as handle:
        handle.write(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _fsync_dir(directory: Path) -> None:
    # Directories cannot be opened for fsync on every platform (Windows); the rename is still atomic there.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_stale(directory: str | Path) -> list[Path]:
    """Delete the temporary files a killed `atomic_write` left in `directory`; returns what was removed."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    removed = []
    for leftover in folder.glob(f".*{SUFFIX}"):
        if leftover.is_file():
            with contextlib.suppress(OSError):
                leftover.unlink()
                removed.append(leftover)
    return removed
