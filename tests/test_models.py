"""The networks (linear, MLP, CNN), the losses and the L1 penalty: each trains through the real entry point,
its checkpoint evaluates and predicts, and each loss has the value its formula gives."""

from __future__ import annotations

import csv
import functools
import json
import math
from pathlib import Path

import hydra
import lightning as L
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from experiments.models import losses
from experiments.models.classifier import MNISTClassifier
from experiments.models.mlp import MLP
from tests.conftest import FAST_RUN, compose_config

MODELS = {
    "linear": ["model=linear"],
    # Batch norm and the L1 penalty on, and the dataloader path's (N, 1, 28, 28) images instead of rows.
    "mlp": ["model=mlp", "model.batch_norm=true", "model.l1=0.001", "data.loader=dataloader"],
    "cnn": ["model=cnn", "model/loss=focal"],
}


@pytest.mark.parametrize("name", list(MODELS))
def test_each_model_trains_evaluates_and_predicts(name: str, cli, command, mnist_dir: Path, tmp_path: Path) -> None:
    from experiments.checkpoints.load import find_checkpoint, model_from_checkpoint
    from experiments.data.datamodule import MNISTDataModule

    trained = cli(f"paths.data_dir={mnist_dir}", *FAST_RUN, *MODELS[name])
    assert trained.code == 0, trained.err
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["model"] == name
    assert record["loss"] == ("focal" if name == "cnn" else "cross_entropy")

    metrics_file = tmp_path / "metrics.json"
    evaluated = command("evaluate", f"ckpt_path={run_dir}", f"output={metrics_file}")
    assert evaluated.code == 0, evaluated.err
    metrics = json.loads(metrics_file.read_text())
    assert metrics["accuracy"] == pytest.approx(record["metrics"]["test/acc"], abs=1e-6)
    assert metrics["loss"] == pytest.approx(record["metrics"]["test/loss"], rel=1e-4), "the run's own loss"

    model = model_from_checkpoint(find_checkpoint(run_dir))
    assert model.hparams["net"] == name
    data = MNISTDataModule(data_dir=str(mnist_dir), val_size=100)
    data.setup()
    images = data.splits["test"][0][:4].reshape(-1, 28, 28)
    pixels = ((images * 0.3081 + 0.1307).clamp(0, 1) * 255).round().byte()
    digits = tmp_path / "digits"
    digits.mkdir()
    for i, image in enumerate(pixels.numpy()):
        Image.fromarray(image).save(digits / f"{i}.png")
    predicted = command("predict", f"ckpt_path={run_dir}", f"inputs={digits}", f"csv={tmp_path / 'p.csv'}")
    assert predicted.code == 0, predicted.err
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    with torch.inference_mode():
        expected = model((pixels / 255 - 0.1307) / 0.3081).softmax(-1)
    assert [int(r["prediction"]) for r in rows] == expected.argmax(-1).tolist()
    assert [float(r["probability"]) for r in rows] == pytest.approx(expected.max(-1).values.tolist(), abs=1e-5)

    if name == "mlp":  # the L1 penalty is its own curve, on the steps train/loss is logged at
        events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        events.Reload()
        steps = [e.step for e in events.Scalars("train/l1")]
        assert steps == [e.step for e in events.Scalars("train/loss")] == list(range(8))
        assert all(e.value > 0 for e in events.Scalars("train/l1"))


@pytest.mark.parametrize("name", ["linear", "mlp", "cnn"])
def test_networks_take_rows_and_images(name: str) -> None:
    """The resident data path hands over (N, 784) rows, the DataLoader path (N, 1, 28, 28) images."""
    model = hydra.utils.instantiate(compose_config([f"model={name}"]).model, _convert_="all").eval()
    images = torch.randn(5, 1, 28, 28)
    assert torch.equal(model(images), model(images.flatten(1)))
    assert model(images).shape == (5, 10)


def test_old_mlp_checkpoints_still_load(tmp_path: Path) -> None:
    """Checkpoints written before the network was a choice: an MLP's arguments, no net, no loss."""
    from experiments.checkpoints.load import model_from_checkpoint

    trained = MNISTClassifier(hidden_sizes=[16]).eval()
    hparams = {
        "input_size": 784,
        "num_classes": 10,
        "hidden_sizes": [16],
        "activation": "relu",
        "dropout": 0.0,
        "compile": False,
        "optimizer": {"name": "torch.optim.sgd.SGD", "lr": 0.1},
        "scheduler": None,
    }
    torch.save({"state_dict": trained.state_dict(), "hyper_parameters": hparams}, tmp_path / "old.ckpt")
    model = model_from_checkpoint(tmp_path / "old.ckpt")
    assert isinstance(model.net, MLP)
    x = torch.randn(3, 784)
    assert torch.equal(model(x), trained(x))
    assert model.hparams["loss"]["name"].endswith(".cross_entropy")


# --- losses ---


