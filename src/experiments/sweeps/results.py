"""Read the jobs of a sweep directory back into rows: one `JobResult` per job directory.

Each job writes `run.json` (experiments.rundir.RunDir). A job killed hard has none, or one
still saying "running"; it is listed anyway, as incomplete, with its batch size and learning rate taken
from Hydra's own `.hydra/overrides.yaml` / `.hydra/config.yaml`, so a partial sweep still reports. Jobs of
the sweep's plan (experiments.sweeps.plan) that have no directory are listed as not started.
Values come from those files, never from directory names; only the job number is read from the name's
leading digits. Only json + yaml here: reading results must stay cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from experiments.rundir import COMPLETED, FAILED, PRUNED, RECORD, RunDir, finite_or_none
from experiments.sweeps.plan import read_plan

# What the report says of a job beyond its run.json status (completed, pruned, failed): it never finished, or never
# began.
INCOMPLETE, NOT_STARTED = "incomplete", "not started"
_STATUS_ORDER = {COMPLETED: 0, PRUNED: 1, INCOMPLETE: 2, FAILED: 3, NOT_STARTED: 4}


@dataclass
class JobResult:
    job: str  # the job directory's name, e.g. "3_batch_size=64,lr=0.03"; the job number if it has none
    num: int  # Hydra's job number (the directory prefix); -1 when the name has none
    status: str  # completed | pruned (a search stopped it early) | failed | incomplete (interrupted, killed,
    # or still running) | not started
    overrides: list[str] = field(default_factory=list)
    batch_size: int | None = None
    lr: float | None = None
    val_acc_best: float | None = None
    test_acc: float | None = None
    epochs: int = 0
    train_seconds: float | None = None
    samples_per_sec: float | None = None
    error: str = ""
    val_acc_per_epoch: list[float | None] = field(default_factory=list)
    train_loss_per_epoch: list[float | None] = field(default_factory=list)  # the last logged step's, per epoch
    metrics: dict[str, float] = field(default_factory=dict)  # run.json's final metrics, finite ones only
    # The last epoch's accuracies: train/acc counts the predictions made while training (dropout on),
    # val/acc is measured after the epoch.
    train_acc: float | None = None
    val_acc: float | None = None

    @property
    def gap(self) -> float | None:
        """Train minus validation accuracy at the last epoch: how far the model fits its training images
        beyond what carries over to new ones (overfitting)."""
        return None if self.train_acc is None or self.val_acc is None else self.train_acc - self.val_acc

    def value(self, metric: str) -> float | None:
        """A final metric, e.g. the one a search optimises; for val/acc_best also an interrupted job's best."""
        return self.val_acc_best if metric == "val/acc_best" else self.metrics.get(metric)

    @property
    def name(self) -> str:
        """Short label for legends: the directory name without the job number."""
        return self.job.split("_", 1)[1] if re.match(r"^\d+_", self.job) else self.job


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _override_value(overrides: list[str], key: str) -> str | None:
    for override in overrides:
        name, sep, value = override.lstrip("+~").partition("=")
        if sep and name == key:
            return value
    return None


def _hyperparameters(job_dir: Path | None, overrides: list[str]) -> tuple[int | None, float | None]:
    """Batch size and lr of a job without run.json: its overrides first, else Hydra's composed config."""
    config = (_load_yaml(job_dir / ".hydra" / "config.yaml") if job_dir else None) or {}
    batch_size = _override_value(overrides, "data.batch_size") or config.get("data", {}).get("batch_size")
    optimizer = config.get("model", {}).get("optimizer", {})
    lr = _override_value(overrides, "model.optimizer.lr") or (optimizer or {}).get("lr")
    size = finite_or_none(batch_size)
    return (int(size) if size is not None else None), finite_or_none(lr)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


# The type each field of run.json has when a run wrote it; a field of another type (a record edited or
# damaged by hand) is read as missing, and the job's error says which, rather than the report failing.
_RECORD_TYPES: dict[str, type | tuple[type, ...]] = {
    "status": str,
    "overrides": list,
    "history": list,
    "metrics": dict,
    "error": str,
    "epochs": int,
    "batch_size": (int, float),
    "lr": (int, float),
    "train_seconds": (int, float),
}


