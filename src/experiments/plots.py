"""Matplotlib figures for runs: sample test predictions and a confusion matrix.

matplotlib is imported inside the functions: it costs ~0.5 s and only the end of a run needs it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure registry

    return Figure(figsize=(width, height), layout="constrained")


def predictions_figure(images: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor, classes: list[str]) -> Figure:
    """A grid of test images titled 'predicted (probability)'; wrong predictions in red."""
    count = len(images)
    cols = min(8, count)
    rows = math.ceil(count / cols)
    fig = _figure(1.6 * cols, 1.9 * rows)
    confidence, predicted = probs.max(dim=-1)
    for i in range(count):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(images[i].reshape(28, 28).float().numpy(), cmap="gray")
        ok = int(predicted[i]) == int(labels[i])
        title = f"{classes[predicted[i]]} ({confidence[i]:.2f})"
        if not ok:
            title += f"\ntrue: {classes[labels[i]]}"
        ax.set_title(title, fontsize=8, color="black" if ok else "red")
        ax.axis("off")
    return fig


def confusion_matrix_figure(confusion: torch.Tensor, classes: list[str]) -> Figure:
    """Counts with row-normalised colour (so rare classes are as readable as common ones)."""
    counts = confusion.long().numpy()
    rates = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    n = len(classes)
    fig = _figure(0.6 * n + 2.5, 0.6 * n + 2)
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for true in range(n):
        for pred in range(n):
            if counts[true, pred]:
                color = "white" if rates[true, pred] > 0.5 else "black"
                ax.text(pred, true, str(counts[true, pred]), ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = counts.trace() / max(counts.sum(), 1)
    ax.set_title(f"Test confusion matrix (accuracy {accuracy:.2%})")
    fig.colorbar(image, ax=ax, label="fraction of true class")
    return fig
