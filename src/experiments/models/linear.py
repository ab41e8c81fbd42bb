"""Softmax regression: one linear layer from pixels to class scores. Returns logits."""

from __future__ import annotations

from torch import nn


class SoftmaxRegression(nn.Sequential):
    """Flatten -> Linear. The softmax lives in the loss (and in predict), not in the network."""

    def __init__(self, input_size: int = 784, num_classes: int = 10) -> None:
        super().__init__(nn.Flatten(), nn.Linear(input_size, num_classes))
        self.input_shape = (input_size,)  # pixels per image, flattened
