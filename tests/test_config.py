"""Every config group option composes and builds the object its `_target_` names."""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from experiments.config.build import build_group
from experiments.config.names import ITEM_SEP, run_suffix, short_overrides
from experiments.data.datamodule import MNISTDataModule
from experiments.models.classifier import MNISTClassifier
from experiments.tensorboard import logger as tensorboard_logger
from experiments.train import CONFIG_DIR
from tests.conftest import compose_config


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def test_every_group_has_its_options() -> None:
    assert options("data") == ["fashion_mnist", "mnist"]
    assert options("model") == ["cnn", "linear", "mlp"]
    assert options("model/loss") == ["cross_entropy", "focal", "mse"]
    assert options("model/optimizer") == ["adagrad", "adam", "adamw", "rmsprop", "sgd"]
    assert options("model/scheduler") == ["cosine", "none", "onecycle"]
    assert {"default", "cpu", "gpu", "mps", "ddp"} <= set(options("trainer"))
    assert options("logger") == ["csv", "mlflow", "none", "tensorboard"]
    assert {"fast", "overfit", "limit"} <= set(options("debug"))


def test_defaults_match_the_classic_network() -> None:
    cfg = compose_config()
    assert list(cfg.model.hidden_sizes) == [128, 128]
    assert cfg.model.optimizer._target_ == "torch.optim.SGD"
    assert cfg.trainer.accelerator == "auto"
    assert cfg.data.val_size == 5000
    assert cfg.hydra.job.chdir is False


@pytest.mark.parametrize("dataset", options("data"))
def test_data_options_build(dataset: str) -> None:
    cfg = compose_config([f"data={dataset}"])
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    assert isinstance(datamodule, MNISTDataModule)
    assert datamodule.dataset_cls.__name__ == {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}[dataset]


@pytest.mark.parametrize("optimizer", options("model/optimizer"))
@pytest.mark.parametrize("scheduler", options("model/scheduler"))
def test_model_optimizer_and_scheduler_options_build(optimizer: str, scheduler: str) -> None:
    cfg = compose_config([f"model/optimizer={optimizer}", f"model/scheduler={scheduler}"])
    model = hydra.utils.instantiate(cfg.model, _convert_="all")
    assert isinstance(model, MNISTClassifier)
    # max_steps with max_epochs=-1: estimated_stepping_batches needs no data then.
    trainer = L.Trainer(max_epochs=-1, max_steps=10, logger=False, enable_checkpointing=False, accelerator="cpu")
    model.trainer = trainer
    configured = model.configure_optimizers()
    optim = configured["optimizer"] if isinstance(configured, dict) else configured
    assert type(optim).__name__.lower() == optimizer
    assert optim.param_groups[0]["lr"] == pytest.approx(cfg.model.optimizer.lr, rel=0.5) or scheduler == "onecycle"
    if scheduler == "none":
        assert not isinstance(configured, dict)
    else:
        assert configured["lr_scheduler"]["interval"] == "step"


@pytest.mark.parametrize("network", options("model"))
@pytest.mark.parametrize("loss", options("model/loss"))
def test_model_and_loss_options_build(network: str, loss: str) -> None:
    cfg = compose_config([f"model={network}", f"model/loss={loss}"])
    model = hydra.utils.instantiate(cfg.model, _convert_="all")
    assert isinstance(model, MNISTClassifier)
    assert model.hparams["net"] == cfg.model.net == network
    assert model.hparams["loss"]["name"] == cfg.model.loss._target_
    logits = model(torch.zeros(3, 1, 28, 28))
    assert logits.shape == (3, 10)
    assert torch.isfinite(model.criterion(logits, torch.tensor([0, 1, 2])))


@pytest.mark.parametrize("network", ["mlp", "cnn"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu", "gelu"])
def test_activations_build(network: str, activation: str) -> None:
    overrides = [f"model={network}", f"model.activation={activation}"]
    cfg = compose_config([*overrides, "model.dropout=0.2", "model.batch_norm=true"] if network == "mlp" else overrides)
    model = hydra.utils.instantiate(cfg.model, _convert_="all")
    logits = model(torch.zeros(3, 1, 28, 28))
    assert logits.shape == (3, 10)
    assert activation.replace("_", "") in str(model.net).lower().replace("_", "")


@pytest.mark.parametrize("trainer", ["default", "cpu", "gpu", "mps", "ddp"])
def test_trainer_options_compose(trainer: str) -> None:
    cfg = compose_config([f"trainer={trainer}"])
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    expected = {"default": "auto", "ddp": "auto", "cpu": "cpu", "gpu": "gpu", "mps": "mps"}[trainer]
    assert cfg.trainer.accelerator == expected


def test_cpu_trainer_builds(tmp_path: Path) -> None:
    cfg = compose_config(["trainer=cpu", f"hydra.run.dir={tmp_path}"])
    trainer = hydra.utils.instantiate(cfg.trainer, default_root_dir=str(tmp_path), logger=False)
    assert isinstance(trainer, L.Trainer)
    assert trainer.max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize(
    ("logger", "expected"), [("tensorboard", tensorboard_logger.TensorBoardLogger), ("csv", CSVLogger), ("none", None)]
)
def test_logger_options_build(logger: str, expected: type | None, tmp_path: Path) -> None:
    cfg = compose_config([f"logger={logger}", f"paths.output_dir={tmp_path}"])
    loggers = build_group(cfg, "logger")
    assert [type(x) for x in loggers] == ([expected] if expected else [])
    assert all(isinstance(x, TensorBoardLogger) for x in loggers if logger == "tensorboard"), "Lightning's, subclassed"


def test_callbacks_build(tmp_path: Path) -> None:
    cfg = compose_config([f"paths.output_dir={tmp_path}"])
    callbacks = build_group(cfg, "callbacks")
    for kind in (ModelCheckpoint, LearningRateMonitor, TQDMProgressBar):
        assert any(isinstance(c, kind) for c in callbacks), kind
    best, last = (c for c in build_group(cfg, "callbacks") if isinstance(c, ModelCheckpoint))
    assert (best.monitor, best.mode, best.save_top_k) == ("val/acc", "max", 1)
    assert (last.monitor, last.filename, last.save_top_k) == (None, "last", 1), "last.ckpt after every epoch"
    assert build_group(compose_config(["callbacks=none"]), "callbacks") == []


@pytest.mark.parametrize("debug", ["fast", "overfit", "limit"])
def test_debug_options_compose(debug: str) -> None:
    cfg = compose_config([f"debug={debug}"])
    changed = {"fast": "fast_dev_run", "overfit": "overfit_batches", "limit": "limit_train_batches"}[debug]
    assert cfg.trainer[changed]


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_recipes_compose(experiment: str) -> None:
    cfg = compose_config([f"experiment={experiment}"])
    assert cfg.run_name or cfg.hydra.sweeper.params


def test_run_directory_names_are_readable() -> None:
    assert short_overrides("data.batch_size=32,model.optimizer.lr=0.1") == "batch_size=32,lr=0.1"
    assert short_overrides("model/optimizer=adam,+trainer.foo=1") == "optimizer=adam,foo=1"
    assert run_suffix("", ITEM_SEP.join(["data.dataset=x/y", "data.batch_size=32"])) == "_dataset-x-y_batch_size-32"
    assert run_suffix("mine", "data.batch_size=32") == "_mine"
    assert run_suffix("", "") == ""
