"""Sweeps over seeds: one row per configuration (n, mean, std, min, max), Welch's t-test against the best,
the bar chart in TensorBoard, and the comparison labs (conf/experiment/compare_*.yaml)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments.config import schema
from experiments.sweeps.report import CONFIG_COLUMNS, CSV_COLUMNS, describe, write_report
from experiments.sweeps.stats import RULE, welch_p_value
from experiments.train import CONFIG_DIR
from tests.conftest import compose_config
from tests.test_sweeps import TINY, only_sweep_dir, read_summary, write_job


def job_config(*overrides: str) -> DictConfig:
    """The config one job of a sweep gets (no hydra node; output paths need no Hydra run)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=["paths.output_dir=/tmp/run", *overrides])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def student_t4_p_value(t: float) -> float:
    """Two-sided p-value of Student's t with 4 degrees of freedom, in closed form (no scipy)."""
    u = t * t / 4
    return 1 - 0.75 * abs(t) / math.sqrt(1 + u) * (1 - u / (3 * (1 + u)))


def test_welch_p_value_matches_textbook_examples() -> None:
    # Welch's t-test, Wikipedia's worked examples 1 and 2: p = 0.021 and 0.149 (Student's test, which
    # assumes equal variances, gives 0.045 for example 2).
    a1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    a2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    b1 = [17.2, 20.9, 22.6, 18.1, 21.7, 21.4, 23.5, 24.2, 14.7, 21.8]
    b2 = [21.5, 22.8, 21.0, 23.0, 21.6, 23.6, 22.5, 20.7, 23.4, 21.8]
    b2 += [20.7, 21.7, 21.5, 22.5, 23.6, 21.5, 22.5, 23.5, 21.5, 21.8]
    assert welch_p_value(a1, a2) == pytest.approx(0.021, abs=5e-4)
    assert welch_p_value(b1, b2) == pytest.approx(0.149, abs=5e-4)
    assert welch_p_value(b2, b1) == welch_p_value(b1, b2), "two-sided"
    # Seeds that all land on the same accuracy (e.g. chance level): no spread, so the means decide.
    assert welch_p_value([0.5, 0.5], [0.5, 0.5]) == 1.0
    assert welch_p_value([0.1, 0.1], [0.9, 0.9]) == 0.0


def completed(seed: int, val: float, test: float) -> dict:
    return {
        "status": "completed",
        "seed": seed,
        "history": [{"epoch": 0, "val/acc": val}],
        "epochs": 1,
        "train_seconds": 2.0 + seed,
        "metrics": {"val/acc_best": val, "test/acc": test},
    }


def failed(seed: int) -> dict:
    return {"status": "failed", "seed": seed, "error": "training diverged", "history": []}


@pytest.fixture
def seed_sweep(tmp_path: Path) -> Path:
    """Five activations x seeds, written by hand: (val acc, test acc) per seed, or a failed job."""
    results = {
        "relu": [(0.975, 0.97), (0.985, 0.98), (0.995, 0.99)],
        "tanh": [(0.97, 0.96), (0.98, 0.97), (0.99, 0.98)],
        "sigmoid": [(0.90, 0.90), (0.91, 0.91), (0.92, 0.92)],
        "gelu": [(0.95, 0.95), None],
        "leaky_relu": [None, None],
    }
    num = 0
    for activation, seeds in results.items():
        for seed, result in enumerate(seeds, 1):
            overrides = [f"model.activation={activation}", f"seed={seed}", "trainer.max_epochs=1"]
            record = failed(seed) if result is None else completed(seed, *result)
            write_job(tmp_path, f"{num}_activation={activation},seed={seed}", overrides, record)
            num += 1
    return tmp_path


def test_seed_sweep_gives_one_row_per_configuration(seed_sweep: Path) -> None:
    report = write_report(seed_sweep)
    rows = read_csv(seed_sweep / "summary.csv")
    assert list(rows[0]) == CONFIG_COLUMNS
    assert [r["overrides"].split()[0] for r in rows] == [
        f"model.activation={a}" for a in ("relu", "tanh", "gelu", "sigmoid", "leaky_relu")
    ], "best first by mean best val accuracy; configurations without a completed job last"
    relu, tanh, gelu, sigmoid, leaky = rows
    assert relu["overrides"] == "model.activation=relu trainer.max_epochs=1", "grouped without seed"
    assert (relu["n"], relu["failed"]) == ("3", "0")
    assert [float(relu[f"test_acc_{s}"]) for s in ("mean", "std", "min", "max")] == pytest.approx(
        [0.98, 0.01, 0.97, 0.99]
    )
    assert [float(relu[f"val_acc_best_{s}"]) for s in ("mean", "std", "min", "max")] == pytest.approx(
        [0.985, 0.01, 0.975, 0.995]
    )
    assert float(relu["train_seconds_mean"]) == pytest.approx(4.0)
    assert relu["verdict"] == "best" and relu["p_value"] == ""

    # tanh vs relu: equal n and variances, so Welch's degrees of freedom are 4; t = -0.01 / sqrt(2 * 0.01**2 / 3)
    expected = student_t4_p_value(0.01 / math.sqrt(2 * 0.01**2 / 3))
    assert float(tanh["p_value"]) == pytest.approx(expected, abs=1e-4)
    assert tanh["verdict"] == f"within noise of best (p={expected:.2g})"
    assert sigmoid["verdict"].startswith("worse (p=0.001") and float(sigmoid["p_value"]) < 0.05
    assert (gelu["n"], gelu["failed"], gelu["test_acc_std"]) == ("1", "1", "")
    assert gelu["verdict"] == "within noise of best (n<2: no test)"
    assert (leaky["n"], leaky["failed"], leaky["verdict"]) == ("0", "2", "no completed job")

    jobs = read_csv(seed_sweep / "jobs.csv")
    assert list(jobs[0]) == CSV_COLUMNS and len(jobs) == 13, "every job, as a single-seed summary lists them"
    markdown = (seed_sweep / "summary.md").read_text()
    assert f"Ranking rule: {RULE}" in markdown and "## Jobs" in markdown
    assert "| 1 | `model.activation=relu` | 3 | 98.50 ± 1.00 | 98.00 ± 1.00 | 97.00-99.00 |" in markdown
    assert (seed_sweep / "bars.png").is_file() and not (seed_sweep / "heatmap.png").exists(), "not a bs x lr grid"

    printed = describe(report)
    assert "Best:   model.activation=relu: test acc 98.00% ± 1.00% (n=3), best val acc 98.50% ± 1.00% (n=3)" in printed
    assert "Within noise of best: 2 of 4 other configurations" in printed


