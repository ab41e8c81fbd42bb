"""Lightning's TensorBoardLogger without the `epoch` scalar.

Lightning's logger connector adds `epoch` (the epoch counter) to every batch of metrics logged without a
`step` value, so each run gets an `epoch` chart: a staircase that TensorBoard's Time Series, which opens the
first tag groups in name order, shows before the curves being compared. The public `log_metrics` is where
a logger receives those metrics; this one drops the key and passes the rest on. A metric a LightningModule
logs itself under the bare name `epoch` is dropped too (use a name with a group, e.g. `train/epoch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only


class TensorBoardLogger(LightningTensorBoardLogger):
    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        curves = {key: value for key, value in metrics.items() if key != "epoch"}
        if curves:
            super().log_metrics(curves, step)
