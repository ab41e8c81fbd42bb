"""experiments.atomic: a file is either the old one or the new one, with normal permissions."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from experiments import atomic


def test_write_replaces_the_file_with_normal_permissions(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    target.write_text("old")
    atomic.write_text(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic.atomic_write(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_remove_stale_deletes_only_leftover_temps(tmp_path: Path) -> None:
    leftover = tmp_path / ".last.ckpt.abc123.tmp"
    leftover.write_bytes(b"partial")
    kept = [tmp_path / "last.ckpt", tmp_path / ".hidden"]
    for path in kept:
        path.write_bytes(b"x")
    assert atomic.remove_stale(tmp_path) == [leftover]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)
