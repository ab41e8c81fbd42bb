"""The model in one line when training starts: network, layer widths and parameter count.

Instead of Lightning's ModelSummary table (conf/trainer/default.yaml sets enable_model_summary: false),
whose rows here are mostly the metrics (torchmetrics objects are modules) and which turns into an 18-line
Rich table with a column of zero FLOPs whenever `rich` happens to be installed. `trainer.enable_model_summary=
true` brings Lightning's own back (and this line steps aside).
"""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelSummary
from torch import nn

log = logging.getLogger(__name__)


def describe(net: nn.Module) -> str:
    """`MLP 784-128-128-10`, `LeNet conv 1-6-16, fc 400-120-84-10`: the widths of its conv and linear layers."""
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    parts = []
    if convs:
        parts.append("conv " + "-".join(str(w) for w in [convs[0].in_channels, *(m.out_channels for m in convs)]))
    if linears:
        widths = "-".join(str(w) for w in [linears[0].in_features, *(m.out_features for m in linears)])
        parts.append(f"fc {widths}" if convs else widths)
    return " ".join([type(net).__name__, ", ".join(parts)]).strip()


class OneLineSummary(Callback):
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or any(isinstance(c, ModelSummary) for c in trainer.callbacks):
            return
        total = sum(p.numel() for p in pl_module.parameters())
        trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        frozen = "" if trainable == total else f" ({trainable:,} trainable)"
        log.info(f"Model: {describe(getattr(pl_module, 'net', pl_module))}, {total:,} parameters{frozen}")
