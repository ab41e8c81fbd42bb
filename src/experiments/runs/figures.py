"""Matplotlib figures for runs: sample test predictions and a confusion matrix.

matplotlib is imported inside the functions: it is slow to import and only the end of a run needs it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure registry

    return Figure(figsize=(width, height), layout="constrained")


def predictions_figure(images: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor, classes: list[str]) -> Figure:
    """Test images tiled into one picture, each captioned 'predicted (probability)'; mistakes in red.

    One axes with a montage instead of one axes per image: drawing is several times faster.
    """
    import matplotlib

    count = len(images)
    cols = min(8, count)
    rows = math.ceil(count / cols)
    caption_px, gap_px = 16, 2  # a white band above each 28x28 tile for its caption
    cell_h, cell_w = 28 + caption_px, 28 + gap_px
    canvas = torch.full((rows * cell_h, cols * cell_w), float("nan"))  # NaN renders as white
    for i, image in enumerate(images.reshape(count, 28, 28).float()):
        row, col = divmod(i, cols)
        canvas[row * cell_h + caption_px : (row + 1) * cell_h, col * cell_w : col * cell_w + 28] = image
    fig = _figure(1.2 * cols, 1.5 * rows)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="white")
    ax.imshow(canvas.numpy(), cmap=cmap, interpolation="nearest")
    confidence, predicted = probs.max(dim=-1)
    for i in range(count):
        row, col = divmod(i, cols)
        ok = int(predicted[i]) == int(labels[i])
        caption = f"{classes[predicted[i]]} ({confidence[i]:.2f})" + ("" if ok else f"\ntrue: {classes[labels[i]]}")
        x, y = col * cell_w + 14, row * cell_h + caption_px - 1
        ax.text(x, y, caption, ha="center", va="bottom", fontsize=6, color="black" if ok else "red")
    ax.axis("off")
    return fig


def render(fig: Figure, dpi: int = 90) -> np.ndarray:
    """Draw once into an RGB array, reused for the PNG file and for TensorBoard."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


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
