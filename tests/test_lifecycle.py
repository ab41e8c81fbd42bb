"""Run lifecycle: resume after SIGTERM, stop on NaN, and evaluate / predict / doctor on a real run."""

from __future__ import annotations

import csv
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2

from tests.conftest import FAST_RUN, REPO_ROOT, CliResult, train_in_process
from tests.tensorboard_views import read_hparams
from tests.test_resume import HEADER

# Three epochs of 16 batches (500 images in batches of 32), one optimizer step each: a signal at batch 3
# of epoch 1 lands mid-epoch, after the first end-of-epoch checkpoint.
STEPS_PER_EPOCH = 16
RUN = [
    *[o for o in FAST_RUN if not o.startswith(("trainer.max_epochs", "trainer.limit_train_batches"))],
    "trainer.max_epochs=3",
    "run_name=interrupted",
]


def fault(tmp_path: Path, signal_name: str) -> list[str]:
    node = "+callbacks.fault"
    return [
        f"{node}._target_=tests.faults.SignalAt",
        f"{node}.epoch=1",
        f"{node}.batch=3",
        f"{node}.signal_name={signal_name}",
        f"{node}.marker={tmp_path / 'fired'}",
    ]


def steps_by_tag(run_dir: Path) -> dict[str, list[int]]:
    # As TensorBoard reads it: all event files in name order, steps that go back taken for a restart.
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [e.step for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_sigterm_stops_cleanly_and_resumes_in_place(run_train, cli, mnist_dir: Path, tmp_path: Path) -> None:
    """SIGTERM (as a scheduler sends it): a clean stop with a checkpoint at that step. (SIGKILL at every
    point of a run: tests/test_kills.py.)"""
    args = [f"paths.data_dir={mnist_dir}", *RUN, *fault(tmp_path, "SIGTERM")]
    # tests.faults from the repository root, and the package from where PYTHONPATH had it (a worktree's src/).
    killed = run_train(*args, env={"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])})
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    # Printed when the run started, so a SIGKILLed user has it too: the command to paste, as it was run.
    header = HEADER.search(killed.stdout)
    assert header and header["dir"] == str(run_dir.relative_to(tmp_path)), killed.stdout[-2000:]
    *program, resume_token = shlex.split(header["command"])
    assert program == [sys.executable, str(REPO_ROOT / "train.py")]
    assert resume_token == f"resume={header['dir']}", "typed without quotes"
    record = json.loads((run_dir / "run.json").read_text())
    # The fault callback signals at the end of batch 3, after the run's own check for that batch (the
    # run's callbacks come first): the next batch finishes, then the run stops after 5 steps of epoch 1.
    assert killed.returncode == 128 + 15, killed.stderr[-2000:]
    assert killed.stderr.strip().splitlines()[-1].startswith(f"interrupted: SIGTERM at step {STEPS_PER_EPOCH + 5}")
    assert killed.stderr.strip().endswith(f"continue with: {header['command']}")
    assert record["status"] == "interrupted"
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == STEPS_PER_EPOCH + 5
    # The best val accuracy so far travels in the checkpoint, so "best" keeps its meaning across the resume.
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert float(saved["val_acc_best.max_value"]) == pytest.approx(record["history"][0]["val/acc_best"])

    # The same command with resume= added: accepted, since it changes nothing the run learns.
    resumed = cli(*args, resume_token)
    assert resumed.code == 0, resumed.err
    assert list((tmp_path / "outputs" / "runs").iterdir()) == [run_dir], "no new run directory"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed"
    assert [h["epoch"] for h in record["history"]] == [0, 1, 2]
    best = [h["val/acc_best"] for h in record["history"]]
    assert best == [max(h["val/acc"] for h in record["history"][: i + 1]) for i in range(3)], "best survives resume"
    assert record["overrides"] == [f"paths.log_dir={tmp_path / 'outputs'}", *args], "the original overrides"
    assert (run_dir / ".hydra" / "overrides.yaml").read_text().count("resume=") == 0
    assert len(list((run_dir / ".hydra").glob("resume-*/overrides.yaml"))) == 1

    steps = steps_by_tag(run_dir)  # every event file of the run directory, old and new
    total = 3 * STEPS_PER_EPOCH
    assert steps["train/loss"] == list(range(total)), "every optimizer step once, none twice"
    epoch_ends = [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH, total]
    for tag in ("val/acc", "val/loss", "train/acc"):
        assert steps[tag] == epoch_ends, tag
    assert steps["test/acc"] == [total]
    assert len(steps["train/lr"]) == len(set(steps["train/lr"]))
    # HParams keeps a run directory's first session end: the interrupted run wrote none, the resumed one did.
    assert read_hparams(run_dir)["_hparams_/session_end_info"].session_end_info.status == api_pb2.STATUS_SUCCESS


def test_resume_refuses_a_changed_config_and_a_completed_run(cli, mnist_dir: Path, tmp_path: Path) -> None:
    finished = cli(f"paths.data_dir={mnist_dir}", *FAST_RUN, "run_name=done", "logger=none")
    assert finished.code == 0, finished.err
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    before = sorted(p.name for p in run_dir.rglob("*"))

    changed = cli(f"paths.data_dir={mnist_dir}", f"resume={run_dir}", "model.optimizer.lr=0.5")
    assert changed.code == 1 and len(changed.error_lines) == 1
    assert "model.optimizer.lr=0.5: a resumed run keeps its saved config" in changed.error_lines[0]
    done = cli(f"paths.data_dir={mnist_dir}", f"resume={run_dir}")
    assert done.code == 1 and "the run already completed" in done.error_lines[0]
    # Refused resumes leave the run as it was (only Hydra's note of the attempt in .hydra/resume-*).
    after = sorted(p.name for p in run_dir.rglob("*") if "resume-" not in str(p.relative_to(run_dir)))
    assert after == before


def test_nan_loss_stops_with_step_epoch_lr_and_keeps_last_good_checkpoint(cli, mnist_dir: Path, tmp_path: Path) -> None:
    poison = ["+callbacks.poison._target_=tests.faults.PoisonWeightsAt", "+callbacks.poison.epoch=1"]
    result = cli(f"paths.data_dir={mnist_dir}", *RUN, *poison, "+callbacks.poison.batch=2", "logger=none")
    assert result.code == 1
    (line,) = result.error_lines
    # Epoch 1 batch 2 is optimizer step 18 (0-based): its loss is checked as soon as it is taken.
    assert line.startswith("error: training diverged: train/loss=nan by step 19 (epoch 1, lr ")
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    assert f"last good checkpoint: {run_dir / 'checkpoints' / 'last.ckpt'}" in line
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and "diverged" in record["error"]
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == STEPS_PER_EPOCH
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())


# --- evaluate, predict, doctor on one finished run ---


@pytest.fixture(scope="module")
def finished_run(mnist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short in-process training run (the checkpoint evaluate and predict read)."""
    outputs = tmp_path_factory.mktemp("lifecycle") / "outputs"
    train_in_process(f"paths.log_dir={outputs}", f"paths.data_dir={mnist_dir}", *FAST_RUN, "logger=none")
    (run_dir,) = (outputs / "runs").iterdir()
    return run_dir


def succeeded(result: CliResult) -> str:
    assert result.code == 0, result.err
    return result.out


def test_evaluate_reproduces_the_runs_test_metrics(finished_run: Path, tmp_path: Path, command) -> None:
    out = succeeded(command("evaluate", f"ckpt_path={finished_run}", f"output={tmp_path / 'metrics.json'}"))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    run_metrics = json.loads((finished_run / "run.json").read_text())["metrics"]
    # The run tested its best checkpoint on the same test set: evaluate must agree.
    assert metrics["accuracy"] == pytest.approx(run_metrics["test/acc"], abs=1e-6)
    assert metrics["loss"] == pytest.approx(run_metrics["test/loss"], rel=1e-4)
    assert metrics["images"] == sum(c["total"] for c in metrics["per_class"]) == 200
    assert sum(c["correct"] for c in metrics["per_class"]) == round(metrics["accuracy"] * 200)
    assert len(metrics["per_class"]) == 10
    assert f"Test accuracy: {metrics['accuracy']:.2%}" in out and "Per-class accuracy:" in out


def test_predict_reads_images_of_any_polarity_and_writes_csv(
    finished_run: Path, mnist_dir: Path, tmp_path: Path, command
) -> None:
    from experiments.checkpoints.load import find_checkpoint, model_from_checkpoint
    from experiments.data.datamodule import MNISTDataModule

    data = MNISTDataModule(data_dir=str(mnist_dir), val_size=100)
    data.setup()
    images = data.splits["test"][0][:6].reshape(-1, 28, 28)
    pixels = ((images * 0.3081 + 0.1307).clamp(0, 1) * 255).round().byte().numpy()
    folder = tmp_path / "digits"
    folder.mkdir()
    for i, image in enumerate(pixels):  # half as MNIST stores them, half dark ink on white paper
        Image.fromarray(image if i % 2 else 255 - image).save(folder / f"{i}.png")
    model = model_from_checkpoint(find_checkpoint(finished_run))
    expected = model(images.flatten(1)).softmax(-1)

    out = succeeded(
        command("predict", f"ckpt_path={finished_run}", f"inputs={folder}", "top_k=2", f"csv={tmp_path / 'p.csv'}")
    )
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert [Path(r["path"]).name for r in rows] == [f"{i}.png" for i in range(6)]
    for row, probs in zip(rows, expected, strict=True):
        assert int(row["prediction"]) == int(probs.argmax())
        assert float(row["probability"]) == pytest.approx(float(probs.max()), abs=1e-3)
        assert float(row["probability_top2"]) <= float(row["probability"])
    assert out.count("%)") == 12


def test_large_photo_style_image_becomes_an_mnist_digit(tmp_path: Path) -> None:
    """Any size, dark ink on light paper -> 28x28, light on dark, digit in a 20x20 box, centred by mass."""
    from experiments.commands.predict import load_image

    canvas = np.full((300, 200, 3), 235, dtype=np.uint8)
    canvas[40:260, 120:150] = 20  # a tall dark stroke right of centre: a "1"
    Image.fromarray(canvas).save(tmp_path / "one.jpg")
    digit = load_image(tmp_path / "one.jpg")
    assert digit.shape == (28, 28)
    assert digit[0].max() < 0.1 and digit.max() > 0.9, "background dark, ink light"
    rows, _ = np.nonzero(digit > 0.5)
    assert rows.max() - rows.min() + 1 in (19, 20, 21), "the longer side scaled to 20 pixels"
    ys, xs = np.indices(digit.shape)
    assert abs((ys * digit).sum() / digit.sum() - 13.5) < 1 and abs((xs * digit).sum() / digit.sum() - 13.5) < 1


def test_doctor_reports_versions_accelerator_and_data(mnist_dir: Path, command) -> None:
    import lightning

    from experiments.commands.doctor import auto_accelerator

    out = succeeded(command("doctor", f"data_dir={mnist_dir}"))
    assert f"torch:       {torch.__version__}" in out
    assert f"Lightning:   {lightning.__version__}" in out
    assert f"trainer.accelerator=auto picks: {auto_accelerator()}" in out
    assert f"found in {mnist_dir / 'MNIST' / 'raw'}" in out
    for label in ("CUDA:", "cuDNN:", "MPS:", "Hydra:", "GPUs:", "fashion_mnist:"):
        assert label in out



@pytest.mark.parametrize(
    ("version", "verdict"),
    [
        ("2.6.2", "COMPROMISED"),
        ("2.6.3", "COMPROMISED"),
        ("2.6.5", "vulnerable"),
        ("2.5.0", "vulnerable"),
        ("2.6.6", None),
    ],
)
def test_doctor_names_a_compromised_or_vulnerable_lightning(
    version: str, verdict: str | None, mnist_dir: Path, command, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The malware releases (GHSA-w37p-236h-pfx3) and the ones before the load_from_checkpoint fix are named,
    with the fix; a safe one gets no warning."""
    from experiments.commands import doctor

    real = doctor.installed_version
    monkeypatch.setattr(doctor, "installed_version", lambda name: version if name == "lightning" else real(name))
    out = succeeded(command("doctor", f"data_dir={mnist_dir}"))
    warnings = [line for line in out.splitlines() if "WARNING" in line]
    if verdict is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and f"lightning {version} is" in warnings[0] and verdict in warnings[0]
        assert "lightning>=2.6.6" in warnings[0]


COMMAND_KEYS = {
    "evaluate": ["ckpt_path", "which", "data_dir", "batch_size", "device", "output"],
    "predict": ["ckpt_path", "which", "inputs", "top_k", "csv", "invert", "device"],
    "doctor": ["data_dir"],
    "compare": ["sweep_dir"],
}


@pytest.mark.parametrize("name", list(COMMAND_KEYS))
def test_command_help_lists_its_keys(command, name: str) -> None:
    out = succeeded(command(name, "--help"))
    assert out.startswith(f"experiments-{name}: ")
    for key in COMMAND_KEYS[name]:
        assert f"\n{key}: " in out, key
    assert f"experiments-{name} " in out.split("Examples:")[1]
    assert [line.split(":")[0] for line in succeeded(command(name, "--cfg", "job")).splitlines()] == COMMAND_KEYS[name]


def test_commands_leave_nothing_in_the_working_directory(command, finished_run: Path, tmp_path: Path) -> None:
    """No outputs/, .hydra/ or log file: a command writes what it is asked to (output=, csv=) and nothing else."""
    succeeded(command("evaluate", f"ckpt_path={finished_run}", f"output={tmp_path / 'metrics.json'}"))
    succeeded(command("doctor", f"data_dir={tmp_path}"))
    assert command("predict", f"ckpt_path={finished_run}").code == 1
    assert command("compare", f"sweep_dir={finished_run}").code == 1
    assert list(Path.cwd().iterdir()) == []
    assert (tmp_path / "metrics.json").is_file()
