"""Run directory names typed back unquoted, `resume=<dir>` and `resume=last` for runs and sweep jobs, the
resume command as the run was started, train.log, and a console without warnings or tips."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import sys
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from experiments import console
from experiments.checkpoints import resume
from experiments.config.names import ITEM_SEP, MAX_NAME_BYTES, job_subdir, run_suffix
from experiments.rundir import RunDir
from tests.conftest import FAST_RUN, compose_config

PARSER = OverridesParser.create()
HEADER = re.compile(r"^Run: (?P<dir>.+)  \(resume if interrupted: (?P<command>.+)\)$", re.MULTILINE)


def hydra_value(token: str) -> str:
    """What Hydra makes of one command-line token `key=value`."""
    return str(PARSER.parse_override(token).value())


@pytest.mark.parametrize(
    ("run_name", "overrides", "suffix"),
    [
        ("", ["data.batch_size=32", "model.optimizer.lr=0.1"], "_batch_size-32_lr-0.1"),
        ("", ["model.hidden_sizes=[256,128]"], "_hidden_sizes-256x128"),
        ("", ["model.optimizer.lr=0.02038415671047589"], "_lr-0.02038"),
        ("", ["model/optimizer=adamw", "+trainer.foo=1"], "_optimizer-adamw_foo-1"),
        ("", ["data.dataset=x/y", "model.optimizer.lr=-1"], "_dataset-x-y_lr--1"),
        ("", ["run_label='a b=c, d'"], "_run_label-a-b-cxd"),
        ("mine", ["data.batch_size=32"], "_mine"),
        ("", [], ""),
    ],
)
def test_names_go_back_through_the_shell_and_hydra_unquoted(run_name: str, overrides: list[str], suffix: str) -> None:
    assert run_suffix(run_name, ITEM_SEP.join(overrides)) == suffix
    path = f"outputs/runs/2026-11-24_10-31-02.123456{suffix}"
    (token,) = shlex.split(f"resume={path}")
    assert hydra_value(token) == path


def test_hydra_names_run_directories_and_sweep_jobs() -> None:
    cfg = compose_config(["data.batch_size=32", "model.optimizer.lr=0.1", "model.hidden_sizes=[256,128]"])
    name = Path(cfg.hydra.run.dir).name
    assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.\d{6}_batch_size-32_hidden_sizes-256x128_lr-0\.1", name), name
    sweep_job = ITEM_SEP.join(["data.batch_size=64", "model.optimizer.lr=0.03"])
    assert job_subdir(3, "", sweep_job) == "003_batch_size-64_lr-0.03"
    assert job_subdir(12, "mine", "data.batch_size=64") == "012_mine"
    many = ITEM_SEP.join(f"model.layer{i}.width={i * 1000}" for i in range(30))
    assert run_suffix("", many) == "".join(f"_width-{i * 1000}" for i in range(7)), "whole overrides, as many as fit"


@pytest.mark.parametrize("run_name", ["ü" * 200, "漢字" * 100, "a" * 79 + "ü"])
def test_long_names_are_cut_by_bytes_never_inside_a_character(run_name: str) -> None:
    name = run_suffix(run_name, "")[1:]
    assert 0 < len(name.encode()) <= MAX_NAME_BYTES and run_name.startswith(name)


def fake_run(log_dir: Path, where: str, status: str, age: float, checkpoint: bool = True) -> Path:
    run_dir = log_dir / where
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("seed: 1\n")
    (run_dir / "run.json").write_text(json.dumps({"status": status}))
    files = [run_dir / "run.json"]
    if checkpoint:
        (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
        files.append(run_dir / "checkpoints" / "last.ckpt")
    for file in files:
        os.utime(file, (1e9 - age, 1e9 - age))
    return run_dir


def test_resume_last_picks_the_newest_interrupted_run_or_job(tmp_path: Path) -> None:
    fake_run(tmp_path, "runs/older", "interrupted", age=30)
    killed = fake_run(tmp_path, "sweeps/2026-11-24_10-31-02.123456/004_lr-0.1", "running", age=20)
    fake_run(tmp_path, "runs/completed", "completed", age=0)
    fake_run(tmp_path, "runs/failed", "failed", age=0)
    fake_run(tmp_path, "runs/no_checkpoint", "interrupted", age=0, checkpoint=False)
    assert RunDir.newest_resumable(tmp_path) == RunDir(killed)
    assert resume.hydra_run_dir("last", tmp_path, "new") == str(killed)
    assert resume.hydra_run_dir("last", tmp_path / "nothing", "new") == "new"
    assert resume.hydra_run_dir(None, tmp_path, "new") == "new"


def test_the_resume_command_is_typed_as_the_run_was_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for program in ("python", "experiments-train", "tensorboard"):
        (bin_dir / program).touch(mode=0o755)
    run_dir = tmp_path / "outputs" / "runs" / "2026-11-24_10-31-02.123456_batch_size-32"
    resume_arg = "resume=outputs/runs/2026-11-24_10-31-02.123456_batch_size-32"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    monkeypatch.setattr(sys, "argv", ["train.py", "data.batch_size=32"])
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    assert console.resume_command(run_dir) == f".venv/bin/python train.py {resume_arg}"
    assert console.tool("tensorboard") == ".venv/bin/tensorboard"
    monkeypatch.setattr(sys, "executable", "/opt/python/bin/python3")
    assert console.resume_command(run_dir) == f"/opt/python/bin/python3 train.py {resume_arg}"

    monkeypatch.setattr(sys, "argv", [str(bin_dir / "experiments-train"), "data.batch_size=32"])
    assert console.resume_command(run_dir) == f".venv/bin/experiments-train {resume_arg}"
    monkeypatch.setenv("PATH", str(bin_dir))
    assert console.resume_command(run_dir) == f"experiments-train {resume_arg}"
    assert console.tool("tensorboard") == "tensorboard"

    # Older names (`=` and `,`) and names with letters Hydra's grammar reserves for quoted strings: quoted,
    # and the shell and Hydra give back the path.
    for name in ("2026-11-24_10-31-02.123456_lr=0.1,batch_size=32", "2026_üü", 'it\'s "odd" \\'):
        *_, token = shlex.split(console.resume_command(run_dir.parent / name))
        assert hydra_value(token) == f"outputs/runs/{name}"
    assert console.resume_command(Path("/elsewhere/runs/x")).endswith(" resume=/elsewhere/runs/x")


# --- in-process runs on generated data ---

TINY_LIMITS = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "test_figures=0"]
TINY = [
    *[o for o in FAST_RUN if o.split("=")[0] not in {t.split("=")[0] for t in TINY_LIMITS}],
    *TINY_LIMITS,
    "trainer.limit_test_batches=1",
]


def set_status(run_dir: Path, status: str) -> None:
    """As a hard kill (`running`) or Ctrl-C (`interrupted`) leaves run.json."""
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**record, "status": status}))


def test_sweep_job_resumes_as_printed_as_resume_last_and_by_its_old_quoted_name(
    cli, mnist_dir: Path, tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs"
    sweep = cli("hydra.mode=MULTIRUN", "hydra/launcher=basic", f"paths.data_dir={mnist_dir}", *TINY)
    assert sweep.code == 0, sweep.err
    (job,) = (p for p in next((outputs / "sweeps").iterdir()).iterdir() if (p / "run.json").is_file())
    assert re.fullmatch(r"000_[A-Za-z0-9._+-]+", job.name) and "_batch_size-32_" in job.name, job.name
    header = HEADER.search(sweep.out)
    assert header and header["dir"] == str(job.relative_to(tmp_path))
    python, script, token = shlex.split(header["command"])
    assert (python, script, token) == (sys.executable, "train.py", f"resume={header['dir']}")

    def resumed(*argv: str) -> None:
        result = cli(*argv)
        assert result.code == 0, result.err
        assert json.loads((job / "run.json").read_text())["status"] == "completed"
        assert not (outputs / "runs").exists() and len(list(job.parent.iterdir())) == len(before)

    before = list(job.parent.iterdir())
    set_status(job, "running")
    resumed(token)  # one argv token, as the shell passes the printed command's last word
    set_status(job, "interrupted")
    resumed("resume=last")

    # A run directory named as before names were plain, with `=` and `,`: resumed when quoted.
    job = outputs / "sweeps" / "2026-11-24_10-31-02.123456" / "3_batch_size=32,lr=0.05"
    old = cli(f"paths.data_dir={mnist_dir}", *TINY, f"hydra.run.dir='{job}'")
    assert old.code == 0, old.err
    before = list(job.parent.iterdir())
    set_status(job, "running")
    resumed(f"resume='{job}'")

    none_left = cli("resume=last")
    assert none_left.code == 1 and len(none_left.error_lines) == 1
    assert none_left.error_lines[0].startswith("error: resume=last: no interrupted run under ")
    assert "start one with: " in none_left.error_lines[0]
    assert not (outputs / "runs").exists() or not any((outputs / "runs").iterdir()), "nothing half-written"


def capture_lightning_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning's own console handler (made when Lightning was first imported, before this test) writes to
    the captured stderr, as it writes to the terminal in a real run. Called in the test itself: pytest
    captures the setup of a test into another stream than its call."""
    for handler in logging.getLogger("lightning").handlers:
        if isinstance(handler, logging.StreamHandler):
            monkeypatch.setattr(handler, "stream", sys.stderr)


