"""Multirun sweeps end to end on generated data: job directories, the report, TensorBoard HParams,
failed and interrupted jobs, Optuna, launcher configs and DDP inside sweep jobs."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from experiments.sweeps.parallel import claim_gpu
from experiments.sweeps.report import write_report
from experiments.sweeps.results import COMPLETED, FAILED, INCOMPLETE, collect_jobs
from tests.conftest import compose_config

# One epoch of a few batches: each job takes a second or two.
TINY = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.accelerator=cpu",
    "trainer.enable_model_summary=false",
    "callbacks.progress_bar.refresh_rate=0",
    "test_figures=4",
    "data.val_size=100",
]
GRID = {"data.batch_size": [32, 64], "model.optimizer.lr": [0.05, 0.2]}


def only_sweep_dir(outputs: Path) -> Path:
    sweeps = list((outputs / "sweeps").iterdir())
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def read_summary(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "summary.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def grid_sweep(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`python train.py -m data.batch_size=32,64 model.optimizer.lr=0.05,0.2`, in-process, shared below."""
    from hydra.core.global_hydra import GlobalHydra

    from experiments.train import main

    workdir = tmp_path_factory.mktemp("sweep")
    sweep_args = [f"{key}={','.join(map(str, values))}" for key, values in GRID.items()]
    argv = ["train.py", "-m", f"paths.log_dir={workdir / 'outputs'}", f"paths.data_dir={mnist_dir}", *TINY, *sweep_args]
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.chdir(workdir)
        mp.setattr(sys, "argv", argv)
        GlobalHydra.instance().clear()
        main()
    return only_sweep_dir(workdir / "outputs"), out.getvalue()


def test_grid_gives_one_readable_directory_per_job(grid_sweep: tuple[Path, str]) -> None:
    sweep_dir, _ = grid_sweep
    jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert len(jobs) == 4
    assert [job[:4] for job in jobs] == ["000_", "001_", "002_", "003_"], "zero-padded job numbers sort in order"
    for size in GRID["data.batch_size"]:
        for lr in GRID["model.optimizer.lr"]:
            wanted = rf"(^|_)batch_size-{size}(_|$).*(^|_)lr-{lr}(_|$)"
            assert sum(bool(re.search(wanted, job.split("_", 1)[1])) for job in jobs) == 1, jobs


