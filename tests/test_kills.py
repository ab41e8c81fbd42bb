"""The kill matrix: `kill -9` at each point of a run, then `resume=<run dir>`, which must end as the same
run uninterrupted does (same seed, CPU: identical numbers).

Each killed run is a subprocess, since the process boundary and SIGKILL are what is under test; the
faults (tests/faults.py) fire once, so the resumed run, which reuses the saved config, runs through.
The uninterrupted reference and the resumes run in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments.errors import USER_FULL_ERROR
from tests.conftest import FAST_RUN, REPO_ROOT, CliResult, call_main, train_in_process

EPOCHS, STEPS_PER_EPOCH = 2, 4  # FAST_RUN: 2 epochs of 4 batches
RUN = [*FAST_RUN, "run_name=killed"]
ROW_KEYS = ("epoch", "global_step", "train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best")


def summary(run_dir: Path) -> dict[str, Any]:
    """What a finished run must agree on: run.json's status, rows and metrics, and every TensorBoard scalar
    as TensorBoard reads the directory (all event files in name order), as (step, value) points."""
    record = json.loads((run_dir / "run.json").read_text())
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {
        "status": record["status"],
        "rows": [{key: row.get(key) for key in ROW_KEYS} for row in record["history"]],
        "metrics": record.get("metrics"),
        "global_step": record.get("global_step"),
        "scalars": {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]},
    }


@pytest.fixture(scope="module")
def reference(
    killed: dict[str, Future[Killed]], mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The same run, uninterrupted, in-process (while the killed runs run)."""
    outputs = tmp_path_factory.mktemp("reference") / "outputs"
    train_in_process(f"paths.log_dir={outputs}", f"paths.data_dir={mnist_dir}", *RUN)
    (run_dir,) = (outputs / "runs").iterdir()
    return summary(run_dir)


def kill_at(point: str, **where: int) -> list[str]:
    return ["+callbacks.kill._target_=tests.faults.KillAt", f"+callbacks.kill.point={point}"] + [
        f"+callbacks.kill.{key}={value}" for key, value in where.items()
    ]


def kill_on_save(when: str, epoch: int) -> list[str]:
    return [f"+trainer.plugins=[{{_target_:tests.faults.KillOnSave,when:{when},epoch:{epoch},marker:'@MARKER@'}}]"]


LAST = 2 * STEPS_PER_EPOCH
# kill point: (fault overrides, the global step of checkpoints/last.ckpt the kill leaves (the resume point),
# the epochs in run.json then: those finished, each row written just before its epoch's checkpoint)
MATRIX = {
    "mid_epoch": (kill_at("train_batch", epoch=1, batch=1), STEPS_PER_EPOCH, [0]),
    "right_after_checkpoint": (kill_on_save("after", epoch=0), STEPS_PER_EPOCH, [0]),
    "while_last_ckpt_written": (kill_on_save("during", epoch=1), STEPS_PER_EPOCH, [0, 1]),
    "validation": (kill_at("validation_batch", epoch=1, batch=0), STEPS_PER_EPOCH, [0]),
    "right_after_last_checkpoint": (kill_on_save("after", epoch=1), LAST, [0, 1]),
    "test": (kill_at("test_batch", batch=0), LAST, [0, 1]),
    "figures": (kill_at("figures"), LAST, [0, 1]),
}


# Runs stopped otherwise, each with its own test below: Ctrl-C twice in a row (the second stops at once,
# without saving), and a kill during test after which the run directory is moved elsewhere.
DOUBLE_SIGINT = [
    "+callbacks.interrupt._target_=tests.faults.SignalAt",
    "+callbacks.interrupt.epoch=1",
    "+callbacks.interrupt.batch=1",
    "+callbacks.interrupt.signal_name=SIGINT",
    "+callbacks.interrupt.count=2",
    "+callbacks.interrupt.marker=@MARKER@",
]
OTHER_STOPS = {"double_sigint": DOUBLE_SIGINT, "moved": kill_at("test_batch", batch=0), "setup": kill_at("setup")}


@dataclass
class Killed:
    outputs: Path  # paths.log_dir of the killed run
    args: list[str]
    returncode: int
    stderr: str
    fired: bool

    @property
    def run_dir(self) -> Path:
        (run_dir,) = (self.outputs / "runs").iterdir()
        return run_dir


