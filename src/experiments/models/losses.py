"""Losses on logits: `loss(logits, targets)` -> the batch mean. The config picks one (conf/model/loss/) as a
partial: its settings bound, the logits and targets given by the LightningModule at each step."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """-log p_t; with label smoothing, against targets that put label_smoothing / num_classes on every class."""
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def focal(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss, -(1 - p_t)^gamma * log p_t: easy examples (p_t near 1) count less. gamma=0 is cross-entropy."""
    log_p = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    # At p_t = 1 the gradient of (1 - p_t)^gamma is infinite for gamma < 1; the floor keeps it finite.
    weight = (1 - log_p.exp()).clamp(min=torch.finfo(log_p.dtype).tiny).pow(gamma)
    return -(weight * log_p).mean()


def mse(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the softmax probabilities and one-hot targets, over all classes and examples."""
    probabilities = logits.softmax(-1)
    return F.mse_loss(probabilities, F.one_hot(targets, logits.shape[-1]).to(probabilities.dtype))


# By name, for rebuilding the loss a checkpoint describes.
LOSSES = {loss.__name__: loss for loss in (cross_entropy, focal, mse)}
