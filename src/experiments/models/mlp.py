"""The multilayer perceptron: a plain nn.Module that returns logits."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}


class MLP(nn.Sequential):
    """Flatten -> [Linear -> BatchNorm -> activation -> Dropout] * len(hidden_sizes) -> Linear. Returns logits.

    BatchNorm and Dropout only where asked for (batch_norm=True, dropout > 0).
    """

    def __init__(
        self,
        input_size: int = 784,
        hidden_sizes: Sequence[int] = (128, 128),
        num_classes: int = 10,
        activation: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        layers: list[nn.Module] = [nn.Flatten()]
        width = input_size
        for hidden in hidden_sizes:
            # BatchNorm subtracts the mean: a bias before it would be cancelled.
            layers.append(nn.Linear(width, hidden, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)
        self.input_shape = (input_size,)  # pixels per image, flattened
