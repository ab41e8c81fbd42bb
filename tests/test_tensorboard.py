"""TensorBoard's view of a sweep whose jobs end in every way: completed, diverged, and refused before training."""

from __future__ import annotations

from pathlib import Path

import torch

from experiments.tensorboard.figures import hard_examples, predictions_figure
from experiments.tensorboard.hparams import METRICS, varied_keys
from experiments.tensorboard.sweep import REPORT_DIR
from tests.conftest import compose_config
from tests.tensorboard_views import accumulator, hparams_tab, layout_charts, read_hparams
from tests.test_sweeps import TINY, only_sweep_dir

# Job by job: lr, epoch at which tests.faults.PoisonWeightsAt makes the loss NaN (9: never), status.
JOBS = {
    (0.05, 9): "STATUS_SUCCESS",
    (0.05, 0): "STATUS_FAILURE",  # diverged while training
    (-1.0, 9): "STATUS_FAILURE",  # refused before training: no logger ever existed
    (-1.0, 0): "STATUS_FAILURE",
}
POISON = ["+callbacks.poison._target_=tests.faults.PoisonWeightsAt", "+callbacks.poison.batch=0"]


def test_every_job_is_a_row_with_its_status(cli, mnist_dir: Path, tmp_path: Path) -> None:
    result = cli(
        "hydra.mode=MULTIRUN",
        "hydra/launcher=basic",  # the faults are injected in this process
        f"paths.data_dir={mnist_dir}",
        *TINY,
        *POISON,
        "model.optimizer.lr=0.05,-1",
        "+callbacks.poison.epoch=9,0",
    )
    assert result.code == 0, result.err
    sweep_dir = only_sweep_dir(tmp_path / "outputs")

    experiment, rows = hparams_tab(sweep_dir)
    # The columns are what the sweep varied, from its own multirun config, then the metrics.
    assert {h["name"] for h in experiment["hparamInfos"]} == {"model.optimizer.lr", "callbacks.poison.epoch"}
    assert [m["name"]["tag"] for m in experiment["metricInfos"]] == list(METRICS)
    by_values = {(r["hparams"]["model.optimizer.lr"], r["hparams"]["callbacks.poison.epoch"]): r for r in rows.values()}
    assert {values: row["sessions"][0]["status"] for values, row in by_values.items()} == JOBS
    completed = {m["name"]["tag"] for m in by_values[0.05, 9]["sessions"][0]["metricValues"]}
    assert set(METRICS) - {"train/loss"} <= completed  # train/loss: not one logging step (log_every_n_steps)

    assert "_hparams_/experiment" in read_hparams(sweep_dir / REPORT_DIR), "the sweep's, in its report run"
    for job_dir in (p for p in sweep_dir.iterdir() if p.is_dir() and p.name != REPORT_DIR):
        assert not [tag for tag in accumulator(job_dir).Tags()["scalars"] if tag.startswith("hp/")]
        summaries = read_hparams(job_dir)
        assert "_hparams_/experiment" not in summaries, "the sweep's experiment is the only one"
        if summaries["_hparams_/session_start_info"].session_start_info.hparams["model.optimizer.lr"].number_value > 0:
            # Started training: train and val side by side in Custom Scalars
            assert layout_charts(job_dir)["loss"] == ["^train/loss$", "^val/loss$"]


def test_sweep_columns_from_optuna_search_space() -> None:
    """Optuna's params: intervals as ranges, choices as their values (lists as Python writes them)."""
    domains = varied_keys(compose_config(["hparams_search=optuna"]))
    assert set(domains) == {"model.optimizer.lr", "data.batch_size", "model.hidden_sizes", "model.dropout"}
    assert (domains["model.optimizer.lr"].min_value, domains["model.optimizer.lr"].max_value) == (0.003, 0.5)
    assert domains["data.batch_size"].values == [32, 64, 128, 256]
    assert "[256, 128]" in domains["model.hidden_sizes"].values


def test_prediction_figure_shows_the_same_hard_images_whatever_the_model() -> None:
    """The images are chosen from the test set alone (nearest another class's mean image), so every run of a
    sweep shows the same ones; the figure marks this run's mistakes with their true label."""
    generator = torch.Generator().manual_seed(0)
    images = torch.cat([torch.zeros(20, 28, 28), torch.ones(20, 28, 28)]) + 0.1 * torch.rand(
        40, 28, 28, generator=generator
    )
    labels = torch.tensor([0] * 20 + [1] * 20)
    images[3], images[25] = 0.7, 0.45  # a 0 that looks much like a 1, a 1 that looks a little like a 0
    assert hard_examples(images, labels, 2).tolist() == [3, 25], "the two ambiguous images, in test-set order"
    assert hard_examples(images * 0.3081 + 0.1307, labels, 2).tolist() == [3, 25], "normalisation changes nothing"
    assert hard_examples(images, labels, 1).tolist() == [3], "the nearest to the other class first"

    probabilities = torch.tensor([[0.3, 0.7], [0.2, 0.8]])  # a model that calls both a 1: wrong on the first
    figure = predictions_figure(images[[3, 25]], labels[[3, 25]], probabilities, ["zero", "one"], "title")
    captions = {t.get_text(): t.get_color() for t in figure.axes[0].texts}
    assert captions == {"one (0.70)\ntrue: zero": "red", "one (0.80)": "black"}
