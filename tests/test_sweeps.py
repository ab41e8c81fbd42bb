"""Multirun sweeps end to end on generated data: job directories, the report, TensorBoard HParams,
failed, interrupted, killed and never started jobs, the preset grid from the command line, Optuna (with
diverging trials, and its scatter), launcher configs and DDP inside sweep jobs."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image

from experiments.launch.parallel import claim_gpu
from experiments.sweeps.figures import scatter_figure
from experiments.sweeps.plan import PLAN_FILE, read_plan
from experiments.sweeps.report import write_report
from experiments.sweeps.results import COMPLETED, FAILED, INCOMPLETE, NOT_STARTED, JobResult, collect_jobs
from experiments.tensorboard.hparams import METRICS
from experiments.tensorboard.sweep import REPORT_DIR
from tests.conftest import compose_config
from tests.tensorboard_views import accumulator, hparams_tab

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
# One job after another, in this process: what these tests check of a sweep (its error lines, faults
# injected here, DDP ranks) does not depend on the launcher. tests/test_parallel.py runs the default one.
SEQUENTIAL = "hydra/launcher=basic"


def only_sweep_dir(outputs: Path) -> Path:
    sweeps = list((outputs / "sweeps").iterdir())
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def read_summary(sweep_dir: Path) -> list[dict[str, str]]:
    with (sweep_dir / "summary.csv").open() as f:
        return list(csv.DictReader(f))


def job_overrides(sweep_dir: Path) -> dict[int, list[str]]:
    """Each job directory's overrides as Hydra recorded them, by job number (the name's leading digits)."""
    jobs = [p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()]
    return {int(p.name.split("_")[0]): yaml.safe_load((p / ".hydra" / "overrides.yaml").read_text()) for p in jobs}


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
    runs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    assert runs[-1] == REPORT_DIR, "the sweep's own TensorBoard run sorts after its jobs"
    jobs = runs[:-1]
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
    """`tensorboard --logdir <sweep dir>`: the varied keys and the metrics as columns, one row per job."""
    sweep_dir, _ = grid_sweep
    experiment, rows = hparams_tab(sweep_dir)
    assert {h["name"] for h in experiment["hparamInfos"]} == set(GRID)
    assert [m["name"]["tag"] for m in experiment["metricInfos"]] == list(METRICS)
    seen = set()
    for row in read_summary(sweep_dir):
        (session,) = rows[row["job"]]["sessions"]
        assert session["status"] == "STATUS_SUCCESS"
        hparams = rows[row["job"]]["hparams"]
        seen.add((hparams["data.batch_size"], hparams["model.optimizer.lr"]))
        metrics = {m["name"]["tag"]: m["value"] for m in session["metricValues"]}
        assert metrics["val/acc_best"] == pytest.approx(float(row["val_acc_best"]), abs=1e-4)
        assert metrics["test/acc"] == pytest.approx(float(row["test_acc"]), abs=1e-4)
    assert seen == {(b, lr) for b in GRID["data.batch_size"] for lr in GRID["model.optimizer.lr"]}


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
    result = cli("hydra.mode=MULTIRUN", SEQUENTIAL, f"paths.data_dir={mnist_dir}", *TINY, "model.optimizer.lr=0.1,-1")
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
    # The plan written when the sweep started: a 4th job, which the kill came before, has no directory.
    planned = [["data.batch_size=32"], ["data.batch_size=64"], ["data.batch_size=128", "model.optimizer.lr=0.3"]]
    planned.append(["data.batch_size=256", "model.optimizer.lr=0.3"])
    entries = [{"num": num, "overrides": overrides} for num, overrides in enumerate(planned)]
    (tmp_path / PLAN_FILE).write_text(json.dumps({"kind": "grid", "metric": "val/acc_best", "jobs": entries}))

    jobs = {job.batch_size: job for job in collect_jobs(tmp_path)}
    assert [jobs[size].status for size in (32, 64, 128, 256)] == [COMPLETED, INCOMPLETE, INCOMPLETE, NOT_STARTED]
    assert jobs[64].val_acc_best == 0.5, "an interrupted job reports the best epoch it finished"
    assert jobs[128].lr == 0.3 and "no run.json" in jobs[128].error
    assert jobs[256].lr == 0.3 and jobs[256].num == 3, "a job never started is known from the plan"

    report = write_report(tmp_path)
    assert report.best is not None and report.best.batch_size == 32
    rows = read_summary(tmp_path)
    assert [r["status"] for r in rows] == [COMPLETED, INCOMPLETE, INCOMPLETE, NOT_STARTED]
    assert rows[-1]["overrides"] == "data.batch_size=256 model.optimizer.lr=0.3"
    summary = (tmp_path / "summary.md").read_text()
    assert "4 jobs: 1 completed, 0 failed, 2 incomplete, 1 not started" in summary
    assert "- job 3 `data.batch_size=256` `model.optimizer.lr=0.3`: not started" in summary
    assert (tmp_path / "heatmap.png").is_file() and (tmp_path / "curves.png").is_file()


def test_a_job_reports_its_train_val_gap_at_the_last_epoch(tmp_path: Path) -> None:
    rows = [{"epoch": 0, "train/acc": 0.8, "val/acc": 0.75}, {"epoch": 1, "train/acc": 1.0, "val/acc": 0.9}]
    write_job(tmp_path, "000_seed-1", ["seed=1"], {"status": "completed", "history": rows, "metrics": {}})
    write_job(tmp_path, "001_seed-2", ["seed=2"], {"status": "completed", "history": rows[:1], "metrics": {}})
    write_job(tmp_path, "002_seed-3", ["seed=3"], {"status": "completed", "history": [{"epoch": 0}], "metrics": {}})
    gaps = {job.job: job.gap for job in collect_jobs(tmp_path)}
    assert gaps == {"000_seed-1": pytest.approx(0.1), "001_seed-2": pytest.approx(0.05), "002_seed-3": None}


def test_plain_override_replaces_the_presets_list(cli, mnist_dir: Path, tmp_path: Path) -> None:
    """`experiment=bs_lr_sweep data.batch_size=64,128` runs 2 x 4 jobs, and the plan written at the start
    lists exactly the jobs Hydra runs, in its order. Every job stops at config validation (a bad
    data.val_size): the sweep's shape is under test here, not training."""
    result = cli("experiment=bs_lr_sweep", "data.batch_size=64,128", f"paths.data_dir={mnist_dir}", "data.val_size=-1")
    assert result.code == 1 and result.error_lines[-1].startswith("error: all 8 jobs of the sweep failed"), result.err
    sweep_dir = only_sweep_dir(tmp_path / "outputs")
    started = job_overrides(sweep_dir)
    assert sorted((o[0], o[1]) for o in started.values()) == sorted(
        (f"data.batch_size={size}", f"model.optimizer.lr={lr}") for size in (64, 128) for lr in (0.01, 0.03, 0.1, 0.3)
    )
    plan = read_plan(sweep_dir)
    assert plan is not None and plan.finished
    assert {job.num: job.overrides for job in plan.jobs} == started
    rows = read_summary(sweep_dir)
    assert len(rows) == 8 and all(r["status"] == FAILED and "data.val_size" in r["error"] for r in rows)


