"""Bad input: one clear line naming the key, a non-zero exit, and no run directory left behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import FAST_RUN

BAD_VALUES = [
    ("data.batch_size=0", "data.batch_size"),
    ("data.batch_size=-5", "data.batch_size"),
    ("model.optimizer.lr=0", "model.optimizer.lr"),
    ("model.optimizer.lr=-0.1", "model.optimizer.lr"),
    ("model.optimizer.lr=abc", "model.optimizer.lr"),
    ("model.activation=swish", "model.activation"),
    ("model.hidden_sizes=[]", "model.hidden_sizes"),
    ("model.dropout=1.0", "model.dropout"),
    ("trainer.max_epochs=0", "trainer.max_epochs"),
    ("data.val_size=600", "data.val_size"),
    ("data.batch_size=100000", "data.batch_size"),
]


def assert_clean_failure(result, key: str, outputs: Path) -> None:
    assert result.code != 0
    assert len(result.error_lines) == 1, result.err
    assert key in result.error_lines[0]
    assert "Traceback" not in result.err
    runs = outputs / "runs"
    assert not runs.exists() or not any(runs.iterdir()), "a failed run must not leave a run directory"


@pytest.mark.parametrize(("override", "key"), BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_invalid_values_fail_before_training(cli, mnist_dir: Path, tmp_path: Path, override: str, key: str) -> None:
    result = cli(f"paths.data_dir={mnist_dir}", *FAST_RUN, override)
    assert_clean_failure(result, key, tmp_path / "outputs")
    assert "Epoch" not in result.out


def test_gpu_requested_without_gpu(cli, mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = cli(f"paths.data_dir={mnist_dir}", "trainer.accelerator=gpu")
    assert_clean_failure(result, "trainer.accelerator", tmp_path / "outputs")
    assert "no CUDA GPU visible; use trainer.accelerator=cpu or auto" in result.error_lines[0]


def test_missing_data_names_files_and_fix(cli, tmp_path: Path) -> None:
    result = cli(f"paths.data_dir={tmp_path / 'empty'}")
    assert_clean_failure(result, "train-images-idx3-ubyte", tmp_path / "outputs")
    assert "paths.data_dir" in result.error_lines[0]


def test_gpu_error_from_the_real_command_line(run_train, mnist_dir: Path, tmp_path: Path) -> None:
    """The same check through a real interpreter: exit status and stderr as a user sees them."""
    result = run_train(f"paths.data_dir={mnist_dir}", "trainer.accelerator=gpu")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: trainer.accelerator=gpu: no CUDA GPU visible; use trainer.accelerator=cpu or auto"
    )
    assert not (tmp_path / "outputs" / "runs").exists() or not any((tmp_path / "outputs" / "runs").iterdir())


def test_full_trace_on_request(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(Exception, match=r"data\.batch_size"):
        cli("data.batch_size=0")
