"""Seed statistics of a sweep: jobs that differ only in `seed` are one configuration, summarised by its mean
with a 95 % confidence interval, and compared with the best configuration (the difference, its 95 % CI, a
paired or Welch t-test, Holm-adjusted over all comparisons with the best, and the seeds a clear answer would
need). `RULE` states the rule; summary.md and README print it.

Distributions, tests and intervals are scipy.stats'. scipy is imported inside the functions: Hydra imports
the report, and so this module, at start-up.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from experiments.sweeps.results import COMPLETED, JobResult, varying_overrides

ALPHA = 0.05  # two-sided, family-wise over the comparisons with the best (Holm)
CONFIDENCE = 0.95
POWER = 0.8
MAX_SEEDS = 1000  # the power search stops here: a difference that needs more is reported as "> 1000"
PAIRED, WELCH = "paired t", "Welch t"
RULE = (
    "configurations are ranked by mean best validation accuracy (rank 1 is the best); the verdicts are on test "
    "accuracy. Each configuration is compared with the best by a two-sided paired t-test over the seeds both "
    "completed (the same seed gives both the same initial weights and data order), or by Welch's t-test when "
    f"they share fewer than 2 seeds. The p-values of all comparisons with the best are adjusted by Holm's "
    f"step-down method, so that the chance of any false 'worse' or 'better' in the table stays below {ALPHA:g}. "
    f"Adjusted p < {ALPHA:g}: 'worse' or 'better'; otherwise 'not distinguishable', with the 95 % confidence "
    "interval of the difference: the seeds cannot rule out any difference inside it, which does not make the "
    "configurations equal. Means and differences carry t-based 95 % intervals. 'Seeds for 80 % power' is the "
    "smallest number of seeds per configuration at which the same test would detect the observed difference, "
    f"with the observed spread, 8 times in 10 at level {ALPHA:g}/m (m comparisons: Holm's strictest step), from "
    "the noncentral t distribution; it takes the observed difference as the true one, so it is a rough guide."
)
BEST, WORSE, BETTER, NOT_DISTINGUISHABLE = "best", "worse", "better", "not distinguishable"


@dataclass
class Spread:
    """n, mean, std (sample, n-1; None when n < 2), min, max and the t-based 95 % CI of the mean of some values."""

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

    @property
    def ci(self) -> tuple[float, float] | None:
        """The 95 % confidence interval of the mean from Student's t (n - 1 degrees of freedom); None when n < 2."""
        from scipy import stats

        if self.n < 2 or self.mean is None:
            return None
        if self.std == 0:  # every seed on one value: scipy's interval is undefined (nan) at scale 0
            return self.mean, self.mean
        low, high = stats.t.interval(CONFIDENCE, self.n - 1, loc=self.mean, scale=stats.sem(self.values))
        return float(low), float(high)


@dataclass
class Comparison:
    """A configuration's test accuracy against the best's: `difference` is ours minus the best's."""

    test: str  # PAIRED or WELCH
    n: int  # seeds in the test: pairs (paired), or the smaller sample (Welch)
    difference: float
    ci: tuple[float, float]
    p_value: float
    p_holm: float = 1.0
    seeds_needed: int | None = None  # per configuration, for 80 % power; None: no difference observed


@dataclass
class ConfigResult:
    """One configuration: the jobs that share every override but `seed`."""

    overrides: list[str]  # all of them, seed excepted
    jobs: list[JobResult]
    varied: list[str] = field(default_factory=list)  # those that differ between configurations
    label: str = ""  # the varied overrides, for tables and legends
    verdict: str = ""
    comparison: Comparison | None = None  # against the best; None for the best and where no test is possible
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
    def test_by_seed(self) -> dict[str, float]:
        """Test accuracy per seed (the `seed=` override's value), for the paired test."""
        return {seed: j.test_acc for j in self.completed if (seed := seed_of(j)) and j.test_acc is not None}

    @property
    def train_seconds(self) -> float | None:
        return Spread([j.train_seconds for j in self.completed if j.train_seconds is not None]).mean


