"""`logger=mlflow`: Lightning's MLFlowLogger into the local store under paths.log_dir, alone or beside
TensorBoard; params, per-epoch metrics and the final test metrics arrive, and a sweep is one experiment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FAST_RUN, compose_config

mlflow = pytest.importorskip("mlflow")  # the `mlflow` extra, which dev includes


def runs_of(outputs: Path, experiment: str) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{outputs / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None, [e.name for e in client.search_experiments()]
    return client.search_runs([found.experiment_id])


def test_mlflow_beside_tensorboard_gets_params_metrics_and_test(cli, mnist_dir: Path, tmp_path: Path) -> None:
    result = cli("logger=[tensorboard,mlflow]", f"paths.data_dir={mnist_dir}", *FAST_RUN)
    assert result.code == 0, result.err
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    assert list(run_dir.glob("events.out.tfevents.*")), "TensorBoard still logs"
    (run,) = runs_of(tmp_path / "outputs", "runs")
    assert run.info.run_name == run_dir.name and run.info.status == "FINISHED"
    assert {"val/acc", "val/loss", "train/loss", "test/acc", "test/loss"} <= set(run.data.metrics)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2, "one point per epoch"
    assert run.data.params["hidden_sizes"] == "[128, 128]"
    assert not (tmp_path / "mlruns").exists(), "nothing outside paths.log_dir"


def test_a_sweep_is_one_mlflow_experiment(cli, mnist_dir: Path, tmp_path: Path) -> None:
    result = cli("hydra.mode=MULTIRUN", "logger=mlflow", f"paths.data_dir={mnist_dir}", *FAST_RUN, "seed=1,2")
    assert result.code == 0, result.err
    (sweep_dir,) = (tmp_path / "outputs" / "sweeps").iterdir()
    runs = runs_of(tmp_path / "outputs", f"sweeps/{sweep_dir.name}")
    assert sorted(r.info.run_name for r in runs) == sorted(
        p.name for p in sweep_dir.iterdir() if (p / "run.json").is_file()
    )


def test_logger_group_takes_a_list() -> None:
    loggers = compose_config(["logger=[tensorboard,mlflow]"]).logger
    assert set(loggers) == {"tensorboard", "mlflow"} and loggers.mlflow._target_ == "experiments.tracking.mlflow_logger"
