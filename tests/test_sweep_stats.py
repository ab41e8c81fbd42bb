"""Sweeps over seeds: one row per configuration (n, mean, std, min, max), Welch's t-test against the best,
the bar chart in TensorBoard, and the comparison labs (conf/experiment/compare_*.yaml)."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from PIL import Image
from scipy import stats
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments.config import schema
from experiments.sweeps.figures import bars_figure, curves_figure
from experiments.sweeps.report import CONFIG_COLUMNS, CSV_COLUMNS, describe, write_report
from experiments.sweeps.results import JobResult
from experiments.sweeps.stats import (
    PAIRED,
    RULE,
    WELCH,
    Comparison,
    ConfigResult,
    Spread,
    compare,
    holm,
    seed_band,
    seeds_for_power,
)
from experiments.tensorboard.sweep import REPORT_DIR
from experiments.train import CONFIG_DIR
from tests.conftest import compose_config
from tests.tensorboard_views import accumulator, layout_margins, read_hparams
from tests.test_sweeps import TINY, only_sweep_dir, read_summary, write_job


def job_config(*overrides: str) -> DictConfig:
    """The config one job of a sweep gets (no hydra node; output paths need no Hydra run)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=["paths.output_dir=/tmp/run", *overrides])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


# Student's sleep data (Cushny and Peebles, analysed by "Student", 1908; R's `sleep`): extra hours of sleep of
# the same 10 patients under two drugs. R's t.test(extra ~ group, data = sleep, paired = TRUE) gives t = -4.0621,
# df = 9, p = 0.002833, 95 % CI -2.4598858 to -0.7001142; unpaired (Welch): t = -1.8608, df = 17.776,
# p = 0.07939, CI -3.3654832 to 0.2054832.
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def configuration(name: str, values: list[float], seeds: list[int] | None = None) -> ConfigResult:
    """A configuration whose completed jobs have these test values, one per seed (1, 2, ... unless given)."""
    seeds = seeds or list(range(1, len(values) + 1))
    jobs = [
        JobResult(f"{name}{seed}", seed, "completed", [f"model={name}", f"seed={seed}"], test_acc=value)
        for seed, value in zip(seeds, values, strict=True)
    ]
    return ConfigResult([f"model={name}"], jobs)


def test_paired_and_welch_tests_match_students_sleep_data() -> None:
    drug_1, drug_2 = configuration("a", SLEEP_1), configuration("b", SLEEP_2)
    paired = compare(drug_1, drug_2)
    assert paired is not None and (paired.test, paired.n) == (PAIRED, 10), "same seeds: paired"
    assert paired.difference == pytest.approx(-1.58)
    assert paired.p_value == pytest.approx(0.002833, abs=5e-7)
    assert paired.ci == pytest.approx((-2.4598858, -0.7001142), abs=1e-7)

    unpaired = configuration("b", SLEEP_2, seeds=list(range(11, 21)))  # no seed in common
    welch = compare(drug_1, unpaired)
    assert welch is not None and welch.test == WELCH
    assert welch.p_value == pytest.approx(0.07939, abs=5e-6)
    assert welch.ci == pytest.approx((-3.3654832, 0.2054832), abs=1e-7)

    # Seeds that all land on one value (e.g. chance level): t is 0/0, so the means decide.
    assert compare(configuration("c", [0.5, 0.5]), configuration("d", [0.5, 0.5])).p_value == 1.0
    flat = compare(configuration("c", [0.1, 0.1]), configuration("d", [0.9, 0.9]))
    assert flat.p_value == 0.0 and flat.ci == pytest.approx((-0.8, -0.8))
    assert compare(configuration("c", [0.5]), drug_2) is None, "n=1: no test"


def test_mean_interval_is_students_t() -> None:
    # t(0.975, 9) = 2.262 (every t table); scipy's one-sample test gives the same interval another way.
    spread = Spread(SLEEP_2)
    half = 2.2621571627 * statistics.stdev(SLEEP_2) / math.sqrt(10)
    assert spread.ci == pytest.approx((2.33 - half, 2.33 + half))
    assert spread.ci == pytest.approx(tuple(stats.ttest_1samp(SLEEP_2, 0).confidence_interval(0.95)))
    assert Spread([0.9]).ci is None and Spread([0.9, 0.9]).ci == (0.9, 0.9)