def test_sweeps_without_repeated_seeds_keep_one_row_per_job(tmp_path: Path) -> None:
    """Seeds that vary with the other knobs (one seed per configuration) are no repetition."""
    for num, (lr, seed) in enumerate([(0.1, 1), (0.2, 2)]):
        overrides = [f"model.optimizer.lr={lr}", f"seed={seed}"]
        write_job(tmp_path, f"{num}_lr={lr},seed={seed}", overrides, {**completed(seed, 0.9, 0.9), "lr": lr})
    report = write_report(tmp_path)
    assert report.configs is None
    assert list(read_summary(tmp_path)[0]) == CSV_COLUMNS and len(read_summary(tmp_path)) == 2
    assert {p.name for p in tmp_path.iterdir() if p.is_file()} == {
        "summary.csv",
        "summary.md",
        "heatmap.png",
        "curves.png",
    }


def test_lab_multirun_over_seeds_writes_the_report_and_tensorboard_chart(cli, mnist_dir: Path, tmp_path: Path) -> None:
    """2 activations x 2 seeds through a lab preset; the command line's lists replace the preset's."""
    result = cli(
        "experiment=compare_activations", "model.activation=relu,tanh", "seed=1,2", f"paths.data_dir={mnist_dir}", *TINY
    )
    assert result.code == 0, result.err
    sweep_dir = only_sweep_dir(tmp_path / "outputs")
    rows = read_csv(sweep_dir / "summary.csv")
    assert sorted(r["overrides"].split()[0] for r in rows) == ["model.activation=relu", "model.activation=tanh"]
    assert all(r["n"] == "2" and r["test_acc_std"] != "" for r in rows)
    assert rows[0]["verdict"] == "best" and rows[1]["p_value"] != ""
    assert len(read_csv(sweep_dir / "jobs.csv")) == 4
    with Image.open(sweep_dir / "bars.png") as image:
        image.verify()
        assert image.format == "PNG"
    events = EventAccumulator(str(sweep_dir / "report"))
    events.Reload()
    assert events.Tags()["images"] == ["sweep/bars"]
    assert "Within noise of best: " in result.out and f"Report: {sweep_dir / 'summary.md'}" in result.out


LABS = {
    "compare_models": ("model", "linear,mlp,cnn"),
    "compare_optimizers": ("model/optimizer", "sgd,adam,adagrad,rmsprop"),
    "compare_activations": ("model.activation", "sigmoid,tanh,relu,leaky_relu"),
    "compare_losses": ("model/loss", "cross_entropy,focal,mse"),
    "compare_regularization": ("regularization", "none,l1,l2,dropout"),
}


# The regularisation lab runs in a regime of its own (few images, a wide MLP, long training), with more seeds.
REGIMES = {"compare_regularization": ("1,2,3,4,5", 20)}


@pytest.mark.parametrize("lab", LABS)
def test_every_lab_is_a_multirun_over_one_concept_and_seeds(lab: str) -> None:
    key, values = LABS[lab]
    seeds, epochs = REGIMES.get(lab, ("1,2,3", 5))
    cfg = compose_config([f"experiment={lab}"])
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert dict(cfg.hydra.sweeper.params) == {key: values, "seed": seeds}
    assert cfg.trainer.max_epochs == epochs
    for value in values.split(","):  # each job of the lab composes and passes the schema
        overrides = [f"experiment={lab}", f"{key}={value}"]
        schema.validate(job_config(*overrides), overrides)


def test_regularization_settings_differ_in_one_knob_each() -> None:
    knobs = {}
    for name in LABS["compare_regularization"][1].split(","):
        model = job_config(f"regularization={name}").model
        knobs[name] = {"l1": model.l1, "weight_decay": model.optimizer.weight_decay, "dropout": model.dropout}
    assert knobs["none"] == {"l1": 0, "weight_decay": 0, "dropout": 0}
    for name, changed in (("l1", "l1"), ("l2", "weight_decay"), ("dropout", "dropout")):
        assert {k for k, v in knobs[name].items() if v} == {changed}, name


@pytest.mark.parametrize("model", ["linear", "cnn"])
def test_penalties_apply_to_networks_without_dropout(model: str) -> None:
    for name in ("none", "l1", "l2"):
        overrides = [f"model={model}", f"regularization={name}"]
        schema.validate(job_config(*overrides), overrides)
