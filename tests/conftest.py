from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import lightning  # noqa: F401  -- imported before any test captures stderr: Lightning keeps a handler on it
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from experiments.data.synthetic import write_dataset
from experiments.train import CONFIG_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]

# Settings that keep a real train.py run to a few seconds on generated data.
FAST_RUN = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.log_every_n_steps=1",
    "trainer.accelerator=cpu",
    "trainer.enable_model_summary=false",
    "callbacks.progress_bar.refresh_rate=0",
    "data.batch_size=32",
    "data.val_size=100",
    "test_figures=8",
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never download: an unreachable mirror makes torchvision's download fail at once."""
    from torchvision.datasets import MNIST, FashionMNIST

    for cls in (MNIST, FashionMNIST):
        monkeypatch.setattr(cls, "mirrors", ["http://127.0.0.1:9/"])


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data_dir with small gzip-compressed MNIST files under MNIST/raw/ (as published)."""
    root = tmp_path_factory.mktemp("data")
    write_dataset(root / "MNIST" / "raw", gz=True)
    return root


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides or [], return_hydra_config=True)


@pytest.fixture
def run_train(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `python train.py ...` from the repository root, with outputs under tmp_path."""

    def run(*overrides: str, env: dict[str, str] | None = None, timeout: int = 180) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(REPO_ROOT / "train.py"), f"paths.log_dir={tmp_path / 'outputs'}", *overrides]
        environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", **(env or {})}
        return subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=timeout)

    return run


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]


def call_main(main: Callable[[], object], argv: list[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    """Call a Hydra entry point in-process as its console script would run: argv in, exit code out."""
    from hydra.core.global_hydra import GlobalHydra

    saved = sys.argv
    sys.argv = argv
    GlobalHydra.instance().clear()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = saved
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


def train_in_process(*argv: str) -> None:
    """`train.py <argv>` in this process, for fixtures wider than one test (they have no capsys)."""
    from hydra.core.global_hydra import GlobalHydra

    from experiments.train import main

    saved, cwd = sys.argv, os.getcwd()
    sys.argv = ["train.py", *argv]
    GlobalHydra.instance().clear()
    try:
        main()
    finally:
        sys.argv = saved
        os.chdir(cwd)


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """A weights-only checkpoint of a 784-16-10 MLP: not the default model, a file the commands can read."""
    import torch

    from experiments.models.classifier import MNISTClassifier

    model = MNISTClassifier(hidden_sizes=[16])
    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


@pytest.fixture
def cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., CliResult]:
    """Call the real `train.py` entry point in-process (no interpreter start-up): argv in, exit code out."""
    from experiments.train import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")

    def invoke(*overrides: str) -> CliResult:
        return call_main(main, ["train.py", f"paths.log_dir={tmp_path / 'outputs'}", *overrides], capsys)

    return invoke


@pytest.fixture
def command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., CliResult]:
    """`command("evaluate", "ckpt_path=...")` runs `experiments-evaluate ckpt_path=...` in-process, in an
    empty working directory of its own (a test can check that it stays empty)."""
    from importlib import import_module

    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")

    def invoke(name: str, *args: str) -> CliResult:
        main = import_module(f"experiments.commands.{name}").main
        return call_main(main, [f"experiments-{name}", *args], capsys)

    return invoke