def test_holm_adjustment_is_step_down() -> None:
    # R: p.adjust(c(0.01, 0.02, 0.03, 0.04, 0.05), "holm") = 0.05 0.08 0.09 0.09 0.09
    assert holm([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    assert holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06]), "in the order given"
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([]) == []


@pytest.mark.parametrize(
    ("test", "effect", "seeds"),
    # Cohen (1988), Table 2.4.1: two-sample t, two-sided alpha 0.05, power 0.8: d = 0.5 needs 64 per group,
    # d = 0.8 needs 26; one-sample / paired (G*Power, exact): d_z = 0.5 needs 34, d_z = 0.8 needs 15.
    [(WELCH, 0.5, 64), (WELCH, 0.8, 26), (PAIRED, 0.5, 34), (PAIRED, 0.8, 15)],
)
def test_seeds_for_power_match_textbook_sample_sizes(test: str, effect: float, seeds: int) -> None:
    if test == WELCH:  # two samples of standard deviation 1
        ours, best = [-math.sqrt(0.5), math.sqrt(0.5)], [-math.sqrt(0.5), math.sqrt(0.5)]
    else:  # differences of standard deviation 1
        ours, best = [0.0, math.sqrt(2)], [0.0, 0.0]
    comparison = Comparison(test, 2, effect, (0.0, 0.0), 1.0)
    assert seeds_for_power(comparison, ours, best, alpha=0.05) == seeds
    assert seeds_for_power(comparison, ours, best, alpha=0.05 / 3) > seeds, "a stricter level needs more seeds"
    assert seeds_for_power(Comparison(test, 2, 0.0, (0.0, 0.0), 1.0), ours, best, 0.05) is None


def completed(seed: int, val: float, test: float) -> dict:
    """A finished job of 2 epochs: val accuracy `val` - 0.01 then `val`, train loss 0.5 then 0.2 + seed / 10."""
    return {
        "status": "completed",
        "seed": seed,
        "history": [
            {"epoch": 0, "val/acc": val - 0.01, "train/loss": 0.5},
            {"epoch": 1, "val/acc": val, "train/loss": 0.2 + seed / 10},
        ],
        "epochs": 2,
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
        "tanh": [(0.97, 0.965), (0.98, 0.985), (0.99, 0.975)],
        "sigmoid": [(0.90, 0.90), (0.91, 0.92), (0.92, 0.91)],
        "gelu": [(0.95, 0.95), None],
        "leaky_relu": [None, None],
    }
    num = 0
    for activation, seeds in results.items():
        for seed, result in enumerate(seeds, 1):
            overrides = [f"model.activation={activation}", f"seed={seed}", "trainer.max_epochs=2"]
            record = failed(seed) if result is None else completed(seed, *result)
            write_job(tmp_path, f"{num}_activation={activation},seed={seed}", overrides, record)
            num += 1
    return tmp_path


def student_t2_p_value(t: float) -> float:
    """Two-sided p-value of Student's t with 2 degrees of freedom, in closed form (no scipy)."""
    return 1 - abs(t) / math.sqrt(t * t + 2)


T2_975 = 4.302653  # t(0.975, 2 degrees of freedom), from any t table


