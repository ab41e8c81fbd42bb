"""Real data, when present: Debian's Fashion-MNIST package (CI installs it when it can)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason="apt-get install dataset-fashion-mnist to run this check",
)
def test_one_epoch_on_real_fashion_mnist_reaches_80_percent(cli, tmp_path: Path) -> None:
    # data_dir is empty: the files must be found through the data config's Debian search path.
    result = cli(
        "data=fashion_mnist",
        f"paths.data_dir={tmp_path / 'empty'}",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "callbacks.progress_bar.refresh_rate=0",
    )
    assert result.code == 0, result.err
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["dataset"] == "fashion_mnist"
    assert record["metrics"]["test/acc"] >= 0.80
