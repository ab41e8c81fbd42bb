"""End to end: `python train.py` on generated data writes TensorBoard logs, checkpoints and a summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2

from experiments.models.classifier import MNISTClassifier
from experiments.tensorboard.hparams import CURATED, METRICS
from tests.conftest import FAST_RUN
from tests.tensorboard_views import layout_charts, read_hparams


def only_run_dir(outputs: Path) -> Path:
    runs = list((outputs / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def finished_run(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One real `python train.py` subprocess, shared by the checks below."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    workdir = tmp_path_factory.mktemp("e2e")
    command = [
        sys.executable,
        str(REPO_ROOT / "train.py"),
        f"paths.data_dir={mnist_dir}",
        f"paths.log_dir={workdir / 'outputs'}",
        *FAST_RUN,
    ]
    result = subprocess.run(
        command,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return only_run_dir(workdir / "outputs"), result.stdout


def test_summary_names_accuracy_run_dir_and_tensorboard_command(finished_run: tuple[Path, str]) -> None:
    run_dir, stdout = finished_run
    shown = run_dir.relative_to(run_dir.parents[2])  # outputs/runs/<run>, as typed in the directory it ran in
    assert "Test accuracy:" in stdout
    assert f"Run directory: {shown}" in stdout
    assert f"tensorboard --logdir {shown}" in stdout


def test_console_says_what_loads_and_prints_no_tables(finished_run: tuple[Path, str]) -> None:
    """First line: what is being loaded (before the seconds of `import lightning`); the model in one line;
    no model-summary table and no test-metric table (the summary says it), whether or not rich is installed."""
    _, stdout = finished_run
    lines = stdout.splitlines()
    assert lines[0].startswith(f"Loading PyTorch {torch.__version__.split('+')[0]} and Lightning "), lines[0]
    assert "Model: MLP 784-128-128-10, 118,282 parameters" in lines
    assert not any(mark in stdout for mark in "┏┃│") and "Test metric" not in stdout and "Params" not in stdout


def test_progress_bar_and_summary_are_chosen_not_detected() -> None:
    from tests.conftest import compose_config

    cfg = compose_config()
    assert cfg.callbacks.progress_bar._target_ == "lightning.pytorch.callbacks.TQDMProgressBar"
    assert cfg.callbacks.progress_bar.leave is True, "one line kept per epoch: Lightning's lines start on their own"
    assert cfg.trainer.enable_model_summary is False
    assert cfg.callbacks.model_summary._target_ == "experiments.models.summary.OneLineSummary"


def test_one_line_model_description() -> None:
    from experiments.models.summary import describe

    assert describe(MNISTClassifier(net="cnn").net) == "LeNet conv 1-6-16, fc 400-120-84-10"
    assert describe(MNISTClassifier(net="linear").net).endswith("784-10")


def test_run_directory_has_config_record_and_figures(finished_run: tuple[Path, str]) -> None:
    run_dir, _ = finished_run
    config = (run_dir / "config.yaml").read_text()
    assert "batch_size: 32" in config and "${" not in config, "the saved config is fully resolved"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed" and record["epochs"] == 2
    assert [row["epoch"] for row in record["history"]] == [0, 1]
    assert all(0 <= row["train/acc"] <= 1 and row["samples_per_sec"] > 0 for row in record["history"])
    assert 0 <= record["metrics"]["test/acc"] <= 1
    for png in ("confusion_matrix.png", "predictions.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tensorboard_has_scalars_figures_and_real_hparams(finished_run: tuple[Path, str]) -> None:
    run_dir, _ = finished_run
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    expected = {"train/loss", "train/acc", "train/lr", "val/loss", "val/acc", "val/acc_best", "test/loss", "test/acc"}
    assert expected <= set(tags["scalars"]), tags["scalars"]
    assert not [tag for tag in tags["scalars"] if tag.startswith("hp/")], "HParams needs no charts of its own"
    assert "epoch" not in tags["scalars"], "Lightning's epoch counter: dropped by experiments.tensorboard.logger"
    assert {"test/confusion_matrix", "test/predictions"} <= set(tags["images"])
    # train/loss and the learning rate every log_every_n_steps=1: one point per optimizer step, 4 steps per
    # epoch (limit_train_batches=4). Epoch-level metrics sit on the same axis, at the end of each epoch.
    assert [e.step for e in events.Scalars("train/loss")] == list(range(8))
    assert [e.step for e in events.Scalars("train/lr")] == list(range(8))
    assert [e.step for e in events.Scalars("val/acc")] == [4, 8]

    hparams = read_hparams(run_dir)
    start = hparams["_hparams_/session_start_info"].session_start_info
    assert start.hparams["data.batch_size"].number_value == 32
    assert start.hparams["model.optimizer"].string_value == "SGD"
    assert hparams["_hparams_/session_end_info"].session_end_info.status == api_pb2.STATUS_SUCCESS
    # A single run is its own experiment: its curated settings, and metrics that are real scalar tags.
    experiment = hparams["_hparams_/experiment"].experiment
    assert [h.name for h in experiment.hparam_infos] == list(CURATED)
    assert [m.name.tag for m in experiment.metric_infos] == list(METRICS)
    assert set(METRICS) <= set(tags["scalars"])
    assert layout_charts(run_dir) == {
        "loss": ["^train/loss$", "^val/loss$"],
        "accuracy": ["^train/acc$", "^val/acc$"],
        "learning rate": ["^train/lr$", "^lr-"],
    }


def test_checkpoints_load_weights_only(finished_run: tuple[Path, str]) -> None:
    run_dir, _ = finished_run
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints and any(name.startswith("epoch") for name in checkpoints)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["optimizer"]["name"] == "torch.optim.sgd.SGD"
    model = MNISTClassifier(**{k: hparams[k] for k in ("hidden_sizes", "activation", "dropout")})
    model.load_state_dict(checkpoint["state_dict"])


def test_same_seed_gives_identical_metrics(cli, mnist_dir: Path, tmp_path: Path) -> None:
    records = []
    for _ in range(2):
        result = cli(f"paths.data_dir={mnist_dir}", *FAST_RUN, "logger=none")
        assert result.code == 0, result.err
        run_dir = sorted((tmp_path / "outputs" / "runs").iterdir())[-1]
        records.append(json.loads((run_dir / "run.json").read_text()))
    strip = [
        {k: v for k, v in row.items() if k not in ("seconds", "epoch_seconds", "samples_per_sec")}
        for r in records
        for row in r["history"]
    ]
    assert strip[:2] == strip[2:]
    assert records[0]["metrics"] == records[1]["metrics"]


def test_resident_and_dataloader_paths_learn_the_same(cli, mnist_dir: Path, tmp_path: Path) -> None:
    """Same config, both loaders: both learn the (learnable) generated digits, to the same accuracy."""
    accuracies = {}
    for loader in ("resident", "dataloader"):
        result = cli(
            f"paths.data_dir={mnist_dir}",
            f"data.loader={loader}",
            "data.batch_size=16",
            "data.val_size=100",
            "trainer.max_epochs=3",
            "trainer.accelerator=cpu",
            "logger=none",
            "callbacks.progress_bar.refresh_rate=0",
            f"run_name={loader}",
        )
        assert result.code == 0, result.err
        (run_dir,) = (tmp_path / "outputs" / "runs").glob(f"*_{loader}")
        accuracies[loader] = json.loads((run_dir / "run.json").read_text())["metrics"]["test/acc"]
    assert min(accuracies.values()) >= 0.9, accuracies
    assert abs(accuracies["resident"] - accuracies["dataloader"]) <= 0.05, accuracies
