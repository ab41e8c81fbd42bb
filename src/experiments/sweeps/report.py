"""The sweep report: summary.csv, summary.md, heatmap.png and curves.png in the sweep directory.

Written by `SweepReportCallback` when a Hydra multirun ends (hydra.callbacks.sweep_report in
conf/hydra/default.yaml) and by `experiments-compare sweep_dir=<sweep dir>` for any sweep, including an
interrupted or partial one. This module is imported by Hydra at start-up, so matplotlib is only
imported when a report is written.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.sweeps.results import COMPLETED, FAILED, JobResult, collect_jobs, varying_overrides

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


@dataclass
class SweepReport:
    sweep_dir: Path
    jobs: list[JobResult]  # best first
    files: dict[str, Path]

    @property
    def best(self) -> JobResult | None:
        return next((j for j in self.jobs if j.status == COMPLETED and j.val_acc_best is not None), None)


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def write_csv(jobs: list[JobResult], path: Path) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
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


def markdown_table(jobs: list[JobResult]) -> str:
    """The table only (the README embeds it): overrides that differ between jobs, metrics in %."""
    _, varied = varying_overrides(jobs)
    lines = [
        "| # | overrides | batch size | lr | best val acc | test acc | epochs | train s | samples/s | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rank, job in enumerate(jobs, 1):
        status = job.status if job.status == COMPLETED else f"**{job.status}**"
        cells = [
            str(rank),
            " ".join(f"`{o}`" for o in varied.get(job.job, [])) or job.name,
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


def write_markdown(jobs: list[JobResult], sweep_dir: Path, path: Path) -> Path:
    shared, _ = varying_overrides(jobs)
    completed = sum(j.status == COMPLETED for j in jobs)
    lines = [
        f"# Sweep {sweep_dir.name}",
        "",
        f"{len(jobs)} jobs: {completed} completed, {sum(j.status == FAILED for j in jobs)} failed, "
        f"{len(jobs) - completed - sum(j.status == FAILED for j in jobs)} incomplete. Sorted best first by best "
        "validation accuracy; accuracies in %; samples/s is training throughput (mean over epochs).",
        "",
    ]
    if shared:
        lines += ["Common to all jobs: " + " ".join(f"`{o}`" for o in shared), ""]
    lines += [markdown_table(jobs), "", "![best val accuracy](heatmap.png)", "", "![val accuracy](curves.png)", ""]
    problems = [j for j in jobs if j.status != COMPLETED]
    if problems:
        lines += ["## Failed or incomplete jobs", ""]
        lines += [f"- `{j.job}`: {j.status}: {j.error or 'no error recorded'}" for j in problems]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def write_report(sweep_dir: Path) -> SweepReport:
    """Collect every job under `sweep_dir` and write the four report files next to them."""
    from experiments.sweeps import plots as sweep_plots  # matplotlib: only now

    jobs = collect_jobs(sweep_dir)
    files = {
        "csv": write_csv(jobs, sweep_dir / "summary.csv"),
        "markdown": write_markdown(jobs, sweep_dir, sweep_dir / "summary.md"),
        "heatmap": sweep_plots.save(sweep_plots.heatmap_figure(jobs), sweep_dir / "heatmap.png"),
        "curves": sweep_plots.save(sweep_plots.curves_figure(jobs), sweep_dir / "curves.png"),
    }
    return SweepReport(sweep_dir, jobs, files)


def describe(report: SweepReport) -> str:
    """What a person needs at the end of a sweep: the best configuration and where the report is."""
    jobs = report.jobs
    failed = [j for j in jobs if j.status != COMPLETED]
    lines = [f"Sweep: {len(jobs)} jobs, {len(jobs) - len(failed)} completed, {len(failed)} failed or incomplete"]
    best = report.best
    if best is None:
        lines.append("Best:   no job completed")
    else:
        test = f", test acc {best.test_acc:.2%}" if best.test_acc is not None else ""
        lines.append(
            f"Best:   batch_size={best.batch_size} lr={best.lr:g}: val acc {best.val_acc_best:.2%}{test} ({best.job})"
        )
    lines += [
        f"Report: {report.files['markdown']}  (summary.csv, heatmap.png, curves.png alongside)",
        f"TensorBoard: tensorboard --logdir {report.sweep_dir}",
    ]
    return "\n".join(lines)


class SweepReportCallback(Callback):
    """Hydra callback: writes the report when a multirun ends, whatever happened to single jobs."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():  # e.g. every job failed before Hydra created a directory
            return
        try:
            report = write_report(sweep_dir)
        except Exception as exc:  # the jobs' results are safe on disk; the report can be rebuilt
            print(
                f"error: sweep report failed ({type(exc).__name__}: {exc}); rebuild it with "
                f"experiments-compare sweep_dir={sweep_dir}",
                flush=True,
            )
            return
        print(describe(report), flush=True)