def test_preset_grid_takes_plain_overrides_and_a_killed_sweep_reports_every_planned_job(
    run_train, mnist_dir: Path, tmp_path: Path, command
) -> None:
    """`experiment=bs_lr_sweep data.batch_size=64,128`: the command line's list replaces the preset's for
    that key (2 x 4 jobs). The sweep process is SIGKILLed in its first job: the report, rebuilt by
    experiments-compare, lists that job as incomplete and the 7 it never reached as not started,
    with their overrides, from the plan written when the multirun started."""
    result = run_train(
        "experiment=bs_lr_sweep",
        "data.batch_size=64,128",
        SEQUENTIAL,  # the sweep's own process is killed: with the parallel launcher it would be a worker
        f"paths.data_dir={mnist_dir}",
        *TINY,
        "+callbacks.kill._target_=tests.faults.SignalAt",
        "+callbacks.kill.epoch=0",
        "+callbacks.kill.batch=0",
        "+callbacks.kill.signal_name=SIGKILL",
        f"+callbacks.kill.marker={tmp_path / 'killed'}",
    )
    assert result.returncode == -9, result.stderr[-2000:]
    sweep_dir = only_sweep_dir(tmp_path / "outputs")
    plan = read_plan(sweep_dir)
    assert plan is not None and plan.kind == "grid" and not plan.finished
    planned = {job.num: job.overrides for job in plan.jobs}
    grid = [(size, lr) for size in (64, 128) for lr in (0.01, 0.03, 0.1, 0.3)]
    assert [(o[0], o[1]) for o in planned.values()] == [
        (f"data.batch_size={size}", f"model.optimizer.lr={lr}") for size, lr in grid
    ], "Hydra's order: the preset's keys first, the command line's list for data.batch_size"
    started = job_overrides(sweep_dir)
    assert sorted(started) == [0] and started[0] == planned[0], "the plan is what Hydra ran"

    compare = command("compare", f"sweep_dir={sweep_dir}")
    assert compare.code == 0, compare.err
    assert "Sweep: 8 jobs, 0 completed, 1 failed or incomplete, 7 not started" in compare.out
    assert "Not started: job 1: data.batch_size=64 model.optimizer.lr=0.03" in compare.out
    rows = {int(r["job"].split("_")[0]): r for r in read_summary(sweep_dir)}
    assert len(rows) == 8
    assert rows[0]["status"] == INCOMPLETE
    assert [rows[n]["status"] for n in range(1, 8)] == [NOT_STARTED] * 7
    assert all(rows[n]["overrides"] == " ".join(planned[n]) for n in range(1, 8))
    assert {(int(rows[n]["batch_size"]), float(rows[n]["lr"])) for n in range(8)} == set(grid)


