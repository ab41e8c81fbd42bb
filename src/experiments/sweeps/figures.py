"""Sweep figures: best val accuracy over a batch size x learning rate grid, the trials of a search (Optuna)
as a scatter, val accuracy and train loss per epoch (per job, or per configuration with a seed band), and
each configuration's test accuracy against the best with its confidence interval (a sweep over seeds).

matplotlib is imported inside the functions (no pyplot, no GUI backend): only the report needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from experiments.config.names import short_overrides
from experiments.plotting import new_figure
from experiments.rundir import PRUNED
from experiments.sweeps.results import COMPLETED, FAILED, INCOMPLETE, NOT_STARTED, JobResult, varying_overrides
from experiments.sweeps.stats import BEST, BETTER, WORSE, ConfigResult, seed_band

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# A sweep without a plan (experiments.sweeps.plan) with more distinct values than this on an axis was
# not a grid (a search draws continuous lrs): its jobs are drawn as a scatter, as a search's are.
MAX_GRID_VALUES = 10
_COLOR_SPAN = 10.0  # accuracy points covered by the heatmap's colour scale
# Curves and bars more than this many accuracy points below the best (diverged jobs at chance level) are cut
# off at the axis: drawn in full, they would squash the differences between the good configurations.
_CURVE_SPAN = 10.0
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
    with_value = [j for j in drawn if j.status in (COMPLETED, PRUNED, INCOMPLETE) and j.value(metric) is not None]
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
        cut_short = "pruned or interrupted" if any(j.status == PRUNED for j in with_value) else "interrupted"
        ax.scatter([], [], facecolors="none", edgecolors="grey", s=40, label=f"hollow: {cut_short} (best epoch)")
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


def curves_figure(jobs: list[JobResult], configs: list[ConfigResult] | None = None) -> Figure:
    """Val accuracy and train loss per epoch. With `configs` (a sweep over seeds): one colour per
    configuration, its mean over seeds with a band of ± 1 sample std. Without: one line per job, dashed for
    a failed or incomplete one. Val accuracies more than _CURVE_SPAN points below the best sit under the
    axis (diverged jobs at chance level would squash the others into one line); the title says so."""
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(12.0, 5.0)
    val_ax, loss_ax = fig.subplots(1, 2, sharex=True)
    shown: list[float] = []  # every val accuracy drawn, in %
    if configs is not None:
        drawn = [c for c in configs if c.n]
        colors = _colors(len(drawn))
        for config, color in zip(drawn, colors, strict=True):
            label = f"{short_overrides(','.join(config.varied)) or config.label} (n={config.n})"
            for ax, key, scale in ((val_ax, "val/acc", 100.0), (loss_ax, "train/loss", 1.0)):
                band = seed_band(config, key)
                if not band:
                    continue
                epochs = [e for e, _, _ in band]
                means = [m * scale for _, m, _ in band]
                stds = [s * scale for _, _, s in band]
                ax.plot(epochs, means, "-", marker="o", markersize=3, color=color, label=label)
                low = [m - s for m, s in zip(means, stds, strict=True)]
                high = [m + s for m, s in zip(means, stds, strict=True)]
                ax.fill_between(epochs, low, high, color=color, alpha=0.2, linewidth=0)
                if key == "val/acc":
                    shown += low + high
        title = "Mean over seeds, band: ± 1 std (one colour per configuration)"
    else:
        _, varied = varying_overrides(jobs)
        ordered = sorted(jobs, key=lambda j: j.num)
        for job, color in zip(ordered, _colors(len(ordered)), strict=True):
            style = "-" if job.status == COMPLETED else "--"
            label = short_overrides(",".join(varied.get(job.job, []))) or job.name  # what differs between jobs
            for ax, curve, scale in ((val_ax, job.val_acc_per_epoch, 100.0), (loss_ax, job.train_loss_per_epoch, 1.0)):
                points = [(e + 1, v * scale) for e, v in enumerate(curve) if v is not None]
                if points:
                    epochs, values = zip(*points, strict=True)
                    ax.plot(epochs, values, style, marker="o", markersize=3, color=color, label=label)
                    if ax is val_ax:
                        shown += values
        title = "One line per job (dashed: failed or incomplete)"
    if not shown:
        val_ax.text(0.5, 0.5, "no job finished an epoch", ha="center", va="center", transform=val_ax.transAxes)
    else:
        top = max(shown)
        bottom = max(min(shown), top - _CURVE_SPAN)
        pad = 0.05 * max(top - bottom, 0.1)
        val_ax.set_ylim(bottom - pad, min(top + pad, 100.0))
        if min(shown) < bottom:
            title += f"; val accuracies below {bottom:.0f} % are under the axis"
        handles, labels = val_ax.get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=7, loc="outside right center", ncols=1 + len(labels) // 25)
    val_ax.set_ylabel("val accuracy (%)")
    val_ax.set_title("Validation accuracy")
    loss_ax.set_ylabel("train loss (log scale)")
    loss_ax.set_title("Training loss (last logged step of each epoch)")
    if loss_ax.has_data():
        loss_ax.set_yscale("log")
    for ax in (val_ax, loss_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    return fig


def _colors(count: int) -> list[tuple[float, ...]]:
    """Distinct colours: tab10 up to 10 lines, tab20 up to 20, then tab20 again (the legend tells them apart)."""
    import matplotlib

    palette = matplotlib.colormaps["tab10" if count <= 10 else "tab20"].colors
    return [palette[i % len(palette)] for i in range(count)]


def bars_figure(configs: list[ConfigResult]) -> Figure:
    """Each configuration's test accuracy minus the best's, in points, with the 95 % CI of the difference; the
    best at 0 (orange), with the CI of its own mean around it.
    Colour by verdict: grey worse, blue not distinguishable, green better. The axis spans
    the differences and their intervals, down to _BAR_SPAN points below the best: a configuration further
    down (diverged, at chance level) is cut at the left edge, its number in its label."""
    fig = new_figure(8.5, max(2.5, 0.55 * len(configs) + 1.6))
    ax = fig.add_subplot()
    best = configs[0] if configs and configs[0].verdict == BEST else None
    shown = [c for c in configs if c.test.mean is not None]
    if best is None or best.test.mean is None or not shown:
        ax.text(0.5, 0.5, "no configuration has a test accuracy", ha="center", va="center")
        ax.set_axis_off()
        return fig
    colors = {BEST: "tab:orange", WORSE: "tab:gray", BETTER: "tab:green"}
    rows = []  # (label, difference, low, high, colour), in points
    for config in shown:
        name = short_overrides(",".join(config.varied)) or config.label
        mean = (config.test.mean or 0.0) * 100
        comparison = config.comparison
        if config is best:
            ci = config.test.ci
            text = f"{mean:.2f} %" + ("" if ci is None else f" [{ci[0] * 100:.2f}, {ci[1] * 100:.2f}]")
            low, high = (0.0, 0.0) if ci is None else (ci[0] * 100 - mean, ci[1] * 100 - mean)  # its own CI
            rows.append((f"{name} (n={config.test.n})\nbest: {text}", 0.0, low, high, colors[BEST]))
        elif comparison is None:
            difference = mean - best.test.mean * 100
            label = f"{name} (n={config.test.n})\n{difference:+.2f} (no test)"
            rows.append((label, difference, difference, difference, "white"))
        else:
            difference, (low, high) = comparison.difference * 100, comparison.ci
            color = colors.get(config.verdict, "tab:blue")
            text = f"{difference:+.2f} [{low * 100:+.2f}, {high * 100:+.2f}], p={comparison.p_holm:.2g}"
            rows.append((f"{name} (n={config.test.n})\n{text}", difference, low * 100, high * 100, color))
    labels, diffs, lows, highs, bar_colors = zip(*rows, strict=True)
    errors = [[d - lo for d, lo in zip(diffs, lows, strict=True)], [hi - d for d, hi in zip(diffs, highs, strict=True)]]
    ax.barh(range(len(rows)), diffs, xerr=errors, color=bar_colors, edgecolor="black", linewidth=0.5, capsize=4)
    ax.plot([0.0], [0], "D", color=colors[BEST], markersize=8, zorder=3)  # the best: a bar of length 0
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", linewidth=1)
    left = min(v for v in (*lows, *diffs, 0.0) if v >= -_BAR_SPAN)
    right = max(max(highs), 0.0)
    pad = 0.08 * max(right - left, 0.2)
    ax.set_xlim(left - pad, right + pad)
    ax.set_xlabel("test accuracy minus the best configuration's (points), with its 95% confidence interval")
    ax.grid(axis="x", alpha=0.3)
    clipped = " (bars beyond the left edge are cut)" if min(lows) < left - pad else ""
    ax.set_title(
        "Test accuracy against the best (orange: the best, with the CI of its own mean)\n"
        f"Holm-adjusted tests: grey worse, blue not distinguishable, green better{clipped}",
        fontsize=9,
    )
    return fig
