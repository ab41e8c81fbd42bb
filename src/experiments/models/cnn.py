"""A LeNet-5-style convolutional network for 28x28 grayscale images. Returns logits."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from experiments.models.mlp import ACTIVATIONS


class LeNet(nn.Module):
    """[Conv 5x5 -> activation -> MaxPool 2] * 2 -> Flatten -> [Linear -> activation] * len(hidden_sizes) -> Linear.

    The first convolution pads by 2 so that 28x28 inputs keep LeNet-5's 32x32 geometry: 28 -> 14 -> 10 -> 5.
    """

    input_shape = (28, 28)  # rows, columns: the geometry above is fixed

    def __init__(
        self,
        channels: Sequence[int] = (6, 16),
        hidden_sizes: Sequence[int] = (120, 84),
        num_classes: int = 10,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        first, second = channels
        act = ACTIVATIONS[activation]
        self.features = nn.Sequential(
            nn.Conv2d(1, first, kernel_size=5, padding=2),
            act(),
            nn.MaxPool2d(2),
            nn.Conv2d(first, second, kernel_size=5),
            act(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        layers: list[nn.Module] = []
        width = second * 5 * 5
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), act()]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The resident data path hands over flattened (N, 784) rows, the DataLoader path (N, 1, 28, 28) images.
        return self.classifier(self.features(x.reshape(-1, 1, 28, 28)))