def start_killed_run(folder: Path, mnist_dir: Path, fault: list[str]) -> Killed:
    """`python train.py ...` with a fault that kills it; waits for its end."""
    marker = folder / "fired"
    args = [f"paths.data_dir={mnist_dir}", *RUN, *(f.replace("@MARKER@", str(marker)) for f in fault)]
    if "KillAt" in " ".join(fault) and "SignalAt" not in " ".join(fault):
        args.append(f"+callbacks.kill.marker={marker}")
    outputs = folder / "outputs"
    command = [sys.executable, str(REPO_ROOT / "train.py"), f"paths.log_dir={outputs}", *args]
    pythonpath = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    # HYDRA_FULL_ERROR set outright: the in-process reference run sets it (config.mistakes) while it runs,
    # and a process started meanwhile would inherit it.
    env = {k: v for k, v in os.environ.items() if k != USER_FULL_ERROR}
    env.update({"CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": pythonpath, "HYDRA_FULL_ERROR": "0"})
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    return Killed(outputs, args, done.returncode, done.stderr, marker.is_file())


@pytest.fixture(scope="module")
def killed(
    request: pytest.FixtureRequest, mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[Killed]]]:
    """The killed runs of the selected tests, two at a time (mostly interpreter start-up: one core each),
    started before the reference run so that they run while it does."""
    faults = {point: fault for point, (fault, _, _) in MATRIX.items()} | OTHER_STOPS
    items = [item for item in request.session.items if item.module is request.module]
    selected = {item.callspec.params.get("point") for item in items if hasattr(item, "callspec")}
    for point, test in OTHER_TESTS.items():
        if any(item.name == test for item in items):
            selected.add(point)
    faults = {point: fault for point, fault in faults.items() if point in selected}
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {
            point: pool.submit(start_killed_run, tmp_path_factory.mktemp(point), mnist_dir, fault)
            for point, fault in faults.items()
        }