@pytest.mark.parametrize("name", ["cross_entropy", "focal", "mse"])
def test_each_loss_builds_and_gives_a_finite_loss(name: str) -> None:
    loss = hydra.utils.instantiate(compose_config([f"model/loss={name}"]).model.loss)
    logits = torch.randn(8, 10, requires_grad=True)
    value = loss(logits, torch.arange(8))
    value.backward()
    assert value.shape == () and torch.isfinite(value) and value > 0
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_focal_with_gamma_zero_is_cross_entropy() -> None:
    logits, targets = torch.randn(16, 10), torch.randint(0, 10, (16,))
    expected = nn.functional.cross_entropy(logits, targets)
    assert float(losses.focal(logits, targets, gamma=0.0)) == pytest.approx(float(expected))


def test_losses_by_hand() -> None:
    # p = (0.25, 0.75), true class 1: focal -(1 - 0.75)^2 * log 0.75.
    logits, target = torch.tensor([[math.log(0.25), math.log(0.75)]]), torch.tensor([1])
    assert float(losses.focal(logits, target, gamma=2.0)) == pytest.approx(-(0.25**2) * math.log(0.75))
    # p = (0.5, 0.25, 0.25), true class 0, smoothing 0.3: 0.7 * -log 0.5 + 0.1 * (sum of -log p).
    logits, target = torch.tensor([[math.log(0.5), math.log(0.25), math.log(0.25)]]), torch.tensor([0])
    expected = 0.7 * -math.log(0.5) + 0.1 * -(math.log(0.5) + 2 * math.log(0.25))
    assert float(losses.cross_entropy(logits, target, label_smoothing=0.3)) == pytest.approx(expected)
    # mse: a perfect one-hot prediction costs 0; ten equal logits, (0.9^2 + 9 * 0.1^2) / 10.
    assert float(losses.mse(torch.tensor([[0.0, 200.0, 0.0]]), torch.tensor([1]))) == 0.0
    assert float(losses.mse(torch.zeros(1, 10), torch.tensor([3]))) == pytest.approx(0.09)


def test_focal_gradient_stays_finite_on_a_certain_prediction() -> None:
    logits = torch.tensor([[200.0, 0.0, 0.0]], requires_grad=True)  # p_t rounds to exactly 1
    losses.focal(logits, torch.tensor([0]), gamma=0.5).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


# --- the L1 penalty ---


@pytest.mark.parametrize("overrides", [["model=mlp", "model.batch_norm=true"], ["model=cnn"]])
def test_l1_adds_exactly_l1_times_the_sum_of_the_weights(overrides: list[str]) -> None:
    cfg = compose_config([*overrides, "model.l1=0.01"])
    model: MNISTClassifier = hydra.utils.instantiate(cfg.model, _convert_="all")
    model.trainer = L.Trainer(logger=False, log_every_n_steps=0, enable_checkpointing=False, accelerator="cpu")
    batch = (torch.randn(6, 784), torch.randint(0, 10, (6,)))
    penalised = model.training_step(batch, 0)
    model.l1 = 0.0
    plain = model.training_step(batch, 0)
    # Only Linear and Conv2d weights: no biases, no BatchNorm scales or shifts.
    weights = [m.weight for m in model.net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    expected = 0.01 * sum(float(w.detach().abs().sum()) for w in weights)
    assert float((penalised - plain).detach()) == pytest.approx(expected, rel=1e-5)


def test_model_and_loss_are_in_the_hparams_and_the_checkpoint() -> None:
    cfg = compose_config(["model=cnn", "model/loss=focal", "model.loss.gamma=1.5"])
    model = hydra.utils.instantiate(cfg.model, _convert_="all")
    assert model.hparams["net"] == "cnn"
    assert model.hparams["loss"] == {"name": "experiments.models.losses.focal", "gamma": 1.5}
    assert isinstance(model.criterion, functools.partial)


# --- what every step pays ---


@pytest.mark.parametrize("loss", ["cross_entropy", "focal", "mse"])
def test_the_step_calls_the_configured_loss_directly(loss: str) -> None:
    """Hydra's partials re-check the instantiate policy on every call; the project's own losses are called as
    plain partials of the same function and arguments (experiments.models.classifier.direct_loss)."""
    cfg = compose_config([f"model/loss={loss}"])
    model = hydra.utils.instantiate(cfg.model, _convert_="all")
    configured = hydra.utils.instantiate(cfg.model.loss, _convert_="all")
    assert type(model.criterion) is functools.partial and type(configured) is not functools.partial
    assert model.criterion.func is configured.func and model.criterion.keywords == configured.keywords
    logits, targets = torch.randn(8, 10), torch.randint(0, 10, (8,))
    assert torch.equal(model.criterion(logits, targets), configured(logits, targets))


def test_a_loss_of_ones_own_keeps_hydras_checks() -> None:
    mine = functools.partial(lambda logits, targets: logits.sum())
    assert MNISTClassifier(loss=mine).criterion is mine


def test_the_checkpoint_callbacks_keep_lightnings_state_key() -> None:
    """Checkpoints store the callbacks' state under Lightning's key: old and new checkpoints resume alike."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    cfg = compose_config(["paths.output_dir=/tmp/composed-only"])
    for name in ("model_checkpoint", "last_checkpoint"):
        ours = hydra.utils.instantiate(cfg.callbacks[name])
        stock = ModelCheckpoint(**{k: v for k, v in cfg.callbacks[name].items() if k != "_target_"})
        assert isinstance(ours, ModelCheckpoint) and ours.state_key == stock.state_key
