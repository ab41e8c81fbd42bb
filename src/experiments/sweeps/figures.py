"""Sweep figures: best val accuracy over a batch size x learning rate grid, the trials of a search (Optuna)
as a scatter, val accuracy curves per job, and the mean test accuracy of each configuration of a sweep
over seeds.

matplotlib is imported inside the functions (no pyplot, no GUI backend): only the report needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from experiments.config.names import short_overrides
from experiments.plotting import new_figure
from experiments.sweeps.results import COMPLETED, FAILED, INCOMPLETE, NOT_STARTED, JobResult, varying_overrides
from experiments.sweeps.stats import BEST, WITHIN_NOISE, ConfigResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# A sweep without a plan (experiments.sweeps.plan) with more distinct values than this on an axis was
# not a grid (a search draws continuous lrs): its jobs are drawn as a scatter, as a search's are.
MAX_GRID_VALUES = 10
_COLOR_SPAN = 10.0  # accuracy points covered by the heatmap's colour scale
_ZOOM_SPAN = 5.0  # accuracy points shown in the curves' zoomed panel
# Bars more than this many accuracy points below the best mean (chance level) are cut off at the left
# edge: drawn in full, they would squash the differences between the good configurations.
_BAR_SPAN = 10.0


def _best_per_cell(jobs: list[JobResult]) -> dict[tuple[int, float], JobResult]:
    """One job per (batch size, lr) cell: the best one, when other knobs were swept too."""
    cells: dict[tuple[int, float], JobResult] = {}
    for job in jobs:  # jobs come best first
        if job.batch_size is not None and job.lr is not None:
            cells.setdefault((job.batch_size, job.lr), job)
    return cells


def _grid(ax: Axes, cells: dict[tuple[int, float], JobResult]) -> None:
    import matplotlib
    import numpy as np

    sizes = sorted({b for b, _ in cells})
    lrs = sorted({lr for _, lr in cells})
    values = np.full((len(sizes), len(lrs)), np.nan)
    for (size, lr), job in cells.items():
        if job.val_acc_best is not None:
            values[sizes.index(size), lrs.index(lr)] = job.val_acc_best * 100
    finite = values[np.isfinite(values)]
    high = float(finite.max()) if finite.size else 100.0
    # Diverged jobs (chance level) would flatten every good cell into one colour: the scale spans the top
    # _COLOR_SPAN points and anything lower gets the darkest colour (the number is printed anyway).
    low = max(float(finite.min()) if finite.size else 0.0, high - _COLOR_SPAN)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    image = ax.imshow(values, cmap=cmap, vmin=low, vmax=high)
    clipped = finite.size and finite.min() < low
    ax.figure.colorbar(image, ax=ax, label="best val accuracy (%)", extend="min" if clipped else "neither")
    mid = (low + high) / 2
    for (size, lr), job in cells.items():
        row, col = sizes.index(size), lrs.index(lr)
        if job.val_acc_best is None:
            ax.text(col, row, job.status, ha="center", va="center", fontsize=8, color="black")
        else:
            text = f"{job.val_acc_best:.2%}" + ("" if job.status == COMPLETED else f"\n{job.status}")
            color = "black" if job.val_acc_best * 100 > mid else "white"
            ax.text(col, row, text, ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set_yticks(range(len(sizes)), [str(s) for s in sizes])


def heatmap_figure(jobs: list[JobResult], title: str = "Best validation accuracy") -> Figure:
    cells = _best_per_cell(jobs)
    sizes = {b for b, _ in cells}
    lrs = {lr for _, lr in cells}
    fig = new_figure(max(4.5, 1.1 * len(lrs) + 2.5), max(3.0, 0.7 * len(sizes) + 1.5))
    ax = fig.add_subplot()
    if not cells:
        ax.text(0.5, 0.5, "no job with a batch size and a learning rate", ha="center", va="center")
        ax.set_axis_off()
    else:
        _grid(ax, cells)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("batch size")
    ax.set_title(title)
    return fig


def is_grid(jobs: list[JobResult]) -> bool:
    """Whether jobs without a plan read as a batch size x lr grid (few distinct values on each axis)."""
    cells = _best_per_cell(jobs)
    return len({b for b, _ in cells}) <= MAX_GRID_VALUES and len({lr for _, lr in cells}) <= MAX_GRID_VALUES


def scatter_figure(jobs: list[JobResult], metric: str = "val/acc_best") -> Figure:
    """The trials of a search, one point each: the optimised metric over the learning rate (log axis),
    coloured by batch size; hollow for an interrupted trial (its best epoch so far). A trial that failed
    (e.g. diverged) or never reached a value is an 'x' along the bottom at its lr, so it is seen but does
    not stretch the metric's axis. Trials not started have no lr yet: the title counts them."""
    import matplotlib

    fig = new_figure(7.5, 4.5)
    ax = fig.add_subplot()
    percent = "acc" in metric  # accuracies are stored as fractions and shown in %, like everywhere else
    scale = 100.0 if percent else 1.0
    drawn = [j for j in jobs if j.lr is not None and j.status != NOT_STARTED]
    with_value = [j for j in drawn if j.status in (COMPLETED, INCOMPLETE) and j.value(metric) is not None]
    without = [j for j in drawn if j not in with_value]
    name = "failed" if all(j.status == FAILED for j in without) else "failed or no value"
    colors = matplotlib.colormaps["tab10"].colors
    sizes = sorted({j.batch_size for j in with_value}, key=lambda b: (b is None, b or 0))
    for i, size in enumerate(sizes):
        group = [j for j in with_value if j.batch_size == size]
        color = colors[i % len(colors)]
        label = "batch size ?" if size is None else f"batch size {size}"
        done = [j for j in group if j.status == COMPLETED]
        cut = [j for j in group if j.status != COMPLETED]
        if done:
            ax.scatter([j.lr for j in done], [j.value(metric) * scale for j in done], color=color, s=40, label=label)
        if cut:
            label = label if not done else None
            ys = [j.value(metric) * scale for j in cut]
            ax.scatter([j.lr for j in cut], ys, facecolors="none", edgecolors=color, s=40, label=label)
    if any(j.status != COMPLETED for j in with_value):
        ax.scatter([], [], facecolors="none", edgecolors="grey", s=40, label="hollow: interrupted (best epoch)")
    if without:
        # x in data coordinates, y in axes coordinates: a row along the bottom, below every point (the
        # margin below), whatever the metric's range.
        ax.margins(y=0.15)
        ax.plot(
            [j.lr for j in without],
            [0.04] * len(without),
            "x",
            color="black",
            markersize=9,
            markeredgewidth=2,
            transform=ax.get_xaxis_transform(),
            label=name,
        )
    if not drawn:
        ax.text(0.5, 0.5, "no trial with a learning rate", ha="center", va="center", transform=ax.transAxes)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(f"optimised: {metric} (%)" if percent else f"optimised: {metric}")
    counts = f"{len(with_value)} with a value, {len(without)} {name}" if without else f"{len(with_value)} trials"
    not_started = sum(j.status == NOT_STARTED for j in jobs)
    if not_started:
        counts += f", {not_started} not started"
    ax.set_title(f"Search trials: {metric} over learning rate\n({counts})", fontsize=10)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def curves_figure(jobs: list[JobResult]) -> Figure:
    """Val accuracy per epoch, one line per job: all jobs on the left; on the right the top few points,
    where the good configurations differ (diverged jobs sit at chance level and squash them on the left)."""
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(12.0, 5.0)
    full, zoom = fig.subplots(1, 2, sharex=True)
    colors = matplotlib.colormaps["tab20"].colors
    _, varied = varying_overrides(jobs)
    best = max((j.val_acc_best * 100 for j in jobs if j.val_acc_best is not None), default=None)
    for i, job in enumerate(sorted(jobs, key=lambda j: j.num)):
        points = [(e + 1, v * 100) for e, v in enumerate(job.val_acc_per_epoch) if v is not None]
        if not points:
            continue
        epochs, accs = zip(*points, strict=True)
        style = "-" if job.status == COMPLETED else "--"
        label = short_overrides(",".join(varied.get(job.job, []))) or job.name  # what differs between jobs
        for ax in (full, zoom):
            ax.plot(epochs, accs, style, marker="o", markersize=3, color=colors[i % len(colors)], label=label)
    if best is None:
        full.text(0.5, 0.5, "no job finished an epoch", ha="center", va="center", transform=full.transAxes)
    else:
        zoom.set_ylim(best - _ZOOM_SPAN, best + 0.3)
        zoom.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), ncols=1 + len(jobs) // 25)
    for ax, title in ((full, "all jobs"), (zoom, f"top {_ZOOM_SPAN:g} points")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    full.set_ylabel("val accuracy (%)")
    fig.suptitle("Validation accuracy per epoch (dashed: failed or incomplete jobs)")
    return fig


def bars_figure(configs: list[ConfigResult]) -> Figure:
    """Mean test accuracy ± sample std per configuration, best on top: the best in orange, those within
    noise of it in blue, the others in grey. Each label carries the numbers, as clipped bars lose them."""
    fig = new_figure(8.0, max(2.5, 0.5 * len(configs) + 1.5))
    ax = fig.add_subplot()
    shown = [c for c in configs if c.test.mean is not None]
    if not shown:
        ax.text(0.5, 0.5, "no configuration has a test accuracy", ha="center", va="center")
        ax.set_axis_off()
        return fig
    means = [(c.test.mean or 0.0) * 100 for c in shown]
    stds = [(c.test.std or 0.0) * 100 for c in shown]
    colors = [
        "tab:orange" if c.verdict == BEST else "tab:blue" if c.verdict.startswith(WITHIN_NOISE) else "tab:gray"
        for c in shown
    ]
    labels = [
        f"{short_overrides(','.join(c.varied)) or c.label}\n{m:.2f} ± {s:.2f} (n={c.test.n})"
        for c, m, s in zip(shown, means, stds, strict=True)
    ]
    ax.barh(range(len(shown)), means, xerr=stds, color=colors, capsize=4)
    ax.set_yticks(range(len(shown)), labels, fontsize=8)
    ax.invert_yaxis()
    high = max(m + s for m, s in zip(means, stds, strict=True))
    near = [m - s for m, s in zip(means, stds, strict=True) if m >= max(means) - _BAR_SPAN]
    low = max(min(near) - 0.5, 0.0)
    ax.set_xlim(low, min(high + 0.05 * (high - low) + 0.01, 100.0))
    ax.set_xlabel("test accuracy (%), mean ± std over seeds")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Test accuracy per configuration (orange: best; blue: within noise of best; grey: worse)", fontsize=9)
    return fig
