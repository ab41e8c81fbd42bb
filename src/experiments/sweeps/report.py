"""The sweep report: summary.csv, summary.md, heatmap.png (a grid) or scatter.png (a search: Optuna) and
curves.png in the sweep directory. Every planned job is a row: those that never started too
(experiments.sweeps.plan, written when the multirun starts), so a sweep killed hard still reports in full.

A sweep that repeats configurations over `seed` (e.g. `seed=1,2,3`) is reported per configuration instead:
summary.csv and summary.md hold one row per configuration (its mean and 95 % CI, its difference to the best
with a paired or Welch t-test, Holm-adjusted, and a verdict; experiments.sweeps.stats), the per-job rows move
to jobs.csv and to the end of summary.md, bars.png shows the differences to the best with their intervals,
curves.png one seed band per configuration; the bar chart and the bands also go to TensorBoard, in the
sweep's report run <sweep dir>/zz_report (experiments.tensorboard.sweep). The heatmap, of means, is drawn
only for a batch size x lr grid.

Written by `SweepReportCallback` when a Hydra multirun ends (hydra.callbacks.sweep_report in
conf/hydra/default.yaml; it writes the plan when the multirun starts) and by
`experiments-compare sweep_dir=<sweep dir>` for any sweep, including an interrupted or partial one. Files
are written atomically. This module is imported by Hydra at start-up, so matplotlib, scipy and
torch are only imported when a report is written.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments import atomic, console
from experiments.config import names
from experiments.rundir import PRUNED
from experiments.sweeps.plan import GRID, SEARCH, mark_finished, read_plan, write_plan
from experiments.sweeps.results import (
    COMPLETED,
    FAILED,
    INCOMPLETE,
    NOT_STARTED,
    JobResult,
    collect_jobs,
    varying_overrides,
)
from experiments.sweeps.stats import (
    ALPHA,
    BEST,
    BETTER,
    CURVES,
    MAX_SEEDS,
    NOT_DISTINGUISHABLE,
    RULE,
    WORSE,
    ConfigResult,
    Spread,
    group_by_config,
    not_distinguishable,
    repeats_seeds,
    seed_band,
)
from experiments.tensorboard.sweep import REPORT_DIR, write_report_runs

log = logging.getLogger(__name__)

CSV_COLUMNS = [
    "rank",
    "job",
    "overrides",
    "batch_size",
    "lr",
    "val_acc_best",
    "test_acc",
    "epochs",
    "train_seconds",
    "samples_per_sec",
    "status",
    "error",
]
CONFIG_COLUMNS = [
    "rank",
    "overrides",
    "n",
    "failed",
    *(f"val_acc_best_{stat}" for stat in ("mean", "std", "min", "max")),
    *(f"test_acc_{stat}" for stat in ("mean", "std", "ci_low", "ci_high", "min", "max")),
    "test_diff",  # mean test accuracy minus the best configuration's (paired: mean of the per-seed differences)
    "test_diff_ci_low",
    "test_diff_ci_high",
    "test",  # paired t | Welch t
    "p_value",
    "p_holm",
    "seeds_for_80_power",
    "verdict",
    "train_seconds_mean",
]
# Keys of a batch size x learning rate grid: only then is a heatmap of the configurations' means drawn.
GRID_KEYS = {"data.batch_size", "model.optimizer.lr"}


@dataclass
class SweepReport:
    sweep_dir: Path
    jobs: list[JobResult]  # best first
    files: dict[str, Path]
    configs: list[ConfigResult] | None = None  # best first; None unless seeds were repeated

    @property
    def best(self) -> JobResult | None:
        return next((j for j in self.jobs if j.status == COMPLETED and j.val_acc_best is not None), None)


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def write_csv(jobs: list[JobResult], path: Path) -> Path:
    with _csv_file(path) as writer:
        writer.writerow(CSV_COLUMNS)
        for rank, job in enumerate(jobs, 1):
            writer.writerow(
                [
                    rank,
                    job.job,
                    " ".join(job.overrides),
                    job.batch_size if job.batch_size is not None else "",
                    _fmt(job.lr, "g"),
                    _fmt(job.val_acc_best, ".4f"),
                    _fmt(job.test_acc, ".4f"),
                    job.epochs,
                    _fmt(job.train_seconds, ".1f"),
                    _fmt(job.samples_per_sec, ".0f"),
                    job.status,
                    job.error,
                ]
            )
    return path


@contextlib.contextmanager
def _csv_file(path: Path) -> Iterator[Any]:
    """A csv writer whose rows replace `path` in one step when the block ends."""
    buffer = io.StringIO(newline="")
    yield csv.writer(buffer)
    atomic.write_text(path, buffer.getvalue())


def write_config_csv(configs: list[ConfigResult], path: Path) -> Path:
    with _csv_file(path) as writer:
        writer.writerow(CONFIG_COLUMNS)
        for rank, config in enumerate(configs, 1):
            val, test, comparison = config.val, config.test, config.comparison
            ci = test.ci or (None, None)
            versus: list[object] = ["", "", "", "", "", "", ""]
            if comparison is not None:
                versus = [
                    _fmt(comparison.difference, ".4f"),
                    *(_fmt(v, ".4f") for v in comparison.ci),
                    comparison.test,
                    _fmt(comparison.p_value, ".4g"),
                    _fmt(comparison.p_holm, ".4g"),
                    _seeds(comparison.seeds_needed),
                ]
            writer.writerow(
                [
                    rank,
                    " ".join(config.overrides),
                    config.n,
                    config.failed,
                    *(_fmt(v, ".4f") for v in (val.mean, val.std, val.min, val.max)),
                    *(_fmt(v, ".4f") for v in (test.mean, test.std, *ci, test.min, test.max)),
                    *versus,
                    config.verdict,
                    _fmt(config.train_seconds, ".1f"),
                ]
            )
    return path


def _seeds(needed: int | None) -> str:
    return "" if needed is None else f"> {MAX_SEEDS}" if needed > MAX_SEEDS else str(needed)


def _mean_std(spread: Spread) -> str:
    """'97.92 ± 0.05' in %; the mean alone for a single value."""
    if spread.mean is None:
        return ""
    return f"{spread.mean * 100:.2f}" + ("" if spread.std is None else f" ± {spread.std * 100:.2f}")


def _mean_ci(spread: Spread) -> str:
    """'97.92 [97.80, 98.04]' in %: the mean and its 95 % CI; the mean alone for a single value."""
    if spread.mean is None:
        return ""
    ci = spread.ci
    return f"{spread.mean * 100:.2f}" + ("" if ci is None else f" [{ci[0] * 100:.2f}, {ci[1] * 100:.2f}]")


def config_markdown_table(configs: list[ConfigResult]) -> str:
    lines = [
        "| # | configuration | n | best val acc | test acc [95% CI] | vs best [95% CI] | p (Holm) | verdict "
        "| seeds for 80% power | train s (load-dependent) | failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rank, config in enumerate(configs, 1):
        comparison = config.comparison
        versus = p = seeds = ""
        if comparison is not None:
            low, high = comparison.ci
            versus = f"{comparison.difference * 100:+.2f} [{low * 100:+.2f}, {high * 100:+.2f}]"
            p = f"{comparison.p_holm:.2g} ({comparison.test})"
            if config.verdict.startswith(NOT_DISTINGUISHABLE):
                seeds = _seeds(comparison.seeds_needed) or "no difference seen"
        cells = [
            str(rank),
            " ".join(f"`{o}`" for o in config.varied) or config.label,
            str(config.n),
            _mean_std(config.val),
            _mean_ci(config.test),
            versus,
            p,
            f"**{config.verdict}**" if config.verdict == BEST else config.verdict,
            seeds,
            _fmt(config.train_seconds, ".1f"),
            str(config.failed) if config.failed else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_table(jobs: list[JobResult]) -> str:
    """The table only (the README embeds it): overrides that differ between jobs, metrics in %."""
    _, varied = varying_overrides(jobs)
    lines = [
        "| # | overrides | batch size | lr | best val acc | test acc | epochs | train s | samples/s | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rank, job in enumerate(jobs, 1):
        status = job.status if job.status == COMPLETED else f"**{job.status}**"
        unknown = job.status == NOT_STARTED and not job.overrides  # a search's trial: chosen when it starts
        cells = [
            str(rank),
            " ".join(f"`{o}`" for o in varied.get(job.job, [])) or ("(not chosen yet)" if unknown else job.name),
            str(job.batch_size) if job.batch_size is not None else "",
            _fmt(job.lr, "g"),
            _fmt(None if job.val_acc_best is None else job.val_acc_best * 100, ".2f"),
            _fmt(None if job.test_acc is None else job.test_acc * 100, ".2f"),
            str(job.epochs),
            _fmt(job.train_seconds, ".1f"),
            _fmt(job.samples_per_sec, ",.0f"),
            status,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _counts(jobs: list[JobResult]) -> str:
    """'16 jobs: 5 completed, 1 failed, 1 incomplete, 9 not started'."""
    number = {status: sum(j.status == status for j in jobs) for status in (COMPLETED, PRUNED, FAILED, INCOMPLETE)}
    text = f"{len(jobs)} jobs: " + ", ".join(f"{n} {status}" for status, n in number.items() if n or status != PRUNED)
    not_started = sum(j.status == NOT_STARTED for j in jobs)
    return text + (f", {not_started} {NOT_STARTED}" if not_started else "")


def write_markdown(
    jobs: list[JobResult],
    sweep_dir: Path,
    path: Path,
    configs: list[ConfigResult] | None = None,
    picture: str = "heatmap.png",
) -> Path:
    shared, varied = varying_overrides(jobs)
    counts = _counts(jobs) + "."
    if configs is None:
        lines = [
            f"# Sweep {sweep_dir.name}",
            "",
            f"{counts} Sorted best first by best validation accuracy; accuracies in %; samples/s is training "
            "throughput (mean over epochs). train s and samples/s are wall clock: they depend on machine load "
            "(other processes, jobs running side by side).",
            "",
        ]
    else:
        lines = [
            f"# Sweep {sweep_dir.name}",
            "",
            f"{counts} {len(configs)} configurations, each run with several seeds: one row per configuration, "
            "best first. Accuracies in %: best val acc as mean ± sample std over the configuration's n completed "
            "jobs, test acc as mean [95% confidence interval]; vs best is the difference in test accuracy to the "
            "best configuration, in points, with its 95% CI. train s is the mean training time of a job: wall "
            "clock, so it depends on machine load (other processes, jobs running side by side); compare it only "
            "between jobs that ran under the same load. failed counts failed, incomplete or not started jobs.",
            "",
            f"Rule: {RULE}",
            "",
        ]
    if shared:
        lines += ["Common to all jobs: " + " ".join(f"`{o}`" for o in shared), ""]
    if configs is None:
        alt = "search trials: metric over lr" if picture == "scatter.png" else "best val accuracy"
        lines += [markdown_table(jobs), "", f"![{alt}]({picture})", ""]
        lines += ["![val accuracy](curves.png)", ""]
    else:
        lines += [config_markdown_table(configs), "", "![test accuracy against the best](bars.png)", ""]
        if (sweep_dir / "heatmap.png").is_file():
            lines += ["![mean best val accuracy](heatmap.png)", ""]
        lines += ["![val accuracy and train loss, mean ± 1 std over seeds](curves.png)", ""]
        lines += ["## Jobs", "", markdown_table(jobs), ""]
    problems = [j for j in jobs if j.status != COMPLETED]
    if problems:
        lines += ["## Pruned, failed, incomplete or not started jobs", ""]
        for job in problems:
            # A job never started has no directory to name: what differs in its overrides says which it is.
            what = " ".join(f"`{o}`" for o in varied[job.job]) if job.status == NOT_STARTED else f"`{job.job}`"
            label = f"job {job.num} {what}".rstrip()
            lines.append(f"- {label}: {job.status}: {job.error or 'no error recorded'}")
        lines.append("")
    atomic.write_text(path, "\n".join(lines))
    return path


def write_report(sweep_dir: Path) -> SweepReport:
    """Collect every job under `sweep_dir` and write the report files next to them."""
    from experiments import plotting
    from experiments.sweeps import figures  # matplotlib: only now

    jobs = collect_jobs(sweep_dir)
    plan = read_plan(sweep_dir)
    if not repeats_seeds(jobs):
        # A search (Optuna) draws its lrs from a continuous range: a grid of them is mostly empty cells.
        kind = plan.kind if plan else (GRID if figures.is_grid(jobs) else SEARCH)
        if kind == SEARCH:
            name, figure = "scatter", figures.scatter_figure(jobs, plan.metric if plan else "val/acc_best")
        else:
            name, figure = "heatmap", figures.heatmap_figure(jobs)
        files = {
            "csv": write_csv(jobs, sweep_dir / "summary.csv"),
            "markdown": write_markdown(jobs, sweep_dir, sweep_dir / "summary.md", picture=f"{name}.png"),
            name: plotting.save(figure, sweep_dir / f"{name}.png"),
            "curves": plotting.save(figures.curves_figure(jobs), sweep_dir / "curves.png"),
        }
        return SweepReport(sweep_dir, jobs, files)

    configs = group_by_config(jobs)
    bars = figures.bars_figure(configs)
    report_dir = sweep_dir / REPORT_DIR
    files = {
        "csv": write_config_csv(configs, sweep_dir / "summary.csv"),
        "jobs": write_csv(jobs, sweep_dir / "jobs.csv"),
        "bars": plotting.save(bars, sweep_dir / "bars.png"),
        "tensorboard": report_dir,
        "curves": plotting.save(figures.curves_figure(jobs, configs), sweep_dir / "curves.png"),
    }
    bands = {  # one TensorBoard run per configuration, named by rank and what differs, like a job directory
        f"{rank:02d}_{names.name('', names.ITEM_SEP.join(c.varied)) or 'defaults'}": {
            k: seed_band(c, k) for k in CURVES
        }
        for rank, c in enumerate(configs, 1)
        if c.n
    }
    write_report_runs(report_dir, plotting.render(bars, dpi=110), bands)
    # Means over a batch size x lr grid read as a heatmap; other concepts (optimizers, models) have no axes.
    (sweep_dir / "heatmap.png").unlink(missing_ok=True)  # left by an earlier report of this sweep
    if len(configs) > 1 and all(o.lstrip("+~").partition("=")[0] in GRID_KEYS for c in configs for o in c.varied):
        means = figures.heatmap_figure([mean_job(c) for c in configs], "Best validation accuracy, mean over seeds")
        files["heatmap"] = plotting.save(means, sweep_dir / "heatmap.png")
    files["markdown"] = write_markdown(jobs, sweep_dir, sweep_dir / "summary.md", configs)
    return SweepReport(sweep_dir, jobs, files, configs)


def mean_job(config: ConfigResult) -> JobResult:
    """A configuration as one job for the heatmap: its batch size, its lr, its mean best val accuracy."""
    first = config.jobs[0]
    status = COMPLETED if config.n else FAILED
    return JobResult(
        first.job, first.num, status, batch_size=first.batch_size, lr=first.lr, val_acc_best=config.val.mean
    )


def describe(report: SweepReport) -> str:
    """What a person needs at the end of a sweep: the best configuration and where the report is."""
    jobs = report.jobs
    failed = sum(j.status in (FAILED, INCOMPLETE) for j in jobs)
    completed = sum(j.status == COMPLETED for j in jobs)
    not_started = sum(j.status == NOT_STARTED for j in jobs)
    pruned = sum(j.status == PRUNED for j in jobs)
    line = f"Sweep: {len(jobs)} jobs, {completed} completed" + (f", {pruned} pruned" if pruned else "")
    line += f", {failed} failed or incomplete"
    lines = [line + (f", {not_started} {NOT_STARTED}" if not_started else "")]
    lines += _not_started_lines(jobs)
    best = report.best
    configs = report.configs
    if best is None:
        lines.append("Best:   no job completed")
    elif configs is None:
        test = f", test acc {best.test_acc:.2%}" if best.test_acc is not None else ""
        lines.append(
            f"Best:   batch_size={best.batch_size} lr={best.lr:g}: val acc {best.val_acc_best:.2%}{test} ({best.job})"
        )
    else:
        top = configs[0]
        lines.append(f"Best:   {top.label}: test acc {_percent(top.test)}, best val acc {_percent(top.val)}")
        if len(configs) > 1:
            counts = {word: sum(c.verdict == word for c in configs) for word in (WORSE, BETTER)}
            counts[NOT_DISTINGUISHABLE] = not_distinguishable(configs)
            said = ", ".join(f"{n} {word}" for word, n in counts.items() if n or word != BETTER)
            lines.append(
                f"Against the best: {said}, of {len(configs) - 1} other configurations (test accuracy, "
                f"t-tests over seeds, Holm-adjusted p < {ALPHA:g}; summary.md has the intervals)"
            )
    picture = "scatter.png" if "scatter" in report.files else "heatmap.png"
    others = "summary.csv, jobs.csv, bars.png, curves.png" if configs else f"summary.csv, {picture}, curves.png"
    lines += [
        f"Report: {report.files['markdown']}  ({others} alongside)",
        f"TensorBoard: {console.tool('tensorboard')} --logdir {shlex.quote(console.shown(report.sweep_dir))}",
    ]
    return "\n".join(lines)


# A killed grid can leave most of its jobs unstarted: past this many, the rest are only in summary.md.
_MAX_LISTED = 8


def _not_started_lines(jobs: list[JobResult]) -> list[str]:
    """'Not started: job 5: data.batch_size=64 model.optimizer.lr=0.1', one per job (what differs only)."""
    waiting = sorted((j for j in jobs if j.status == NOT_STARTED), key=lambda j: j.num)
    _, varied = varying_overrides(jobs)
    lines = [
        f"{'Not started:' if i == 0 else '':12} job {j.num}: {' '.join(varied[j.job]) or 'overrides not chosen yet'}"
        for i, j in enumerate(waiting[:_MAX_LISTED])
    ]
    if len(waiting) > _MAX_LISTED:
        lines.append(f"{'':12} and {len(waiting) - _MAX_LISTED} more (summary.md)")
    return lines


def _percent(spread: Spread) -> str:
    """'97.92% ± 0.05% (n=3)'."""
    if spread.mean is None:
        return "none"
    std = "" if spread.std is None else f" ± {spread.std:.2%}"
    return f"{spread.mean:.2%}{std} (n={spread.n})"


class SweepReportCallback(Callback):
    """Hydra callback: writes the list of planned jobs when a multirun starts (so that a sweep killed hard
    still reports the jobs it never reached), and the report when it ends, whatever happened to single jobs."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        write_plan(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():  # e.g. every job failed before Hydra created a directory
            return
        try:
            mark_finished(sweep_dir)
            report = write_report(sweep_dir)
        except Exception as exc:  # the jobs' results are safe on disk; the report can be rebuilt
            print(
                f"error: sweep report failed ({type(exc).__name__}: {exc}); rebuild it with "
                f"experiments-compare sweep_dir={sweep_dir}",
                flush=True,
            )
            return
        print(describe(report), flush=True)