@pytest.fixture
def resume(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """`python train.py <the killed run's overrides> resume=<its run dir>`, in-process."""
    from experiments.train import main

    def invoke(run: Killed) -> CliResult:
        monkeypatch.chdir(run.outputs.parent)
        monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
        # Quoted as a user would (run directory names may hold = and ,).
        argv = ["train.py", f"paths.log_dir={run.outputs}", *run.args, f"resume='{run.run_dir}'"]
        return call_main(main, argv, capsys)

    return invoke


def assert_killed(run: Killed) -> Path:
    assert run.returncode == -9, run.stderr[-3000:]
    assert run.fired, "killed by the fault, not by something else"
    return run.run_dir


@pytest.mark.parametrize("point", list(MATRIX))
def test_killed_run_resumes_as_if_never_killed(
    point: str, killed: dict[str, Future[Killed]], reference: dict[str, Any], resume: Any
) -> None:
    import torch

    from experiments.checkpoints.load import load_checkpoint

    _, resume_step, epochs = MATRIX[point]
    run = killed[point].result()
    run_dir = assert_killed(run)
    last = run_dir / "checkpoints" / "last.ckpt"
    # What the kill left: a loadable last.ckpt at the end of the last epoch whose checkpoint was written.
    assert torch.load(last, weights_only=True)["global_step"] == resume_step
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "running"
    assert [row["epoch"] for row in record["history"]] == epochs
    leftovers = list(run_dir.rglob("*.tmp"))
    if point == "while_last_ckpt_written":
        assert [p.name.startswith(".last.ckpt.") for p in leftovers] == [True], "the write it was killed in"
        assert 0 < leftovers[0].stat().st_size < last.stat().st_size, "killed in the middle of the write"
    else:
        assert leftovers == []

    resumed = resume(run)
    assert resumed.code == 0, resumed.err
    assert list((run.outputs / "runs").iterdir()) == [run_dir], "no new run directory"
    assert summary(run_dir) == reference, "ends exactly as the uninterrupted run"
    assert list(run_dir.rglob("*.tmp")) == [], "temporary files of killed writes removed"
    assert load_checkpoint(last)["global_step"] == LAST
    for written in (last, run_dir / "run.json"):
        assert written.stat().st_mode & 0o777 == 0o644, written


def test_killed_before_the_first_checkpoint_says_so_and_leaves_nothing(
    killed: dict[str, Future[Killed]], resume: Any
) -> None:
    run = killed["setup"].result()
    run_dir = assert_killed(run)
    resumed = resume(run)
    assert resumed.code == 1
    (line,) = resumed.error_lines
    assert "nothing to resume" in line and "start the run again without resume" in line
    assert "is removed" in line and not run_dir.exists(), "a run with nothing to resume is no orphan"


def test_ctrl_c_twice_stops_at_once_marked_interrupted_and_resumes(
    killed: dict[str, Future[Killed]], reference: dict[str, Any], resume: Any
) -> None:
    run = killed["double_sigint"].result()
    assert run.fired and run.returncode == 128 + 2, run.stderr[-3000:]
    (line,) = [line for line in run.stderr.splitlines() if line.startswith("interrupted: ")]
    assert "SIGINT twice: stopped at once" in line and "continue with: " in line and "resume=" in line
    record = json.loads((run.run_dir / "run.json").read_text())
    assert record["status"] == "interrupted" and [row["epoch"] for row in record["history"]] == [0]
    resumed = resume(run)
    assert resumed.code == 0, resumed.err
    assert summary(run.run_dir) == reference


def test_a_run_killed_during_test_and_moved_resumes(
    killed: dict[str, Future[Killed]], reference: dict[str, Any], resume: Any
) -> None:
    """last.ckpt names the best checkpoint by its old path: the resumed run tests the moved one."""
    run = killed["moved"].result()
    old = assert_killed(run)
    moved = Killed(run.outputs.parent / "elsewhere", run.args, run.returncode, run.stderr, run.fired)
    (moved.outputs / "runs").mkdir(parents=True)
    old.rename(moved.outputs / "runs" / old.name)
    resumed = resume(moved)
    assert resumed.code == 0, resumed.err
    assert summary(moved.run_dir) == reference
    assert len([p for p in (moved.run_dir / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt"]) == 1


OTHER_TESTS = {
    "setup": test_killed_before_the_first_checkpoint_says_so_and_leaves_nothing.__name__,
    "double_sigint": test_ctrl_c_twice_stops_at_once_marked_interrupted_and_resumes.__name__,
    "moved": test_a_run_killed_during_test_and_moved_resumes.__name__,
}


def test_reference_covers_every_epoch_and_step(reference: dict[str, Any]) -> None:
    """The matrix compares with the reference: it must itself hold what a run should hold."""
    scalars = reference["scalars"]
    assert reference["status"] == "completed" and [row["epoch"] for row in reference["rows"]] == [0, 1]
    assert [step for step, _ in scalars["train/loss"]] == list(range(LAST))
    epoch_ends = [STEPS_PER_EPOCH * (epoch + 1) for epoch in range(EPOCHS)]
    for tag in ("train/acc", "val/acc", "val/loss", "val/acc_best"):
        assert [step for step, _ in scalars[tag]] == epoch_ends, tag
    assert [step for step, _ in scalars["test/acc"]] == [LAST]
    assert reference["metrics"]["val/acc_best"] is not None


@pytest.mark.parametrize(
    ("strategy", "plugin", "saves_with"),
    [
        ("auto", None, ("AtomicCheckpointIO", None)),
        ("ddp", None, ("AtomicCheckpointIO", None)),  # the strategy saves on rank 0 through it
        ("ddp", "AsyncCheckpointIO", ("AsyncCheckpointIO", "AtomicCheckpointIO")),  # saves in a thread, atomically
        ("auto", "TorchCheckpointIO", ("TorchCheckpointIO", None)),  # the user's choice stands
    ],
)
def test_checkpoints_are_written_atomically_whatever_the_strategy(
    strategy: str, plugin: str | None, saves_with: tuple[str, str | None]
) -> None:
    import lightning as L
    from omegaconf import OmegaConf

    from experiments.checkpoints.io import trainer_plugins

    node = {"strategy": strategy}
    if plugin:  # as `+trainer.plugins=[{_target_:...}]` gives it
        node["plugins"] = [{"_target_": f"lightning.pytorch.plugins.io.{plugin}"}]
    plugins = trainer_plugins(OmegaConf.create(node))
    devices = 2 if strategy == "ddp" else 1
    trainer = L.Trainer(strategy=strategy, devices=devices, accelerator="cpu", logger=False, plugins=plugins)
    io = trainer.strategy.checkpoint_io
    base = getattr(io, "checkpoint_io", None)
    assert (type(io).__name__, base and type(base).__name__) == saves_with
