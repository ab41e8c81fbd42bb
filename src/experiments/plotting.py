"""Matplotlib without pyplot (no GUI backend, no global figure registry), for the figures of a run
(experiments.tensorboard.figures) and of a sweep (experiments.sweeps.figures): a new figure, drawn once
into an RGB array for TensorBoard, or saved as a PNG atomically.

matplotlib is imported inside the functions: it is slow to import and only the end of a run needs it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from experiments import atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def render(fig: Figure, dpi: int = 90) -> np.ndarray:
    """Draw once into an RGB array, reused for the PNG file and for TensorBoard."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """The figure as a PNG file, written atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    atomic.write_bytes(path, buffer.getvalue())
    return path
