"""The run directory's owner (experiments.rundir.RunDir) and the table of how a failed run ends
(experiments.lifecycle.failures), without training anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from experiments.errors import CheckpointError, ConfigError, RunInterrupted
from experiments.lifecycle.failures import ENDINGS, Failure, RunDirAfter, classify
from experiments.rundir import COMPLETED, FAILED, INTERRUPTED, RUNNING, RunDir
from experiments.tensorboard import hparams
from tests.conftest import compose_config
from tests.tensorboard_views import read_hparams


def started_run(path: Path, with_events: bool) -> RunDir:
    run = RunDir(path)
    run.checkpoints.mkdir(parents=True)
    run.config.write_text("seed: 1\n")
    run.save_progress(run.new_record({"overrides": ["seed=1"]}))
    if with_events:  # a run that logs to TensorBoard has written its session start
        hparams.write(run.path, [hparams.session_start_summary({"seed": 1})])
    return run


def session_end_status(run: RunDir) -> int | None:
    summaries = read_hparams(run.path)
    end = summaries.get("_hparams_/session_end_info")
    return end.session_end_info.status if end is not None else None


def test_reading_never_writes(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    assert (run.exists(), run.started(), run.status(), run.record(), run.resumable()) == (False, False, None, {}, False)
    assert not run.path.exists()
    run.path.mkdir()
    run.record_file.write_text('{"status": "runn')  # cut short: unreadable, not a crash
    before = run.record_file.read_bytes()
    assert (run.record(), run.status()) == ({}, None)
    assert run.record_file.read_bytes() == before


def test_statuses_and_the_hparams_session_end_change_together(tmp_path: Path) -> None:
    done = started_run(tmp_path / "done", with_events=True)
    assert done.status() == RUNNING and session_end_status(done) is None
    done.complete({**done.record(), "metrics": {"test/acc": 0.9}})
    assert done.status() == COMPLETED and done.record()["metrics"] == {"test/acc": 0.9}
    assert session_end_status(done) == 1  # STATUS_SUCCESS

    failed = started_run(tmp_path / "failed", with_events=True)
    failed.fail("error: it broke", ["seed=1"], tensorboard=True)
    assert failed.status() == FAILED and failed.record()["error"] == "error: it broke"
    assert failed.record()["overrides"] == ["seed=1"]  # the record is kept, not replaced
    assert session_end_status(failed) == 2  # STATUS_FAILURE

    stopped = started_run(tmp_path / "stopped", with_events=True)
    stopped.interrupt("SIGINT at step 3")
    assert stopped.status() == INTERRUPTED
    assert session_end_status(stopped) is None  # left open, for the resumed run to end

    quiet = started_run(tmp_path / "quiet", with_events=False)  # logger=csv or none: no event files appear
    quiet.complete(quiet.record())
    assert quiet.status() == COMPLETED and not quiet.event_files()


def test_progress_never_overwrites_a_status_with_anything_but_running(tmp_path: Path) -> None:
    run = started_run(tmp_path / "run", with_events=False)
    run.save_progress({**run.record(), "status": COMPLETED, "history": [{"epoch": 0}]})
    assert run.status() == RUNNING and run.record()["history"] == [{"epoch": 0}]
    assert run.new_record({"seed": 2})["history"] == [{"epoch": 0}]  # a resumed run continues its history


def test_a_sweep_job_that_failed_before_training_gets_a_record_and_an_hparams_row(tmp_path: Path) -> None:
    job = RunDir(tmp_path / "003_lr-5")
    job.path.mkdir()
    job.fail("model.optimizer.lr=5 ...", ["model.optimizer.lr=5"], tensorboard=True)
    assert job.record() == {
        "overrides": ["model.optimizer.lr=5"],
        "history": [],
        "status": FAILED,
        "error": "model.optimizer.lr=5 ...",
    }
    start = read_hparams(job.path)["_hparams_/session_start_info"].session_start_info
    assert start.hparams["model.optimizer.lr"].number_value == 5
    assert session_end_status(job) == 2

    csv_job = RunDir(tmp_path / "004_lr-6")
    csv_job.path.mkdir()
    csv_job.fail("...", ["model.optimizer.lr=6"], tensorboard=False)
    assert csv_job.status() == FAILED and not csv_job.event_files()


def test_the_newest_resumable_run(tmp_path: Path) -> None:
    def run(where: str, status: str, age: float, checkpoint: bool = True) -> RunDir:
        made = started_run(tmp_path / where, with_events=False)
        made._write({**made.record(), "status": status})
        if checkpoint:
            made.last_checkpoint.write_bytes(b"")
        for file in (made.record_file, made.last_checkpoint):
            if file.exists():
                os.utime(file, (1e9 - age, 1e9 - age))
        return made

    run("runs/older", INTERRUPTED, age=30)
    killed = run("sweeps/2026-11-24_10-31-02.123456/004_lr-0.1", RUNNING, age=20)
    run("runs/completed", COMPLETED, age=0)
    run("runs/failed", FAILED, age=0)
    run("runs/no_checkpoint", INTERRUPTED, age=0, checkpoint=False)
    assert RunDir.newest_resumable(tmp_path) == killed
    assert RunDir.newest_resumable(tmp_path / "nothing") is None


def test_checkpoints_know_their_run_directory(tmp_path: Path) -> None:
    run = started_run(tmp_path / "run", with_events=False)
    assert RunDir.of_checkpoint(run.last_checkpoint) == run
    assert RunDir.of_checkpoint(tmp_path / "loose.ckpt") is None


def test_the_configured_last_checkpoint_is_where_the_run_directory_says(tmp_path: Path) -> None:
    node = OmegaConf.to_container(compose_config().callbacks.last_checkpoint, resolve=False)
    assert isinstance(node, dict) and str(node["dirpath"]).startswith("${paths.output_dir}/")
    written = Path(str(node["dirpath"]).replace("${paths.output_dir}", str(tmp_path))) / f"{node['filename']}.ckpt"
    assert written == RunDir(tmp_path).last_checkpoint


@pytest.mark.parametrize(
    ("exc", "started", "resuming", "multirun", "kind"),
    [
        (RunInterrupted("SIGINT", 2), True, False, True, Failure.INTERRUPTED),
        (ConfigError("lr"), False, True, False, Failure.RESUME_REFUSED),
        (CheckpointError("corrupt"), True, True, True, Failure.RESUME_REFUSED),
        (ZeroDivisionError(), True, True, False, Failure.RUN),
        (ConfigError("lr"), False, False, True, Failure.SWEEP_JOB),
        (OSError(28, "No space left on device"), True, False, False, Failure.RUN),
        (ConfigError("lr"), False, False, False, Failure.NOTHING_STARTED),
    ],
)
def test_every_failure_has_one_row(
    tmp_path: Path, exc: Exception, started: bool, resuming: bool, multirun: bool, kind: Failure
) -> None:
    run = started_run(tmp_path / "run", with_events=False) if started else RunDir(tmp_path / "new")
    assert classify(exc, run, resuming, multirun, side_by_side=False) is kind


def test_the_table_keeps_every_started_run_and_stops_single_runs() -> None:
    assert set(ENDINGS) == set(Failure)
    deleted = {Failure.NOTHING_STARTED, Failure.NOT_STARTED}  # nothing of them ever started
    assert {k for k, e in ENDINGS.items() if e.run_dir is RunDirAfter.DELETED} == deleted
    # The sweep goes on after a failed job, a search after a pruned trial, and a parallel sweep's worker
    # after a Ctrl-C (the launcher ends the sweep once every job has saved).
    goes_on = {Failure.SWEEP_JOB, Failure.PRUNED, Failure.INTERRUPTED_SIDE_BY_SIDE, Failure.NOT_STARTED}
    assert {k for k, e in ENDINGS.items() if e.exit_code is None} == goes_on