def test_seed_sweep_gives_one_row_per_configuration(seed_sweep: Path) -> None:
    report = write_report(seed_sweep)
    rows = read_csv(seed_sweep / "summary.csv")
    assert list(rows[0]) == CONFIG_COLUMNS
    assert [r["overrides"].split()[0] for r in rows] == [
        f"model.activation={a}" for a in ("relu", "tanh", "gelu", "sigmoid", "leaky_relu")
    ], "best first by mean best val accuracy; configurations without a completed job last"
    relu, tanh, gelu, sigmoid, leaky = rows
    assert relu["overrides"] == "model.activation=relu trainer.max_epochs=2", "grouped without seed"
    assert (relu["n"], relu["failed"]) == ("3", "0")
    half = T2_975 * 0.01 / math.sqrt(3)  # the mean's 95 % CI: t * std / sqrt(n)
    assert [float(relu[f"test_acc_{s}"]) for s in ("mean", "std", "ci_low", "ci_high", "min", "max")] == pytest.approx(
        [0.98, 0.01, 0.98 - half, 0.98 + half, 0.97, 0.99], abs=1e-4
    )
    assert [float(relu[f"val_acc_best_{s}"]) for s in ("mean", "std", "min", "max")] == pytest.approx(
        [0.985, 0.01, 0.975, 0.995]
    )
    assert float(relu["train_seconds_mean"]) == pytest.approx(4.0)
    assert relu["verdict"] == "best" and relu["p_value"] == relu["p_holm"] == relu["test"] == ""

    # Paired over seeds 1-3. tanh - relu per seed: -0.005, +0.005, -0.015 (mean -0.005, std 0.01, t = -0.866);
    # sigmoid - relu: -0.07, -0.06, -0.08 (mean -0.07, std 0.01, t = -12.12). 2 degrees of freedom each.
    p_tanh = student_t2_p_value(-0.005 / (0.01 / math.sqrt(3)))
    p_sigmoid = student_t2_p_value(-0.07 / (0.01 / math.sqrt(3)))
    assert (tanh["test"], sigmoid["test"]) == (PAIRED, PAIRED)
    assert float(tanh["p_value"]) == pytest.approx(p_tanh, abs=1e-4)
    assert float(sigmoid["p_value"]) == pytest.approx(p_sigmoid, abs=1e-5)
    # Holm over the 2 tests: the smaller p times 2, the larger times 1 (and never below the one before).
    assert float(sigmoid["p_holm"]) == pytest.approx(2 * p_sigmoid, abs=1e-5)
    assert float(tanh["p_holm"]) == pytest.approx(p_tanh, abs=1e-4)
    assert [float(tanh[k]) for k in ("test_diff", "test_diff_ci_low", "test_diff_ci_high")] == pytest.approx(
        [-0.005, -0.005 - half, -0.005 + half], abs=1e-4
    )
    assert tanh["verdict"] == "not distinguishable with n=3 (difference CI -2.98 to +1.98 points)"
    assert sigmoid["verdict"] == "worse"
    assert int(tanh["seeds_for_80_power"]) > 3 and sigmoid["seeds_for_80_power"] != ""
    assert (gelu["n"], gelu["failed"], gelu["test_acc_std"], gelu["p_value"]) == ("1", "1", "", "")
    assert gelu["verdict"] == "no test (n=1 vs 3; 2 each needed)"
    assert (leaky["n"], leaky["failed"], leaky["verdict"]) == ("0", "2", "no completed job")

    jobs = read_csv(seed_sweep / "jobs.csv")
    assert list(jobs[0]) == CSV_COLUMNS and len(jobs) == 13, "every job, as a single-seed summary lists them"
    markdown = (seed_sweep / "summary.md").read_text()
    assert f"Rule: {RULE}" in markdown and "## Jobs" in markdown and "depends on machine load" in markdown
    assert "| 1 | `model.activation=relu` | 3 | 98.50 ± 1.00 | 98.00 [95.52, 100.48] |  |  | **best** |" in markdown
    row = "| 2 | `model.activation=tanh` | 3 | 98.00 ± 1.00 | 97.50 [95.02, 99.98] | -0.50 [-2.98, +1.98] | "
    assert row + f"{p_tanh:.2g} (paired t) | {tanh['verdict']} | {tanh['seeds_for_80_power']} |" in markdown
    assert (seed_sweep / "bars.png").is_file() and not (seed_sweep / "heatmap.png").exists(), "not a bs x lr grid"

    printed = describe(report)
    assert "Best:   model.activation=relu: test acc 98.00% ± 1.00% (n=3), best val acc 98.50% ± 1.00% (n=3)" in printed
    assert "Against the best: 1 worse, 1 not distinguishable, of 4 other configurations" in printed


