"""Multiruns side by side (the default launcher, experiments.launch): sizing, the same numbers as one after
another, the console, failed and interrupted jobs, DDP refused. Where the process boundary is under test
(worker processes, their console, Ctrl-C to a process group) the sweeps run as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.launch.launcher import Placement, place
from tests.conftest import REPO_ROOT, compose_config

# Two epochs of a few batches on generated data: each job takes a second or two once its worker is warm.
SMALL = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.accelerator=cpu",
    "test_figures=4",
    "data.val_size=100",
    "data.batch_size=32",
]
ENDS = {"done", "failed", "interrupted"}  # the first word of a job's end line


@pytest.mark.parametrize(
    ("jobs", "n_jobs", "jobs_per_gpu", "cores", "gpus", "expected"),
    [
        (8, None, 4, 2, 0, Placement(2, 1, 0, 4)),  # a CPU: one job per core, one thread each
        (3, None, 4, 16, 0, Placement(3, 5, 0, 4)),  # never more workers than jobs; the threads shared out
        (32, None, 4, 16, 1, Placement(4, 4, 1, 4)),  # one GPU: jobs_per_gpu jobs share it
        (32, None, 8, 16, 4, Placement(16, 1, 4, 8)),  # four GPUs: at most one worker per core
        (32, None, 1, 16, 2, Placement(2, 8, 2, 1)),  # a GPU per job, when asked
        (8, 3, 4, 2, 0, Placement(3, 1, 0, 4)),  # hydra.launcher.n_jobs decides when given
        (8, -1, 4, 2, 0, Placement(2, 1, 0, 4)),  # joblib's -1: all cores
    ],
)
def test_placement_fits_the_machine(jobs, n_jobs, jobs_per_gpu, cores, gpus, expected) -> None:
    assert place(jobs, n_jobs, jobs_per_gpu, cores, gpus) == expected


def test_every_multirun_runs_side_by_side_unless_basic_is_asked_for() -> None:
    assert compose_config().hydra.launcher._target_.endswith(".ParallelLauncher")
    assert compose_config(["hydra/launcher=basic"]).hydra.launcher._target_.endswith(".BasicLauncher")


def sweep(tmp_path: Path, data: Path, *args: str, **popen: object) -> subprocess.Popen[str]:
    command = [sys.executable, str(REPO_ROOT / "train.py"), "-m", f"paths.data_dir={data}", *SMALL, *args]
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HYDRA_FULL_ERROR": "0"}
    tmp_path.mkdir(exist_ok=True)
    return subprocess.Popen(
        [*command, f"paths.log_dir={tmp_path / 'outputs'}"],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,  # type: ignore[arg-type]
    )


def records(tmp_path: Path) -> dict[str, dict]:
    (sweep_dir,) = (tmp_path / "outputs" / "sweeps").iterdir()
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/run.json"))}


def test_parallel_sweep_gives_the_numbers_of_a_sequential_one_and_one_line_per_job_start_and_end(
    cli, mnist_dir: Path, tmp_path: Path
) -> None:
    grid = ["model.optimizer.lr=0.05,0.2,-1", "seed=1"]
    sweep_args = ["hydra.mode=MULTIRUN", f"paths.data_dir={mnist_dir}", *SMALL, *grid]
    parallel = sweep(tmp_path / "parallel", mnist_dir, *grid, "hydra.launcher.n_jobs=2")
    out, err = parallel.communicate(timeout=240)
    assert parallel.returncode == 0, err[-3000:]
    (tmp_path / "sequential").mkdir()
    sequential = cli(f"paths.log_dir={tmp_path / 'sequential' / 'outputs'}", "hydra/launcher=basic", *sweep_args)
    assert sequential.code == 0, sequential.err

    side_by_side, one_by_one = records(tmp_path / "parallel"), records(tmp_path / "sequential")
    assert list(side_by_side) == list(one_by_one) and len(side_by_side) == 3
    for job, record in side_by_side.items():  # same seeds on a CPU: the same numbers, to the last digit
        assert record["status"] == one_by_one[job]["status"]
        assert record.get("metrics") == one_by_one[job].get("metrics"), job
        assert [row.get("val/acc") for row in record["history"]] == [
            row.get("val/acc") for row in one_by_one[job]["history"]
        ]
    assert [r["status"] for r in side_by_side.values()] == ["completed", "completed", "failed"]

    assert out.startswith("Sweep: 3 jobs, 2 at a time (1 thread each)"), out
    for job in side_by_side:
        assert [line.split()[0] for line in out.splitlines() if job in line][:1] == ["start"], out
        ends = [line for line in (out + err).splitlines() if line.split(" ")[0] in ENDS and job in line]
        assert len(ends) == 1, out + err
    failed_line = next(line for line in err.splitlines() if line.startswith("failed "))
    assert "model.optimizer.lr=-1 must be > 0" in failed_line and "[" in failed_line and "done" in failed_line
    assert "[3/3 done]" in out + err
    done = [line for line in out.splitlines() if line.startswith("done ")]
    assert len(done) == 2 and all("val acc" in line and "test acc" in line for line in done)
    assert "Epoch" not in out + err and "Test accuracy" not in out, "each job's own output goes to its train.log"
    for job, record in side_by_side.items():  # what a job would have printed is in its train.log
        log = (next((tmp_path / "parallel" / "outputs" / "sweeps").iterdir()) / job / "train.log").read_text()
        assert ("Test accuracy: " in log) if record["status"] == "completed" else ("error: " in log), log
    assert "Sweep: 3 jobs, 2 completed, 1 failed" in out, "the report as after a sequential sweep"


def test_ctrl_c_stops_every_running_job_resumably_and_leaves_the_rest_unstarted(
    mnist_dir: Path, tmp_path: Path
) -> None:
    long_jobs = ["trainer.max_epochs=30", "trainer.limit_train_batches=10", "seed=1,2,3"]
    process = sweep(tmp_path, mnist_dir, *long_jobs, "hydra.launcher.n_jobs=2", start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # both workers in training: each has a checkpoint to resume from
        if len(list((tmp_path / "outputs" / "sweeps").glob("*/*/checkpoints/last.ckpt"))) >= 2:
            break
        time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("the jobs did not start: " + process.communicate()[1][-2000:])
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground process group
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    statuses = {job: record["status"] for job, record in records(tmp_path).items()}
    assert sorted(statuses.values()) == ["interrupted", "interrupted"], (statuses, err[-3000:])
    assert "interrupted: 2 running job(s) saved a checkpoint, 1 not started" in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert len([line for line in err.splitlines() if line.startswith("interrupted ")]) == 2, err

    resumed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "train.py"), "resume=last", f"paths.log_dir={tmp_path / 'outputs'}"],
        cwd=tmp_path, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(r["status"] for r in records(tmp_path).values()) == ["completed", "interrupted"]


def test_ddp_jobs_are_refused_in_one_line_before_anything_starts(cli, mnist_dir: Path, tmp_path: Path) -> None:
    ddp = ["trainer=ddp", "trainer.devices=2", "seed=1,2"]
    result = cli("hydra.mode=MULTIRUN", f"paths.data_dir={mnist_dir}", *SMALL, *ddp)
    assert result.code == 1
    assert result.err.strip().splitlines() == [
        "error: trainer=ddp jobs cannot run side by side in the parallel launcher's worker processes (Lightning "
        "starts DDP ranks by re-running the command); add hydra/launcher=basic to run them one at a time"
    ]
    assert not (tmp_path / "outputs").exists(), "nothing written"