def _well_formed(record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    bad = [k for k, kind in _RECORD_TYPES.items() if record.get(k) is not None and not isinstance(record[k], kind)]
    bad += [k for k in ("batch_size", "epochs") if k not in bad and isinstance(record.get(k), bool)]
    return {k: v for k, v in record.items() if k not in bad}, bad


def read_job(job_dir: Path) -> JobResult:
    record, malformed = _well_formed(RunDir(job_dir).record())  # {} when missing or unreadable
    overrides = record.get("overrides") or _load_yaml(job_dir / ".hydra" / "overrides.yaml") or []
    overrides = [str(o) for o in overrides]
    batch_size, lr = _hyperparameters(job_dir, overrides)
    if record.get("batch_size") is not None:
        batch_size = int(record["batch_size"])
    if record.get("lr") is not None:
        lr = finite_or_none(record["lr"])
    status = record.get("status")
    if status not in (COMPLETED, PRUNED, FAILED):
        status = INCOMPLETE  # "running" after the sweep ended, or no record at all: it never finished
    history = [
        row for row in record.get("history", []) if isinstance(row, dict) and isinstance(row.get("epoch", 0), int)
    ]
    metrics = record.get("metrics") or {}
    val_curve = [finite_or_none(row.get("val/acc")) for row in history]
    val_best = finite_or_none(metrics.get("val/acc_best"))
    if val_best is None and any(v is not None for v in val_curve):  # interrupted: best of the epochs it did
        val_best = max(v for v in val_curve if v is not None)
    last = history[-1] if history else {}
    match = re.match(r"^(\d+)(?:_|$)", job_dir.name)
    error = str(record.get("error") or "")
    if malformed:
        error = f"run.json has malformed {', '.join(malformed)} (read as missing)" + (f"; {error}" if error else "")
    if status == INCOMPLETE:
        error = error or ("no run.json: stopped before training" if not record else "stopped before the end")
    return JobResult(
        job=job_dir.name,
        num=int(match.group(1)) if match else -1,
        status=status,
        overrides=overrides,
        batch_size=batch_size,
        lr=lr,
        val_acc_best=val_best,
        test_acc=finite_or_none(metrics.get("test/acc")),
        epochs=int(record.get("epochs") or len(history)),
        train_seconds=finite_or_none(record.get("train_seconds")),
        samples_per_sec=_mean([s for r in history if (s := finite_or_none(r.get("samples_per_sec"))) is not None]),
        error=error,
        val_acc_per_epoch=val_curve,
        train_loss_per_epoch=[finite_or_none(row.get("train/loss")) for row in history],
        metrics={str(k): v for k, value in metrics.items() if (v := finite_or_none(value)) is not None},
        train_acc=finite_or_none(last.get("train/acc")),
        val_acc=finite_or_none(last.get("val/acc")),
    )


def not_started(num: int, overrides: list[str] | None) -> JobResult:
    """A planned job without a directory: the sweep stopped (or is still running) before it began."""
    batch_size, lr = _hyperparameters(None, overrides or [])
    error = "the sweep had not reached this job (stopped, killed, or still running)"
    if overrides is None:
        error += "; the sweeper chooses its overrides when it starts"
    return JobResult(str(num), num, NOT_STARTED, overrides or [], batch_size, lr, error=error)


def is_job_dir(path: Path) -> bool:
    return path.is_dir() and ((path / ".hydra").is_dir() or (path / RECORD).is_file())


def collect_jobs(sweep_dir: Path) -> list[JobResult]:
    """Every job directory directly under `sweep_dir`, and every planned job without one, best first
    (completed by best val acc, then incomplete, failed, not started)."""
    jobs = [read_job(path) for path in sorted(sweep_dir.iterdir()) if is_job_dir(path)]
    plan = read_plan(sweep_dir)
    if plan is not None and not plan.finished:
        found = {job.num for job in jobs}
        jobs += [not_started(p.num, p.overrides) for p in plan.jobs if p.num not in found]
    return sorted(jobs, key=rank_key)


def rank_key(job: JobResult) -> tuple[int, float, float, int]:
    return (
        _STATUS_ORDER[job.status],
        -(job.val_acc_best if job.val_acc_best is not None else -1.0),
        -(job.test_acc if job.test_acc is not None else -1.0),
        job.num,
    )


def varying_overrides(jobs: list[JobResult]) -> tuple[list[str], dict[str, list[str]]]:
    """Split overrides into those shared by all jobs and, per job, those that differ (the swept ones).
    Jobs whose overrides are not known yet (not started trials of a search) take no part."""
    known = [j for j in jobs if j.overrides or j.status != NOT_STARTED]
    if not known:
        return [], {j.job: [] for j in jobs}
    common = set(known[0].overrides).intersection(*(set(j.overrides) for j in known[1:]))
    shared = [o for o in known[0].overrides if o in common]
    return shared, {j.job: [o for o in j.overrides if o not in common] for j in jobs}
