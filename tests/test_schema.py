"""The config schema (experiments.config.schema): every shipped option passes it, its messages read as documented,
the trainer still takes any Lightning argument, and a config mistake is answered without importing torch."""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from lightning.pytorch.callbacks import Timer
from omegaconf import DictConfig

from experiments.config import schema
from experiments.errors import ConfigError
from experiments.train import CONFIG_DIR


def composed(*overrides: str) -> DictConfig:
    """The config a run gets (without the hydra node); output paths need no Hydra run."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=["paths.output_dir=/tmp/run", *overrides])


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def test_name_lists_match_the_code() -> None:
    """The schema keeps copies of these names so that it needs no torch import."""
    from experiments.data.datamodule import LOADERS
    from experiments.data.files import DATASETS
    from experiments.models.classifier import NETWORKS
    from experiments.models.mlp import ACTIVATIONS

    assert tuple(NETWORKS) == schema.NETWORKS
    assert {s.NET for s in schema.SCHEMAS.values() if issubclass(s, schema.ModelConfig)} == set(NETWORKS)
    assert tuple(ACTIVATIONS) == schema.ACTIVATIONS
    assert tuple(DATASETS) == schema.DATASETS
    assert {name: len(cls.classes) for name, cls in DATASETS.items()} == schema.NUM_CLASSES
    assert schema.LOADERS == LOADERS


SHIPPED = [
    *(f"data={o}" for o in options("data")),
    *(f"model={m} model/loss={o}" for m in options("model") for o in options("model/loss")),
    *(
        f"model/optimizer={o} model/scheduler={s}"
        for o in options("model/optimizer")
        for s in options("model/scheduler")
    ),
    *(f"trainer={o}" for o in options("trainer")),
    *(f"logger={o}" for o in options("logger")),
    *(f"callbacks={o}" for o in options("callbacks")),
    *(f"debug={o}" for o in options("debug")),
    *(f"experiment={o}" for o in options("experiment")),
    "hparams_search=optuna",
]


@pytest.mark.parametrize("overrides", SHIPPED)
def test_every_shipped_option_passes_the_schema(overrides: str) -> None:
    cfg = composed(*overrides.split())
    schema.validate(cfg, overrides.split())
    assert cfg.model.net in schema.NETWORKS


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.optimizer.lr=0"], "model.optimizer.lr=0 must be > 0"),
        (["model.optimizer.lr=1e300"], "model.optimizer.lr=1e+300 must be <= 10: a larger learning rate is a typo"),
        (["model.optimizer.momentum=-0.5"], "model.optimizer.momentum=-0.5 must be in [0, 1)"),
        (
            ["model/optimizer=adam", "model.optimizer.betas=[0.9,1.5]"],
            "model.optimizer.betas=[0.9, 1.5] must be two numbers, each in [0, 1), e.g. [0.9,0.999]",
        ),
        (["model.scheduler.pct_start=5"], "model.scheduler.pct_start=5 must be in [0, 1]"),
        (["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch=0 must be >= 1, or null"),
        (["trainer.log_every_n_steps=-1"], "trainer.log_every_n_steps=-1 must be >= 0 (0: no per-step logs)"),
        (["data.std=nan"], "data.std=nan must be > 0 and in [0, 1] (pixels are read into [0, 1])"),
        (
            ["model.activation=swish"],
            "model.activation=swish is not supported; choose relu | tanh | sigmoid | leaky_relu | gelu",
        ),
        (["model.compile=yes"], "model.compile=yes must be true or false"),
        (["model.l1=-1"], "model.l1=-1 must be in [0, 1]: a larger penalty is a typo"),
        (
            ["model/loss=focal", "model.loss.gamma=-1"],
            "model.loss.gamma=-1 must be in [0, 10]: a larger one leaves no loss",
        ),
        (["model.loss.label_smoothing=1"], "model.loss.label_smoothing=1 must be in [0, 1)"),
        (
            ["model=cnn", "model.activation=swish"],
            "model.activation=swish is not supported; choose relu | tanh | sigmoid | leaky_relu | gelu",
        ),
        (
            ["model=linear", "model.net=mlp"],
            "model.net=mlp is not the network model=linear configures; pick a network with model=linear|mlp|cnn",
        ),
        (
            ["trainer.max_epochs=-1"],
            "trainer.max_epochs=-1 trains forever; set trainer.max_steps > 0 or trainer.max_time",
        ),
    ],
)
def test_messages_name_key_value_and_rule(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        schema.validate(composed(*overrides), overrides)
    assert str(refused.value) == message


def test_command_line_booleans_are_true_or_false() -> None:
    """OmegaConf would read `yes`, `on` and `1` as true; the schema asks for true or false."""
    for given in ("yes", "on", "1", "0"):
        with pytest.raises(ConfigError, match=f"^train={given} must be true or false$"):
            schema.validate(composed(f"train={given}"), [f"train={given}"])
    schema.validate(composed("train=false", "model.compile=true"), ["train=false", "model.compile=true"])
    schema.validate(composed("trainer.fast_dev_run=3"), ["trainer.fast_dev_run=3"])  # an int there means batches


def test_trainer_takes_any_lightning_argument() -> None:
    """README: any Trainer argument works with `+trainer.<name>=...`; Lightning checks those it builds."""
    overrides = [
        "+trainer.num_nodes=1",
        "+trainer.reload_dataloaders_every_n_epochs=2",
        "+trainer.max_time=00:00:01:00",  # in default.yaml as null: `+` may set it, as may a plain override
        "trainer.val_check_interval=00:00:00:30",
    ]
    cfg = composed(*overrides)
    schema.validate(cfg, overrides)
    trainer = hydra.utils.instantiate(cfg.trainer, _convert_="all", logger=False, enable_checkpointing=False)
    assert isinstance(trainer, L.Trainer)
    assert trainer.reload_dataloaders_every_n_epochs == 2
    assert any(isinstance(c, Timer) for c in trainer.callbacks)
    schema.validate(composed("trainer.max_time=00:00:01:00"), [])


def test_typos_in_trainer_keys_are_refused_while_composing() -> None:
    with pytest.raises(ConfigCompositionException, match=r"trainer\.max_epoch"):
        composed("trainer.max_epoch=3")


def test_config_mistakes_are_answered_without_torch(run_train, tmp_path: Path) -> None:
    """Through a real interpreter: one line, exit 1, and neither torch nor Lightning imported."""
    for override, answer in [
        ("model.optimizer.lr=0", "error: model.optimizer.lr=0 must be > 0"),
        ("seed=abc", "error: seed=abc: Value 'abc' of type 'str' could not be converted to Integer"),
    ]:
        result = run_train(override, env={"PYTHONPROFILEIMPORTTIME": "1"})
        imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
        messages = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
        assert result.returncode == 1, result.stderr
        assert messages == [answer], "one line (experiments.config.mistakes)"
        assert "omegaconf" in imported and not {"torch", "lightning"} & imported
    assert not (tmp_path / "outputs" / "runs").exists() or not any((tmp_path / "outputs" / "runs").iterdir())


def test_type_errors_show_the_trace_on_request(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigCompositionException, match="seed=abc"):
        cli("seed=abc")
