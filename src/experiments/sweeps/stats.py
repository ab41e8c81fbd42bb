"""Seed statistics of a sweep: jobs that differ only in `seed` are one configuration, summarised as
n, mean, std, min and max, and compared with the best configuration by Welch's t-test.

scipy (Student's t distribution) is imported inside `welch_p_value` only: Hydra imports the report, and so
this module, at start-up.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from experiments.sweeps.results import COMPLETED, JobResult, varying_overrides

ALPHA = 0.05
RULE = (
    "Each configuration's test accuracies are compared with those of the best configuration (rank 1, the "
    f"highest mean best val accuracy) by Welch's two-sided t-test: p >= {ALPHA:g} is within noise of best, "
    f"p < {ALPHA:g} is a real difference, and with fewer than 2 completed seeds on either side there is no test."
)
BEST, WITHIN_NOISE, NO_TEST = "best", "within noise of best", "n<2: no test"


@dataclass
class Spread:
    """n, mean, std (sample, n-1; None when n < 2), min and max of some values."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) >= 2 else None

    @property
    def min(self) -> float | None:
        return min(self.values, default=None)

    @property
    def max(self) -> float | None:
        return max(self.values, default=None)


@dataclass
class ConfigResult:
    """One configuration: the jobs that share every override but `seed`."""

    overrides: list[str]  # all of them, seed excepted
    jobs: list[JobResult]
    varied: list[str] = field(default_factory=list)  # those that differ between configurations
    label: str = ""  # the varied overrides, for tables and legends
    verdict: str = ""
    p_value: float | None = None
    completed: list[JobResult] = field(init=False)

    def __post_init__(self) -> None:
        self.completed = [j for j in self.jobs if j.status == COMPLETED]

    @property
    def n(self) -> int:
        return len(self.completed)

    @property
    def failed(self) -> int:
        """Jobs that failed (a bad value, a divergence, a crash), never finished or never started."""
        return len(self.jobs) - self.n

    @property
    def val(self) -> Spread:
        return Spread([j.val_acc_best for j in self.completed if j.val_acc_best is not None])

    @property
    def test(self) -> Spread:
        return Spread([j.test_acc for j in self.completed if j.test_acc is not None])

    @property
    def train_seconds(self) -> float | None:
        return Spread([j.train_seconds for j in self.completed if j.train_seconds is not None]).mean


def is_seed(override: str) -> bool:
    return override.lstrip("+~").partition("=")[0] == "seed"


def without_seed(job: JobResult) -> tuple[str, ...]:
    return tuple(o for o in job.overrides if not is_seed(o))


def repeats_seeds(jobs: list[JobResult]) -> bool:
    """Whether `seed` is swept and some configuration ran with 2 or more seeds."""
    _, varied = varying_overrides(jobs)
    if not any(is_seed(o) for overrides in varied.values() for o in overrides):
        return False
    configs = [without_seed(j) for j in jobs]
    return any(configs.count(c) >= 2 for c in configs)


def welch_p_value(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances); both samples need n >= 2."""
    from scipy import stats

    if statistics.variance(a) + statistics.variance(b) == 0:
        # Seeds that all land on one accuracy (e.g. chance level): scipy's t is undefined (nan); the means decide.
        return 1.0 if statistics.fmean(a) == statistics.fmean(b) else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def group_by_config(jobs: list[JobResult]) -> list[ConfigResult]:
    """The configurations, best first by mean best val accuracy, each with its verdict against the best."""
    groups: dict[tuple[str, ...], list[JobResult]] = {}
    for job in sorted(jobs, key=lambda j: j.num):
        groups.setdefault(without_seed(job), []).append(job)
    configs = [ConfigResult(list(key), members) for key, members in groups.items()]
    if not configs:
        return configs
    shared = set.intersection(*(set(c.overrides) for c in configs))
    for config in configs:
        config.varied = [o for o in config.overrides if o not in shared]
        config.label = " ".join(config.varied) or ("(defaults)" if len(configs) > 1 else "all jobs")
    configs.sort(key=config_rank_key)
    for config in configs:
        judge(config, configs[0])
    return configs


def config_rank_key(config: ConfigResult) -> tuple[int, float, float, str]:
    val, test = config.val.mean, config.test.mean
    return (config.n == 0, -(val if val is not None else -1.0), -(test if test is not None else -1.0), config.label)


def judge(config: ConfigResult, best: ConfigResult) -> None:
    if config.n == 0:
        config.verdict = "no completed job"
        return
    if config is best:
        config.verdict = BEST
        return
    ours, theirs = config.test, best.test
    if ours.n < 2 or theirs.n < 2:
        config.verdict = f"{WITHIN_NOISE} ({NO_TEST})"
        return
    config.p_value = welch_p_value(ours.values, theirs.values)
    if config.p_value >= ALPHA:
        config.verdict = f"{WITHIN_NOISE} (p={config.p_value:.2g})"
    else:
        better = (ours.mean or 0.0) > (theirs.mean or 0.0)  # ranked by val, tested on test: it can happen
        config.verdict = f"{'better test acc' if better else 'worse'} (p={config.p_value:.2g})"


def within_noise(configs: list[ConfigResult]) -> int:
    return sum(c.verdict.startswith(WITHIN_NOISE) for c in configs)