def load_study(sweep_dir: Path, name: str = "mnist_mlp") -> Any:
    import optuna

    from experiments.search.study import STORAGE_FILE, open_storage

    return optuna.load_study(study_name=name, storage=open_storage(str(sweep_dir / STORAGE_FILE)))


def test_optuna_study_survives_diverging_trials(cli, mnist_dir: Path, tmp_path: Path) -> None:
    """Trials that diverge (NaN weights on cue, a search dimension here) are FAIL trials in Optuna and
    failed rows in the report; the study runs all its trials, stored in the sweep directory's journal file,
    and optimises what the train function returns."""
    import optuna

    result = cli(
        SEQUENTIAL,
        "hydra.mode=MULTIRUN",  # the preset says so too, but Hydra checks the sweep values before reading it
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=4",
        f"paths.data_dir={mnist_dir}",
        *TINY,
        "+callbacks.poison._target_=tests.faults.PoisonWeightsAt",
        "+callbacks.poison.batch=1",
        "+callbacks.poison.epoch=choice(0,9)",  # epoch 9 never comes: those trials train normally
    )
    assert result.code == 0, result.err
    sweep_dir = only_sweep_dir(tmp_path / "outputs")
    trials = load_study(sweep_dir).trials
    poisoned = {t.number for t in trials if t.params["+callbacks.poison.epoch"] == 0}
    assert len(trials) == 4 and 0 < len(poisoned) < 4, "seed 42 draws both kinds of trial"
    assert {t.number for t in trials if t.state == optuna.trial.TrialState.FAIL} == poisoned
    rows = {int(r["job"].split("_")[0]): r for r in read_summary(sweep_dir)}
    assert {n for n, r in rows.items() if r["status"] == FAILED} == poisoned
    assert all(rows[n]["status"] == COMPLETED for n in set(range(4)) - poisoned)
    assert all("training diverged" in rows[n]["error"] for n in poisoned)
    for trial in trials:  # each job reported its val/acc per epoch to its own trial, from its own run
        if trial.number not in poisoned:
            history = json.loads(next(sweep_dir.glob(f"{trial.number:03d}_*/run.json")).read_text())["history"]
            assert trial.intermediate_values == pytest.approx({0: history[0]["val/acc"]}, abs=1e-6)
    optuna_result = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    best = max(float(r["val_acc_best"]) for r in rows.values() if r["status"] == COMPLETED)
    assert optuna_result["best_value"] == pytest.approx(best, abs=1e-4)
    assert set(optuna_result["best_params"]) == {
        "model.optimizer.lr",
        "data.batch_size",
        "model.hidden_sizes",
        "model.dropout",
        "+callbacks.poison.epoch",
    }
    plan = read_plan(sweep_dir)
    assert plan is not None and plan.kind == "search" and plan.finished and len(plan.jobs) == 4
    assert (sweep_dir / "scatter.png").is_file() and not (sweep_dir / "heatmap.png").exists()
    assert "Sweep: 4 jobs" in result.out and "scatter.png" in (sweep_dir / "summary.md").read_text()


