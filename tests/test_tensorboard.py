"""TensorBoard's view of a sweep whose jobs end in every way: completed, diverged, and refused before training."""

from __future__ import annotations

from pathlib import Path

from experiments.tensorboard.hparams import METRICS, varied_keys
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

    for job_dir in (p for p in sweep_dir.iterdir() if p.is_dir()):
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
