"""A regular (non-editable) install carries the configs: build the wheel, install it elsewhere, train there.

The process boundary is the point here: the installed console script must find its configs without this
checkout on sys.path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_wheel_ships_the_configs_and_trains_from_another_directory(mnist_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "source"  # build from a copy: an in-tree build would leave build/ in the checkout
    shutil.copytree(REPO_ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # --no-build-isolation: the build uses this environment's setuptools, so the test needs no network.
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(source)], check=True)
    (wheel,) = tmp_path.glob("experiments-*.whl")
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("experiments/conf/")}
    expected = {
        f"experiments/conf/{p.relative_to(REPO_ROOT / 'conf').as_posix()}" for p in (REPO_ROOT / "conf").rglob("*.yaml")
    }
    assert expected and shipped == expected, "every config in conf/ is in the wheel"

    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "CUDA_VISIBLE_DEVICES": ""}
    where = subprocess.run(
        [sys.executable, "-c", "import experiments; print(experiments.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(site), "the installed copy, not this checkout"
    result = subprocess.run(
        [
            sys.executable,
            str(site / "bin" / "experiments-train"),
            f"paths.data_dir={mnist_dir}",
            "data.val_size=100",
            "trainer.fast_dev_run=true",
            "trainer.accelerator=cpu",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Test accuracy:" in result.stdout
    assert (elsewhere / "outputs" / "runs").is_dir(), "outputs go to the directory it runs in"


# README's set-up commands install these: uv.lock's exports (their headers name the command that wrote them).
LOCK_EXPORTS = {
    "requirements.lock": ["--no-hashes", "--no-emit-project"],
    "requirements-dev.lock": ["--no-hashes", "--no-emit-project", "--extra", "dev"],
}


def test_requirement_locks_are_the_exports_of_uv_lock(tmp_path: Path) -> None:
    """What pip installs is what uv.lock says (CI's `uv lock --check` ties uv.lock to pyproject.toml), and
    the lock admits no Lightning below 2.6.6 (GHSA-w37p-236h-pfx3)."""
    import tomllib
    from packaging.version import Version

    uv = Path(sys.executable).parent / "uv"
    for name, options in LOCK_EXPORTS.items():
        fresh = tmp_path / name
        command = [str(uv), "export", "--frozen", "--quiet", *options, "-o", str(fresh)]
        subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True)
        body = fresh.read_text().replace(str(fresh), name)  # the header names the output file
        assert body == (REPO_ROOT / name).read_text(), f"{name} is stale: re-export it as its header says"
    locked = {p["name"]: p["version"] for p in tomllib.loads((REPO_ROOT / "uv.lock").read_text())["package"]}
    assert Version(locked["lightning"]) >= Version("2.6.6") and "optuna" in locked and "mlflow" in locked