def test_parallel_trials_report_to_their_trials_and_hopeless_ones_are_pruned(
    cli, mnist_dir: Path, tmp_path: Path
) -> None:
    """Trials run two at a time in joblib's worker processes; each job reports its val/acc per epoch to its
    own trial through the journal file, and the median pruner stops the ones far below the completed
    trials (lr 1e-6 learns nothing): PRUNED in Optuna, `pruned` in run.json and in the report."""
    import optuna

    result = cli(
        "hydra.mode=MULTIRUN",
        "hparams_search=optuna",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_trials=8",
        "model.optimizer.lr=choice(0.1,0.000001)",
        "model/scheduler=none",
        f"paths.data_dir={mnist_dir}",
        *TINY,
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=4",
    )
    assert result.code == 0, result.err
    sweep_dir = only_sweep_dir(tmp_path / "outputs")
    trials = load_study(sweep_dir).trials
    assert len(trials) == 8
    pruned = {t.number for t in trials if t.state == optuna.trial.TrialState.PRUNED}
    assert pruned, "median pruning after 5 completed trials stops some lr=1e-6 trials"
    assert all(trials[n].params["model.optimizer.lr"] == 1e-6 for n in pruned)
    for trial in trials:  # every job's per-epoch reports arrived, from its worker process
        run = json.loads(next(sweep_dir.glob(f"{trial.number:03d}_*/run.json")).read_text())
        assert run["status"] == ("pruned" if trial.number in pruned else "completed")
        reported = {row["epoch"]: row["val/acc"] for row in run["history"]}
        assert trial.intermediate_values == pytest.approx(reported, abs=1e-6)
    rows = {int(r["job"].split("_")[0]): r for r in read_summary(sweep_dir)}
    assert {n for n, r in rows.items() if r["status"] == "pruned"} == pruned
    assert f"{len(pruned)} pruned" in result.out
    assert len({t.datetime_start for t in trials[:2]}) == 2 and trials[1].datetime_start < trials[0].datetime_complete


def test_a_search_without_a_completed_trial_is_one_error_after_its_report(cli, mnist_dir: Path, tmp_path: Path) -> None:
    """Every trial diverges: the report lists them as failed, then one error line and exit status 1 (it
    used to end in a traceback, `ValueError: No trials are completed yet.`, with no report)."""
    result = cli(
        "hydra.mode=MULTIRUN",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=2",
        f"paths.data_dir={mnist_dir}",
        *TINY,
        "+callbacks.poison._target_=tests.faults.PoisonWeightsAt",
        "+callbacks.poison.batch=1",
        "+callbacks.poison.epoch=0",
    )
    assert result.code == 1 and "Traceback" not in result.err, result.err
    verdict = [line for line in result.err.splitlines() if line.startswith("error: no trial")]
    assert len(verdict) == 1 and "(2 fail)" in verdict[0] and "summary.md" in verdict[0], result.err
    rows = read_summary(only_sweep_dir(tmp_path / "outputs"))
    assert len(rows) == 2 and all(r["status"] == FAILED for r in rows)
    assert not (only_sweep_dir(tmp_path / "outputs") / "optimization_results.yaml").exists()


