"""`experiments-lr-find`: Lightning's range test on generated data, in-process through its entry point."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.commands.lr_find import main
from tests.conftest import FAST_RUN, CliResult, call_main
from tests.tensorboard_views import accumulator

# The generated training set (500 images after data.val_size=100) is 16 batches of 32: the search below
# runs over several epochs, which the finder's step limit (not the configured max_epochs) governs.
SHORT = ["data.val_size=100", "data.batch_size=32", "trainer.accelerator=cpu", "trainer.enable_model_summary=false"]


@pytest.fixture
def lr_find(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], mnist_dir: Path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")

    def invoke(*overrides: str) -> CliResult:
        argv = ["experiments-lr-find", f"paths.data_dir={mnist_dir}", f"paths.log_dir={tmp_path / 'outputs'}"]
        return call_main(main, [*argv, *SHORT, *overrides], capsys)

    return invoke


def test_suggests_a_rate_on_the_curve_and_writes_plot_json_and_tensorboard(
    lr_find, cli, tmp_path: Path, mnist_dir: Path
) -> None:
    result = lr_find("lr_find.num_training=40", "trainer.max_epochs=1", "model.hidden_sizes=[64]")
    assert result.code == 0, result.err[-3000:]
    suggested = re.search(r"^Suggested learning rate: (\S+)", result.out, re.M)
    assert suggested, result.out
    (out_dir,) = (tmp_path / "outputs" / "lr_find").iterdir()
    record = json.loads((out_dir / "lr_find.json").read_text())
    # trainer.max_epochs=1 would stop after 16 steps: the search is measured in steps.
    assert record["steps"] == len(record["lr"]) == len(record["loss"]) == 40
    assert record["lr"] == sorted(record["lr"]) and record["lr"][0] == pytest.approx(1e-6)
    assert float(suggested.group(1)) == pytest.approx(record["suggested_lr"], rel=1e-2)
    index = record["lr"].index(record["suggested_lr"])
    assert 10 <= index < 39, "Lightning skips the first 10 points and the last"
    loss = record["loss"]
    assert loss[index + 1] < loss[index] < loss[index - 1] < max(loss[:index]), "where the loss falls"
    assert (out_dir / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = accumulator(out_dir)
    assert len(events.Scalars("lr_find/loss")) == sum(loss is not None for loss in record["loss"])
    assert [e.value for e in events.Scalars("lr_find/lr")] == pytest.approx(record["lr"], rel=1e-6)
    assert events.Tags()["images"] == ["lr_find/curve"]
    assert not list(out_dir.glob("*.ckpt")), "Lightning's temporary checkpoint is removed"

    # The printed command trains with the suggestion and the same settings (the finder's own left out).
    command = re.search(r"^Train with it: (.+)$", result.out, re.M)
    assert command, result.out
    words = shlex.split(command.group(1))
    assert Path(words[0]).name == "experiments-train"
    assert f"model.optimizer.lr={suggested.group(1)}" in words and "model.hidden_sizes=[64]" in words
    assert not any(w.startswith("lr_find.") for w in words)
    trained = cli(*words[1:], *FAST_RUN)
    assert trained.code == 0, trained.err[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["lr"] == float(suggested.group(1))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lr_find.num_training=5", "lr_find.num_training=5 must be >= 20"),
        ("lr_find.max_lr=1e-7", "lr_find.max_lr=1e-07 must be > lr_find.min_lr=1e-06"),
        ("lr_find.mode=cubic", "lr_find.mode=cubic is not supported; choose exponential | linear"),
        ("lr_find.early_stop_threshold=0.5", "lr_find.early_stop_threshold=0.5 must be >= 1"),
        ("data.train_size=100000", "data.train_size=100000 is more than the 500 training images"),
        ("model.optimizer.lr=-1", "model.optimizer.lr=-1 must be > 0"),
    ],
)
def test_mistakes_are_one_line(lr_find, tmp_path: Path, override: str, message: str) -> None:
    result = lr_find(override)
    assert result.code == 1
    assert len(result.error_lines) == 1 and message in result.error_lines[0], result.err
    assert "Traceback" not in result.err
    assert not list((tmp_path / "outputs").rglob("lr_find.json"))


@pytest.mark.parametrize(
    "overrides", [[], ["experiment=mnist_adam", "logger=none"], ["model=cnn", "data=fashion_mnist"]]
)
def test_composes_what_train_py_composes_and_its_own_settings(overrides: list[str]) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from experiments.commands import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        found, trained = (
            OmegaConf.to_container(compose(config_name=name, overrides=["paths.output_dir=/tmp/x", *overrides]))
            for name in ("lr_find", "train")
        )
    assert isinstance(found, dict) and set(found.pop("lr_find")) >= {"min_lr", "max_lr", "num_training"}
    assert found == trained


def test_the_console_script_registers_what_train_yaml_needs() -> None:
    """Its own process: train.py's module (imported by the other tests) is not there to register them."""
    code = (
        "import experiments.commands.lr_find; from omegaconf import OmegaConf; "
        "from hydra.core.config_store import ConfigStore; "
        "names = ['run_dir', 'hydra_subdir', 'run_suffix', 'job_subdir']; "
        "assert all(OmegaConf.has_resolver('experiments.' + n) for n in names); "
        "assert ConfigStore.instance().repo['schema']['lr_find.yaml']"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