def test_seed_bands_in_curves_and_tensorboard(seed_sweep: Path) -> None:
    """One colour per configuration, its mean over seeds with a ± 1 std band, in curves.png and in
    TensorBoard's report run: one run per configuration, drawn by a Custom Scalars margin chart."""
    report = write_report(seed_sweep)
    relu = report.configs[0]
    assert [v for row in seed_band(relu, "val/acc") for v in row] == pytest.approx([1, 0.975, 0.01, 2, 0.985, 0.01])
    assert [v for row in seed_band(relu, "train/loss") for v in row] == pytest.approx([1, 0.5, 0.0, 2, 0.4, 0.1])

    figure = curves_figure(report.jobs, report.configs)
    val_ax, loss_ax = figure.axes
    drawn = ["relu", "tanh", "gelu", "sigmoid"]  # leaky_relu has no completed job
    assert [line.get_label() for line in val_ax.lines] == [
        f"activation={a} (n={3 if a != 'gelu' else 1})" for a in drawn
    ]
    assert [line.get_color() for line in val_ax.lines] == [line.get_color() for line in loss_ax.lines]
    assert len({line.get_color() for line in val_ax.lines}) == 4, "a colour per configuration"
    assert len(val_ax.collections) == 4, "a band per configuration"
    assert list(val_ax.lines[0].get_ydata()) == pytest.approx([97.5, 98.5])

    report_dir = seed_sweep / REPORT_DIR
    margin = layout_margins(report_dir)
    assert margin["val/acc"] == [
        (f"{REPORT_DIR}/val_acc_mean", f"{REPORT_DIR}/val_acc_lower", f"{REPORT_DIR}/val_acc_upper")
    ]
    runs = sorted(p.name for p in report_dir.iterdir() if p.is_dir())
    assert runs == ["01_activation-relu", "02_activation-tanh", "03_activation-gelu", "04_activation-sigmoid"]
    events = accumulator(report_dir / runs[0])
    upper = events.Scalars(f"{REPORT_DIR}/val_acc_upper")
    assert [e.step for e in upper] == [1, 2] and [e.value for e in upper] == pytest.approx([0.985, 0.995])
    assert accumulator(report_dir).Tags()["images"] == [f"{REPORT_DIR}/bars"]

    write_report(seed_sweep)  # rebuilt: the same runs, not twice the events
    assert sorted(p.name for p in report_dir.iterdir() if p.is_dir()) == runs
    assert len(accumulator(report_dir / runs[0]).Scalars(f"{REPORT_DIR}/val_acc_mean")) == 2


def test_bars_show_differences_with_intervals_on_an_honest_axis(seed_sweep: Path) -> None:
    report = write_report(seed_sweep)
    ax = bars_figure(report.configs).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0].startswith("activation=relu (n=3)\nbest: 98.00 %")
    assert labels[1] == "activation=tanh (n=3)\n-0.50 [-2.98, +1.98], p=0.48"
    assert labels[2].startswith("activation=gelu (n=1)") and "(no test)" in labels[2]
    low, high = ax.get_xlim()
    assert low < -7.0 - 1.0 and high > 1.98, "every interval within the axis (sigmoid: -7 points, CI about ±2.5)"
    assert [round(p.get_width(), 2) for p in ax.patches] == [0.0, -0.5, -3.0, -7.0]


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
        "experiment=compare_activations",
        "model.activation=relu,tanh",
        "seed=1,2",
        "hydra/launcher=basic",  # the report is what is checked here (tests/test_parallel.py: the launcher)
        f"paths.data_dir={mnist_dir}",
        *TINY,
    )
    assert result.code == 0, result.err
    sweep_dir = only_sweep_dir(tmp_path / "outputs")
    rows = read_csv(sweep_dir / "summary.csv")
    assert sorted(r["overrides"].split()[0] for r in rows) == ["model.activation=relu", "model.activation=tanh"]
    assert all(r["n"] == "2" and r["test_acc_std"] != "" for r in rows)
    assert rows[0]["verdict"] == "best" and rows[1]["p_value"] != "" and rows[1]["test"] == PAIRED
    assert len(read_csv(sweep_dir / "jobs.csv")) == 4
    with Image.open(sweep_dir / "bars.png") as image:
        image.verify()
        assert image.format == "PNG"
    report_dir = sweep_dir / REPORT_DIR
    events = EventAccumulator(str(report_dir))
    events.Reload()
    assert events.Tags()["images"] == [f"{REPORT_DIR}/bars"]
    assert len([p for p in report_dir.iterdir() if p.is_dir()]) == 2, "a band run per configuration"
    # The sweep's HParams experiment sits in the report run too, after the jobs in TensorBoard's run list.
    assert "_hparams_/experiment" in read_hparams(report_dir)
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())[-1] == REPORT_DIR
    assert "Against the best: " in result.out and f"Report: {sweep_dir / 'summary.md'}" in result.out


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