def test_a_run_prints_no_warnings_or_tips_and_keeps_its_lines_in_train_log(
    cli, mnist_dir: Path, tmp_path: Path, recwarn: pytest.WarningsRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture_lightning_console(monkeypatch)
    # Default log_every_n_steps (50) over 4 batches an epoch: Lightning's needless warning would come up.
    run = [o for o in FAST_RUN if not o.startswith("trainer.log_every_n_steps")]
    result = cli(f"paths.data_dir={mnist_dir}", *run, f"run_name='{'ü' * 200}'")  # Hydra reads non-ASCII quoted
    assert result.code == 0, result.err
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    assert len(run_dir.name.encode()) < 255 and run_dir.name.endswith("_" + "ü" * (MAX_NAME_BYTES // 2))

    shown = [w for w in recwarn if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    assert shown == [], [str(w.message) for w in shown]
    console = result.out + result.err
    assert not re.search(r"Warning|Tip:|\.py:\d+: ", console), console  # also Lightning's `file.py:12: message`
    assert console.count("GPU available") == 1, "each line once on the console"
    header = HEADER.search(result.out)
    assert header and header["dir"] == str(run_dir.relative_to(tmp_path))
    assert hydra_value(shlex.split(header["command"])[-1]) == header["dir"], "non-ASCII names are quoted"

    log = (run_dir / "train.log").read_text()
    for line in (header[0], "GPU available", "Restoring states from the checkpoint", "Test accuracy:", "TensorBoard:"):
        assert line in log, line
    assert "Tip:" not in log


# --- one writer per run ---

HOLD_LOCK = (
    "import sys, time; from experiments.rundir import RunDir; "
    "RunDir(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)"
)


def stopped_run(cli, mnist_dir: Path, tmp_path: Path) -> Path:
    """A quick run, left as `kill -9` leaves one (run.json `running`)."""
    result = cli(f"paths.data_dir={mnist_dir}", *TINY)
    assert result.code == 0, result.err
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    set_status(run_dir, "running")
    RunDir(run_dir).release()  # as if the run had been another process, now gone
    return run_dir


def test_a_live_run_is_never_resumed_and_resume_last_skips_it(cli, mnist_dir: Path, tmp_path: Path) -> None:
    import subprocess

    run_dir = stopped_run(cli, mnist_dir, tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        before = sorted((p.name, p.stat().st_mtime_ns) for p in run_dir.rglob("*"))
        refused = cli(f"resume={run_dir}", f"paths.data_dir={mnist_dir}")
        assert refused.code == 1 and len(refused.error_lines) == 1, refused.err
        assert f"still training (process {holder.pid} holds" in refused.error_lines[0]
        assert sorted((p.name, p.stat().st_mtime_ns) for p in run_dir.rglob("*")) == before, "nothing written"
        skipped = cli("resume=last", f"paths.data_dir={mnist_dir}")
        assert skipped.code == 1 and "no live process training it" in skipped.error_lines[0]
    finally:
        holder.kill()
        holder.wait()
    assert cli(f"resume={run_dir}", f"paths.data_dir={mnist_dir}").code == 0, "resumable once its writer is gone"


def test_two_resumes_started_together_one_wins(cli, mnist_dir: Path, tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import REPO_ROOT

    run_dir = stopped_run(cli, mnist_dir, tmp_path)
    command = [sys.executable, str(REPO_ROOT / "train.py"), f"resume={run_dir}", f"paths.data_dir={mnist_dir}"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HYDRA_FULL_ERROR": "0"}
    both = [subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = sorted((p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in both)
    (won, _), (lost, err) = results
    assert (won, lost) == (0, 1), results
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    # Refused by the lock while the winner trains, or (on a slow machine) as completed once it is done.
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "still training (process" in lines[0] or "already completed" in lines[0], lines
    assert len(list((run_dir / ".hydra").glob("resume-*"))) == 1, "the refused one wrote nothing into the run"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
