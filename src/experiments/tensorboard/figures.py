"""The figures of a run, after its test: its predictions on a fixed set of hard test images and a confusion
matrix, as PNGs in the run directory and as images in TensorBoard."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from experiments.atomic import atomic_write
from experiments.plotting import new_figure, render

if TYPE_CHECKING:
    import lightning as L
    from matplotlib.figure import Figure


def hard_examples(images: torch.Tensor, labels: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the `count` test images that lie nearest another class: largest distance to their own
    class's mean image minus distance to the nearest other class's mean, ties by index.

    The choice depends on the test set only, not on the model: every run on the same data shows the same
    images, so runs of a sweep can be compared image by image, and these atypical images are where models
    err (a random or first-N choice, from a test set the model mostly gets right, shows almost no mistakes).
    Invariant to the datamodule's normalisation (one affine map for all images).
    """
    flat = images.reshape(len(images), -1).float()
    classes = int(labels.max()) + 1
    sums = torch.zeros(classes, flat.shape[1]).index_add_(0, labels, flat)
    means = sums / torch.bincount(labels, minlength=classes).clamp(min=1).unsqueeze(1)
    distances = torch.cdist(flat, means)
    own = distances.gather(1, labels.unsqueeze(1)).squeeze(1)
    others = distances.scatter(1, labels.unsqueeze(1), float("inf")).min(dim=1).values
    order = torch.sort(others - own, stable=True).indices  # most negative first: nearer another class than its own
    return order[:count].sort().values


def predictions_figure(
    images: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor, classes: list[str], title: str = ""
) -> Figure:
    """Test images tiled into one picture, each captioned 'predicted (probability)'; mistakes in red, with
    the true label.

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
    fig = new_figure(1.2 * cols, 1.5 * rows)
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
    if title:
        ax.set_title(title, fontsize=8)
    return fig


def confusion_matrix_figure(confusion: torch.Tensor, classes: list[str]) -> Figure:
    """Counts with row-normalised colour (so rare classes are as readable as common ones)."""
    counts = confusion.long().numpy()
    rates = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    n = len(classes)
    fig = new_figure(0.6 * n + 2.5, 0.6 * n + 2)
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


def write_test_figures(trainer: L.Trainer, model: L.LightningModule, datamodule: Any, num_samples: int) -> None:
    """After testing: the confusion matrix and the predictions on `num_samples` hard test images (the same
    in every run: `hard_examples`), in TensorBoard and as PNGs.

    A function called once after `trainer.test`, not a callback: Lightning calls every callback's hooks on
    every training step, and these figures need nothing from those steps.
    """
    from lightning.pytorch.loggers import TensorBoardLogger
    from PIL import Image

    confusion = model.test_confusion.compute().cpu()  # every rank: compute() syncs under DDP
    if not trainer.is_global_zero or trainer.fast_dev_run or num_samples <= 0:
        return
    classes = getattr(datamodule, "classes", None) or [str(i) for i in range(len(confusion))]
    batches = list(datamodule.test_dataloader())
    x, y = torch.cat([b[0].cpu() for b in batches]), torch.cat([b[1].cpu() for b in batches])
    chosen = hard_examples(x, y, num_samples)
    x, y = x[chosen], y[chosen]
    model.eval()
    with torch.inference_mode():
        probabilities = model(x.to(model.device)).float().softmax(-1).cpu()
    wrong = int((probabilities.argmax(-1) != y).sum())
    title = (
        f"The {len(y)} test images nearest another class (the same in every run on this test set): "
        f"this run got {wrong} wrong (red, with the true label)"
    )
    figures = {
        "test/confusion_matrix": confusion_matrix_figure(confusion, classes),
        "test/predictions": predictions_figure(x, y, probabilities, classes, title),
    }
    out_dir = Path(trainer.default_root_dir)
    for tag, figure in figures.items():
        image = render(figure)
        with atomic_write(out_dir / f"{tag.split('/')[-1]}.png") as png:
            Image.fromarray(image).save(png, format="PNG")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_image(tag, image, global_step=trainer.global_step, dataformats="HWC")
