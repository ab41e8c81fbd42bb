"""Every common Trainer option works from the command line and means what Lightning's documentation says.

Generated data: 500 training images in batches of 32 (16 batches, one optimizer step each, per epoch),
100 validation and 200 test images. Each case trains a few batches through the real `train.py` entry
point and checks the option's effect with a probe callback (tests.faults.Probe), run.json or TensorBoard.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import CliResult
from tests.faults import Probe

BATCHES_PER_EPOCH = 16
BASE = [
    "trainer.accelerator=cpu",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "callbacks.progress_bar.refresh_rate=0",
    "test_figures=0",
    "data.batch_size=32",
    "data.val_size=100",
    "data.eval_batch_size=20",  # 5 validation and 10 test batches
    "+callbacks.probe._target_=tests.faults.Probe",
]


class Run:
    def __init__(self, result: CliResult, outputs: Path) -> None:
        assert result.code == 0, result.err
        self.out = result.out
        self.dir = max((outputs / "runs").iterdir(), key=lambda d: d.stat().st_mtime_ns)  # this call's run
        self.record = json.loads((self.dir / "run.json").read_text())
        assert Probe.last is not None
        self.probe: Probe = Probe.last

    def scalar_steps(self, tag: str) -> list[int]:
        events = EventAccumulator(str(self.dir), size_guidance={"scalars": 0})
        events.Reload()
        return [e.step for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


@pytest.fixture
def train(cli, mnist_dir: Path, tmp_path: Path) -> Callable[..., Run]:
    def run(*overrides: str) -> Run:
        Probe.last = None
        return Run(cli(f"paths.data_dir={mnist_dir}", *BASE, *overrides), tmp_path / "outputs")

    return run


def test_max_steps_with_unlimited_epochs(train) -> None:
    run = train("trainer.max_epochs=-1", "trainer.max_steps=21")
    assert run.record["global_step"] == 21, "stops after exactly max_steps optimizer steps, mid-epoch"
    assert len(run.probe.grad_norms) == 21


def test_limit_train_batches_counts_optimizer_steps(train) -> None:
    run = train("trainer.max_epochs=2", "trainer.limit_train_batches=3")
    assert run.record["global_step"] == 6
    assert [row["global_step"] for row in run.record["history"]] == [3, 6]


def test_limit_train_batches_as_a_fraction(train) -> None:
    run = train("trainer.max_epochs=1", "trainer.limit_train_batches=0.5")
    assert run.record["global_step"] == BATCHES_PER_EPOCH // 2


def test_accumulate_grad_batches_steps_every_n_batches(train) -> None:
    run = train("trainer.max_epochs=2", "trainer.accumulate_grad_batches=4")
    assert run.record["global_step"] == 2 * BATCHES_PER_EPOCH // 4
    assert len(run.probe.train_targets[0]) == BATCHES_PER_EPOCH, "every batch is still seen"


def test_limit_val_and_test_batches(train) -> None:
    run = train(
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=5",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=3",
    )
    assert run.probe.val_batches == [2, 2]
    assert run.probe.test_batches == 3


def test_val_check_interval_validates_within_the_epoch(train) -> None:
    run = train("trainer.max_epochs=1", "trainer.val_check_interval=4")
    assert run.probe.val_batches == [5, 5, 5, 5], "after batches 4, 8, 12 and 16"
    assert run.scalar_steps("val/acc") == [4, 8, 12, 16]


def test_check_val_every_n_epoch(train) -> None:
    run = train("trainer.max_epochs=4", "trainer.limit_train_batches=3", "trainer.check_val_every_n_epoch=2")
    assert len(run.probe.val_batches) == 2
    assert run.scalar_steps("val/acc") == [6, 12]


def test_gradient_clipping_by_norm_bounds_the_update(train) -> None:
    free = train("trainer.max_epochs=1", "trainer.limit_train_batches=5")
    assert max(free.probe.grad_norms) > 0.05, "the test needs gradients larger than the clip"
    clipped = train("trainer.max_epochs=1", "trainer.limit_train_batches=5", "trainer.gradient_clip_val=0.05")
    assert max(clipped.probe.grad_norms) <= 0.05 * (1 + 1e-4)


def test_gradient_clipping_by_value(train) -> None:
    run = train(
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=5",
        "trainer.gradient_clip_val=0.001",
        "trainer.gradient_clip_algorithm=value",
    )
    assert max(run.probe.grad_max_abs) == pytest.approx(0.001), "clamped to [-0.001, 0.001] (float32)"


def test_bf16_mixed_precision_runs_the_network_in_bfloat16(train) -> None:
    run = train("trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.precision=bf16-mixed")
    assert run.probe.activation_dtypes == {torch.bfloat16}
    assert run.record["status"] == "completed"


def test_32_true_precision_is_float32(train) -> None:
    run = train("trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.precision=32-true")
    assert run.probe.activation_dtypes == {torch.float32}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="16-mixed needs a CUDA GPU")
def test_16_mixed_precision_on_gpu(train) -> None:
    run = train(
        "trainer.accelerator=gpu", "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.precision=16-mixed"
    )
    assert run.probe.activation_dtypes == {torch.float16}


def test_16_mixed_on_cpu_falls_back_to_bf16_as_lightning_documents(train) -> None:
    run = train("trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.precision=16-mixed")
    assert run.probe.activation_dtypes == {torch.bfloat16}


def test_detect_anomaly_and_deterministic(train) -> None:
    run = train(
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.detect_anomaly=true",
        "trainer.deterministic=true",
    )
    assert run.probe.anomaly and run.probe.deterministic


def test_overfit_batches_repeats_the_same_batches(train) -> None:
    run = train("trainer.max_epochs=2", "trainer.overfit_batches=3")
    assert run.record["global_step"] == 6
    first, second = run.probe.train_targets[0], run.probe.train_targets[1]
    assert len(first) == 3 and all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_fast_dev_run_takes_one_batch_of_each(train) -> None:
    run = train("trainer.fast_dev_run=true")
    assert run.record["global_step"] == 1
    assert run.probe.val_batches == [1] and run.probe.test_batches == 1


def test_profiler(train) -> None:
    run = train("trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.profiler=simple")
    assert run.probe.profiler == "SimpleProfiler"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainer.gradient_clip_algorithm=sideways", "trainer.gradient_clip_algorithm"),
        ("trainer.val_check_interval=1000", "trainer.val_check_interval"),
        ("trainer.precision=12-bit", "trainer.precision"),
        ("trainer.max_epochs=-1", "trainer.max_epochs"),
        ("trainer.limit_train_batches=4", "model.scheduler"),  # one-cycle: no warm-up phase in 4 steps
    ],
)
def test_values_lightning_rejects_get_one_line(cli, mnist_dir: Path, tmp_path: Path, override: str, key: str) -> None:
    result = cli(f"paths.data_dir={mnist_dir}", *BASE, "trainer.max_epochs=1", override)
    assert result.code == 1 and "Traceback" not in result.err, result.err
    (line,) = result.error_lines
    assert key in line
    runs = tmp_path / "outputs" / "runs"
    assert not runs.exists() or not any(runs.iterdir()), "no run directory left behind"