def test_summary_has_one_row_per_job_best_first(grid_sweep: tuple[Path, str]) -> None:
    sweep_dir, _ = grid_sweep
    rows = read_summary(sweep_dir)
    assert len(rows) == 4
    assert {(int(r["batch_size"]), float(r["lr"])) for r in rows} == {
        (b, lr) for b in GRID["data.batch_size"] for lr in GRID["model.optimizer.lr"]
    }
    assert all(r["status"] == COMPLETED and int(r["epochs"]) == 1 for r in rows)
    accuracies = [float(r["val_acc_best"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert all(0 <= float(r["test_acc"]) <= 1 and float(r["samples_per_sec"]) > 0 for r in rows)
    for row in rows:  # the table agrees with each job's own record
        record = json.loads((sweep_dir / row["job"] / "run.json").read_text())
        assert float(row["val_acc_best"]) == pytest.approx(record["metrics"]["val/acc_best"], abs=1e-4)
    table = (sweep_dir / "summary.md").read_text()
    assert table.count("| completed |") == 4 and "`data.batch_size=32` `model.optimizer.lr=0.05`" in table


def test_report_pictures_are_valid_pngs(grid_sweep: tuple[Path, str]) -> None:
    sweep_dir, _ = grid_sweep
    for name in ("heatmap.png", "curves.png"):
        with Image.open(sweep_dir / name) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100


def test_tensorboard_hparams_list_every_job(grid_sweep: tuple[Path, str]) -> None:
    sweep_dir, _ = grid_sweep
    seen = set()
    for row in read_summary(sweep_dir):
        events = EventAccumulator(str(sweep_dir / row["job"]), size_guidance={"scalars": 0})
        events.Reload()
        content = events.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        hparams = start.session_start_info.hparams
        seen.add((hparams["data.batch_size"].number_value, hparams["model.optimizer.lr"].number_value))
        assert events.Scalars("hp/val_acc_best")[-1].value == pytest.approx(float(row["val_acc_best"]), abs=1e-4)
        assert events.Scalars("hp/test_acc")[-1].value == pytest.approx(float(row["test_acc"]), abs=1e-4)
    assert len(seen) == 4


def test_sweep_prints_best_configuration_and_report_path(grid_sweep: tuple[Path, str]) -> None:
    sweep_dir, stdout = grid_sweep
    best = read_summary(sweep_dir)[0]
    assert f"Best:   batch_size={best['batch_size']} lr={float(best['lr']):g}" in stdout
    assert f"Report: {sweep_dir / 'summary.md'}" in stdout


def test_compare_runs_rebuilds_the_same_report(grid_sweep: tuple[Path, str], tmp_path: Path, command) -> None:
    sweep_dir, _ = grid_sweep
    copy = shutil.copytree(sweep_dir, tmp_path / sweep_dir.name)
    for name in ("summary.csv", "summary.md", "heatmap.png", "curves.png"):
        (copy / name).unlink()
    result = command("compare", f"sweep_dir={copy}")
    assert result.code == 0, result.err
    assert f"Report: {copy / 'summary.md'}" in result.out
    assert read_summary(copy) == read_summary(sweep_dir)
    assert (copy / "heatmap.png").is_file() and (copy / "curves.png").is_file()
    assert list(Path.cwd().iterdir()) == [], "the report goes into the sweep directory only"
    assert command("compare", f"sweep_dir={tmp_path / 'nowhere'}").code == 1


def test_a_failing_job_does_not_stop_the_sweep(cli, mnist_dir: Path, tmp_path: Path) -> None:
    result = cli("hydra.mode=MULTIRUN", f"paths.data_dir={mnist_dir}", *TINY, "model.optimizer.lr=0.1,-1")
    assert result.code == 0, result.err
    assert result.error_lines == ["error: model.optimizer.lr=-1 must be > 0"]
    rows = {r["lr"]: r for r in read_summary(only_sweep_dir(tmp_path / "outputs"))}
    assert rows["0.1"]["status"] == COMPLETED
    assert rows["-1"]["status"] == FAILED and "must be > 0" in rows["-1"]["error"]
    assert list(rows) == ["0.1", "-1"], "failed jobs sort last"


def write_job(sweep_dir: Path, name: str, overrides: list[str], record: dict | None) -> None:
    job = sweep_dir / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if record is not None:
        (job / "run.json").write_text(json.dumps({"overrides": overrides, **record}))


def test_report_lists_interrupted_and_killed_jobs(tmp_path: Path) -> None:
    """A sweep stopped hard: one job finished, one was killed mid-training, one never got to train."""
    row = {"epoch": 0, "seconds": 1.0, "samples_per_sec": 100.0, "val/acc": 0.5}
    write_job(
        tmp_path,
        "000_batch_size-32",
        ["data.batch_size=32"],
        {
            "status": "completed",
            "batch_size": 32,
            "lr": 0.1,
            "history": [row, {**row, "epoch": 1, "val/acc": 0.7}],
            "epochs": 2,
            "metrics": {"val/acc_best": 0.7, "test/acc": 0.69},
        },
    )
    write_job(
        tmp_path,
        "001_batch_size-64",
        ["data.batch_size=64"],
        {"status": "running", "batch_size": 64, "lr": 0.1, "history": [row], "epochs": 1},
    )
    write_job(tmp_path, "002_batch_size-128_lr-0.3", ["data.batch_size=128", "model.optimizer.lr=0.3"], None)

    jobs = {job.batch_size: job for job in collect_jobs(tmp_path)}
    assert [jobs[size].status for size in (32, 64, 128)] == [COMPLETED, INCOMPLETE, INCOMPLETE]
    assert jobs[64].val_acc_best == 0.5, "an interrupted job reports the best epoch it finished"
    assert jobs[128].lr == 0.3 and "no run.json" in jobs[128].error

    report = write_report(tmp_path)
    assert report.best is not None and report.best.batch_size == 32
    assert [r["status"] for r in read_summary(tmp_path)] == [COMPLETED, INCOMPLETE, INCOMPLETE]
    assert "## Failed or incomplete jobs" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "heatmap.png").is_file() and (tmp_path / "curves.png").is_file()


def test_optuna_search_optimises_what_the_train_function_returns(cli, mnist_dir: Path, tmp_path: Path) -> None:
    result = cli(
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        f"paths.data_dir={mnist_dir}",
        *TINY,
    )
    assert result.code == 0, result.err
    sweep_dir = only_sweep_dir(tmp_path / "outputs")
    optuna_result = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    rows = read_summary(sweep_dir)
    assert len(rows) == 2 and all(r["status"] == COMPLETED for r in rows)
    assert optuna_result["best_value"] == pytest.approx(float(rows[0]["val_acc_best"]), abs=1e-4)
    assert set(optuna_result["best_params"]) == {
        "model.optimizer.lr",
        "data.batch_size",
        "model.hidden_sizes",
        "model.dropout",
    }


def test_search_and_launcher_configs_compose() -> None:
    optuna = compose_config(["hparams_search=optuna"]).hydra
    assert optuna.sweeper._target_.endswith("OptunaSweeper") and optuna.sweeper.direction == "maximize"
    assert optuna.sweeper.params["model.optimizer.lr"].startswith("tag(log")
    preset = compose_config(["experiment=bs_lr_sweep"]).hydra
    assert preset.mode.name == "MULTIRUN" and preset.sweeper.params["data.batch_size"] == "32,64,128,256"
    assert compose_config(["hydra/launcher=joblib"]).hydra.launcher._target_.endswith("JoblibLauncher")
    slurm = compose_config(["hydra/launcher=slurm"]).hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher") and slurm.gpus_per_node == 1
    assert compose_config(["hydra/launcher=submitit_local"]).hydra.launcher._target_.endswith("LocalLauncher")


def test_parallel_jobs_never_share_a_gpu(tmp_path: Path) -> None:
    """Two jobs that both prefer GPU 0 end up on GPUs 0 and 1; the lock is released with the job."""
    with claim_gpu(tmp_path, count=2, preferred=0) as first, claim_gpu(tmp_path, count=2, preferred=0) as second:
        assert {first, second} == {0, 1}
    with claim_gpu(tmp_path, count=2, preferred=1) as again:
        assert again == 1


def test_ddp_inside_sweep_jobs(run_train, mnist_dir: Path, tmp_path: Path) -> None:
    """Two jobs, each trained by 2 CPU processes (gloo): rank 1 re-runs its own job in its job's directory,
    not the whole sweep; only rank 0 writes records and prints."""
    result = run_train(
        "hydra.mode=MULTIRUN",
        "trainer=ddp",
        "trainer.devices=2",
        f"paths.data_dir={mnist_dir}",
        *TINY,
        "data.batch_size=16,32",
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = only_sweep_dir(tmp_path / "outputs")  # a child re-running `-m` would add a second sweep
    rows = read_summary(sweep_dir)
    assert [r["status"] for r in rows] == [COMPLETED, COMPLETED]
    assert result.stdout.count("Run directory:") == 2, "one summary per job, from rank 0 only"
    for row in rows:
        job_dir = sweep_dir / row["job"]
        assert (job_dir / "train_ddp_process_1.log").is_file(), "rank 1 ran inside this job's directory"
        assert not (job_dir / ".hydra" / "train_ddp_process_1.log").exists()
        events = EventAccumulator(str(job_dir))
        events.Reload()
        assert len(events.Scalars("hp/val_acc_best")) == 1, "hyperparameters logged once"