def test_a_stopped_search_continues_from_its_storage(cli, mnist_dir: Path, tmp_path: Path) -> None:
    """The same command with hydra.sweep.dir=<its sweep dir> continues the study: a trial left RUNNING by a
    killed search counts as failed, and the new trials take the next numbers (and job directories)."""
    import optuna

    args = ["hydra.mode=MULTIRUN", "hparams_search=optuna", f"paths.data_dir={mnist_dir}", *TINY]
    first = cli(*args, "hydra.sweeper.n_trials=2")
    assert first.code == 0, first.err
    sweep_dir = only_sweep_dir(tmp_path / "outputs")
    assert f"hydra.sweep.dir=outputs/sweeps/{sweep_dir.name}" in first.out, "the line that says how to continue"
    study = load_study(sweep_dir)
    killed = study.ask()  # what a search killed while trial 2 ran leaves behind
    assert killed.number == 2
    again = cli(*args, "hydra.sweeper.n_trials=4", f"hydra.sweep.dir={sweep_dir}")
    assert again.code == 0, again.err
    states = [t.state for t in load_study(sweep_dir).trials]
    complete, fail = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL
    assert states == [complete, complete, fail, complete]
    assert "3 of 4 trials done" in again.out
    assert sorted(int(p.name[:3]) for p in sweep_dir.glob("0*_*") if p.is_dir()) == [0, 1, 3]


def test_scatter_of_a_search_shows_every_trial() -> None:
    """lr on a log axis against the optimised metric, one point per trial with a value, coloured by batch
    size; failed trials as 'x' along the bottom; trials not started counted in the title."""
    from matplotlib.lines import Line2D

    def trial(num: int, status: str, size: int, lr: float | None, acc: float | None = None) -> JobResult:
        return JobResult(f"{num}_trial", num, status, batch_size=size, lr=lr, val_acc_best=acc)

    jobs = [
        trial(0, COMPLETED, 32, 0.0123, 0.97),
        trial(1, COMPLETED, 64, 0.0456, 0.95),
        trial(2, COMPLETED, 32, 0.211, 0.11),
        trial(3, FAILED, 64, 0.38),
        trial(4, INCOMPLETE, 128, 0.07, 0.9),
        trial(5, NOT_STARTED, 0, None),
    ]
    ax = scatter_figure(jobs).axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
    assert "learning rate" in ax.get_xlabel() and "val/acc_best" in ax.get_ylabel()
    assert "1 not started" in ax.get_title() and "1 failed" in ax.get_title()
    points = sorted((float(x), float(y)) for c in ax.collections for x, y in c.get_offsets())
    assert [x for x, _ in points] == pytest.approx([0.0123, 0.0456, 0.07, 0.211])
    assert [y for _, y in points] == pytest.approx([97.0, 95.0, 90.0, 11.0]), "accuracy in %, per trial"
    failed = [line for line in ax.get_lines() if line.get_label() == "failed"]
    assert len(failed) == 1 and failed[0].get_marker() == "x" and list(failed[0].get_xdata()) == [0.38]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["batch size 32", "batch size 64", "batch size 128", "hollow: interrupted (best epoch)", "failed"]
    assert isinstance(ax.get_legend().legend_handles[-1], Line2D)


def test_search_and_launcher_configs_compose() -> None:
    optuna = compose_config(["hparams_search=optuna"]).hydra
    assert optuna.sweeper._target_ == "hydra_plugins.experiments_optuna.optuna_sweeper.OptunaSweeper"
    assert optuna.sweeper.direction == "maximize" and optuna.sweeper.storage is None
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
        SEQUENTIAL,  # DDP's ranks are processes of their own: the parallel launcher refuses them
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
        assert len(accumulator(job_dir).Tensors("_hparams_/session_start_info")) == 1, "rank 0 only"