def is_seed(override: str) -> bool:
    return override.lstrip("+~").partition("=")[0] == "seed"


def seed_of(job: JobResult) -> str | None:
    return next((o.partition("=")[2] for o in job.overrides if is_seed(o)), None)


def without_seed(job: JobResult) -> tuple[str, ...]:
    return tuple(o for o in job.overrides if not is_seed(o))


def repeats_seeds(jobs: list[JobResult]) -> bool:
    """Whether `seed` is swept and some configuration ran with 2 or more seeds."""
    _, varied = varying_overrides(jobs)
    if not any(is_seed(o) for overrides in varied.values() for o in overrides):
        return False
    configs = [without_seed(j) for j in jobs]
    return any(configs.count(c) >= 2 for c in configs)


def compare(ours: ConfigResult, best: ConfigResult) -> Comparison | None:
    """Our test accuracy against the best's: paired over the seeds both completed when they share 2 or more,
    Welch's t-test otherwise; None when either side has fewer than 2 values."""
    from scipy import stats

    mine, theirs = ours.test_by_seed, best.test_by_seed
    shared = sorted(set(mine) & set(theirs))
    if len(shared) >= 2:
        a, b = [mine[s] for s in shared], [theirs[s] for s in shared]
        test, n = PAIRED, len(shared)
        flat = len({x - y for x, y in zip(a, b, strict=True)}) == 1
    else:
        a, b = ours.test.values, best.test.values
        if len(a) < 2 or len(b) < 2:
            return None
        test, n = WELCH, min(len(a), len(b))
        flat = len(set(a)) == len(set(b)) == 1
    difference = statistics.fmean(a) - statistics.fmean(b)
    if flat:
        # No spread at all (every seed on one value, e.g. chance level): t is 0/0, so the means decide.
        return Comparison(test, n, difference, (difference, difference), 1.0 if difference == 0 else 0.0)
    result = stats.ttest_rel(a, b) if test == PAIRED else stats.ttest_ind(a, b, equal_var=False)
    low, high = result.confidence_interval(CONFIDENCE)
    return Comparison(test, n, difference, (float(low), float(high)), float(result.pvalue))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given.

    Written here because scipy.stats has no Holm adjustment (its false_discovery_control is Benjamini-Hochberg,
    which bounds the expected share of false findings, not the chance of any): the i-th smallest of m p-values
    is multiplied by m - i + 1 (i from 1), capped at 1, and made non-decreasing along that order.
    """
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for i, index in enumerate(sorted(range(m), key=lambda k: p_values[k])):
        running = max(running, min(1.0, (m - i) * p_values[index]))
        adjusted[index] = running
    return adjusted


def t_test_power(effect: float, n: int, df: float, alpha: float) -> float:
    """Power of a two-sided t-test whose statistic is noncentral t with `df` degrees of freedom and
    noncentrality `effect` * sqrt(n) (effect: difference / standard deviation of one observation's
    contribution), at level `alpha`: the chance that |t| exceeds the critical value."""
    from scipy import stats

    critical = stats.t.ppf(1 - alpha / 2, df)
    noncentrality = effect * math.sqrt(n)
    return float(stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality))


def seeds_for_power(comparison: Comparison, ours: list[float], best: list[float], alpha: float) -> int | None:
    """The smallest number of seeds per configuration at which the comparison's test would detect its observed
    difference with probability POWER at level `alpha`, taking the observed difference and spread as true.

    Paired: effect = mean difference / std of the differences, n - 1 degrees of freedom. Welch (n seeds on each
    side): effect = difference / sqrt(s1^2 + s2^2), Welch-Satterthwaite degrees of freedom. None when no
    difference was observed; MAX_SEEDS + 1 when even MAX_SEEDS would not do.
    """
    difference = abs(comparison.difference)
    if difference == 0:
        return None
    if comparison.test == PAIRED:
        spread = statistics.stdev([a - b for a, b in zip(ours, best, strict=True)])  # ours, best: paired by seed

        def power(n: int) -> float:
            return t_test_power(difference / spread, n, n - 1, alpha)
    else:
        v1, v2 = statistics.variance(ours), statistics.variance(best)
        spread = math.sqrt(v1 + v2)

        def power(n: int) -> float:
            df = (v1 + v2) ** 2 * (n - 1) / (v1**2 + v2**2)
            return t_test_power(difference / spread, n, df, alpha)

    if spread == 0:
        return 2  # no spread at all: two seeds show the difference
    return next((n for n in range(2, MAX_SEEDS + 1) if power(n) >= POWER), MAX_SEEDS + 1)


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
    judge(configs)
    return configs


def config_rank_key(config: ConfigResult) -> tuple[int, float, float, str]:
    val, test = config.val.mean, config.test.mean
    return (config.n == 0, -(val if val is not None else -1.0), -(test if test is not None else -1.0), config.label)


def judge(configs: list[ConfigResult]) -> None:
    """Verdicts against configs[0], the best: test each, adjust all p-values together (Holm), then word them."""
    best = configs[0]
    tested: list[ConfigResult] = []
    for config in configs:
        if config.n == 0:
            config.verdict = "no completed job"
        elif config is best:
            config.verdict = BEST
        elif (comparison := compare(config, best)) is None:
            config.verdict = f"no test (n={config.test.n} vs {best.test.n}; 2 each needed)"
        else:
            config.comparison = comparison
            tested.append(config)
    alpha = ALPHA / max(len(tested), 1)  # Holm's first (strictest) level: the power estimate's
    for config, p_holm in zip(tested, holm([c.comparison.p_value for c in tested]), strict=True):  # type: ignore[union-attr]
        comparison = config.comparison
        assert comparison is not None
        comparison.p_holm = p_holm
        pairs = sorted(set(config.test_by_seed) & set(best.test_by_seed))
        if comparison.test == PAIRED:
            ours, theirs = [config.test_by_seed[s] for s in pairs], [best.test_by_seed[s] for s in pairs]
        else:
            ours, theirs = config.test.values, best.test.values
        comparison.seeds_needed = seeds_for_power(comparison, ours, theirs, alpha)
        config.verdict = verdict(comparison, config.test.n, best.test.n)


def verdict(comparison: Comparison, n_ours: int, n_best: int) -> str:
    if comparison.p_holm < ALPHA:
        return WORSE if comparison.difference < 0 else BETTER  # ranked by val, tested on test: "better" can happen
    low, high = (100 * v for v in comparison.ci)
    n = f"n={n_ours}" if n_ours == n_best else f"n={n_ours} vs {n_best}"
    return f"{NOT_DISTINGUISHABLE} with {n} (difference CI {low:+.2f} to {high:+.2f} points)"


def not_distinguishable(configs: list[ConfigResult]) -> int:
    return sum(c.verdict.startswith(NOT_DISTINGUISHABLE) for c in configs)


# The per-epoch curves a seed band is drawn for (curves.png, TensorBoard's report run), and where they come from.
CURVES = {"val/acc": "val_acc_per_epoch", "train/loss": "train_loss_per_epoch"}


def seed_band(config: ConfigResult, key: str) -> list[tuple[int, float, float]]:
    """(epoch from 1, mean, sample std) of a per-epoch curve over the configuration's completed seeds; the std
    is 0 where only one seed has a value. Epochs without any value are left out."""
    curves = [getattr(job, CURVES[key]) for job in config.completed]
    band = []
    for epoch in range(max((len(c) for c in curves), default=0)):
        values = [v for c in curves if epoch < len(c) and (v := c[epoch]) is not None]
        if values:
            band.append((epoch + 1, statistics.fmean(values), statistics.stdev(values) if len(values) >= 2 else 0.0))
    return band
