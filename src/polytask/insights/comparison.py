"""Paired comparisons of two strategies on one task, and the verdicts drawn from them.

Two strategies run with the same seeds share each seed's validation carve and training
subset, and every run is tested on the same test rows, so a comparison is paired twice:
over seeds and over test rows. Its uncertainty has two parts:

- the spread of the paired differences over seeds (initialization, batch order), and
- the sampling error of the test rows: another test set of the same size would give
  other numbers. It comes from resampling the test rows (one resample shared by every
  seed, since every seed is tested on the same rows): computed exactly for metrics that
  are a mean of per-row terms (accuracy, MAE, log loss; the bootstrap's limit), by a
  seeded bootstrap for the others (AUC, F1, RMSE, ...).

The variance of the mean difference is ``sd^2 / n + v_rows``, with Welch-Satterthwaite
degrees of freedom (the test-row part counts as known). Runs of two seeds disagree on
test rows partly at random, and that seed-by-row interaction is already in the seeds'
spread ``sd``; ``v_rows`` is what the rows add beyond it (a two-way random-effects split
of the resampling variances, :func:`_row_variance`), so nothing is counted twice.

Verdicts, in this order (:func:`verdict`):

- ``equivalent``: the 90% interval of the difference lies inside ``±margin``
  (two one-sided tests, TOST, at 5%);
- ``better`` / ``worse``: the difference's p-value is under 0.05 (``worse``: negative
  transfer); uncorrected, that is the 95% interval excluding 0, and a caller correcting
  for many comparisons passes the adjusted p-value;
- ``inconclusive``: neither, or fewer than :data:`MIN_SEEDS` paired seeds, or no spread
  at all in the differences (no p-value is made up for those).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests

from polytask.core.metrics import Metric

ALPHA = 0.05
# Fewer paired seeds than this give no verdict: with 2, a t interval has one degree of freedom.
MIN_SEEDS = 3
# Most seeds an estimate of "how many would settle it" looks at.
MAX_SEEDS = 100

# Per seed, the labels and predictions of the test rows (None when they were not kept).
RowPredictions = tuple[np.ndarray, np.ndarray]


@dataclass
class Scores:
    """One strategy's results in one cell (task, fraction).

    Attributes:
        metric: the task's metric.
        by_seed: the test metric per seed.
        rows: per seed, the test rows' labels and predictions, when kept.
    """

    metric: Metric
    by_seed: dict[int, float]
    rows: dict[int, RowPredictions] = field(default_factory=dict)


@dataclass
class Interval:
    """A mean (or mean difference) with its standard error and t degrees of freedom."""

    mean: float
    se: float
    df: float
    n: int
    sd: float
    row_var: float | None

    def bounds(self, level: float) -> tuple[float, float] | None:
        """Two-sided interval at ``level`` (None when undefined)."""
        if not self.se > 0 or math.isnan(self.df):
            return None
        q = float(stats.t.ppf(0.5 + level / 2, self.df))
        return self.mean - q * self.se, self.mean + q * self.se


def _combine(sd: float, n: int, row_var: float | None) -> tuple[float, float]:
    """Standard error and Welch-Satterthwaite degrees of freedom of a mean over ``n`` seeds
    with seed spread ``sd`` plus a test-row variance ``row_var`` (known: infinite df)."""
    seed_var = sd**2 / n if n > 0 else 0.0
    total = seed_var + (row_var or 0.0)
    if total <= 0:
        return 0.0, math.nan
    if seed_var == 0:
        return math.sqrt(total), math.inf
    df = total**2 / (seed_var**2 / (n - 1)) if n > 1 else math.nan
    return math.sqrt(total), df


def _row_variance(metric: Metric, parts: list[tuple[RowPredictions, RowPredictions | None]], sign: float, reps: int, rng: np.random.Generator) -> float | None:
    """The test rows' part of the variance of the mean over seeds of ``sign * (a - b)`` (of
    ``a`` alone when ``b`` is None); ``parts``: per seed, the rows of ``a`` and ``b``.

    Over resamples of the test rows (one resample shared by every seed), ``v_mean`` is the
    variance of the mean over the ``S`` seeds and ``v_each`` the mean of each seed's own
    variance. A two-way (seed x row) random-effects view splits them: the seed-by-row
    interaction (two runs disagreeing on rows at random) adds ``i / S`` to ``v_mean`` and
    ``i`` to ``v_each``, and it is already in the seeds' spread ``sd^2 / S``. What the rows
    add beyond it, the variance a new test set would bring, is
    ``v_mean - (v_each - v_mean) / (S - 1)`` (at least 0). With one seed the interaction
    cannot be separated and ``v_mean`` is returned.
    """
    if not parts:
        return None
    n_rows = len(parts[0][0][0])
    for (ta, _), b in parts:
        if len(ta) != n_rows or (b is not None and (len(b[0]) != n_rows or not np.array_equal(b[0], ta))):
            return None  # not the same test rows: no paired resampling
    if metric.rows is not None:
        # Per-row metrics: the resampling variances in closed form (the bootstrap's limit).
        terms = np.stack([sign * (metric.rows(*a) - (metric.rows(*b) if b is not None else 0.0)) for a, b in parts])
        v_mean = float(terms.mean(0).var() / n_rows)
        v_each = float(terms.var(1).mean() / n_rows)
    else:
        draws = []
        for _ in range(reps):
            idx = rng.integers(0, n_rows, n_rows)
            diffs = []
            for (ta, pa), b in parts:
                d = metric.score(ta[idx], pa[idx])
                if b is not None:
                    d -= metric.score(b[0][idx], b[1][idx])
                diffs.append(sign * d)
            if all(math.isfinite(d) for d in diffs):
                draws.append(diffs)
        if len(draws) < 2:
            return None
        draws = np.array(draws)
        v_mean = float(draws.mean(1).var(ddof=1))
        v_each = float(draws.var(0, ddof=1).mean())
    s = len(parts)
    if s < 2:
        return v_mean
    return max(0.0, v_mean - (v_each - v_mean) / (s - 1))


def cell_interval(a: Scores, reps: int = 400, seed: int = 0) -> Interval:
    """The mean of ``a`` over seeds with an interval for the task's true mean (seed spread
    and test-row sampling error)."""
    values = np.array(list(a.by_seed.values()), dtype=float)
    n = len(values)
    sd = float(values.std(ddof=1)) if n > 1 else 0.0
    parts = [(a.rows[s], None) for s in a.by_seed if s in a.rows] if len(a.rows) == n else []
    row_var = _row_variance(a.metric, parts, 1.0, reps, np.random.default_rng(seed)) if parts else None
    se, df = _combine(sd, n, row_var) if n > 1 else (0.0, math.nan)
    return Interval(float(values.mean()), se, df, n, sd, row_var)


@dataclass
class Comparison:
    """``a`` against reference ``b`` on one task: the paired difference, signed so that
    positive means ``a`` is better, and its tests against 0 and against ``±margin``.

    Attributes:
        diff: the mean paired difference with its uncertainty.
        margin: the practical margin of equivalence, in the metric's units.
        p: two-sided p-value of "no difference" (None: untestable).
        p_tost: the larger of the two one-sided p-values of equivalence within ``±margin``.
        p_noninferior: one-sided p-value of "``a`` is worse by more than the margin".
        reason: why the comparison is untestable, when it is.
    """

    diff: Interval
    margin: float
    p: float | None
    p_tost: float | None
    p_noninferior: float | None
    reason: str | None = None

    @property
    def n(self) -> int:
        return self.diff.n

    def ci(self, level: float, clip: float | None = None) -> tuple[float, float] | None:
        """Interval of the difference at ``level``, inside ``±clip`` (the metric's span) when given."""
        b = self.diff.bounds(level) if self.reason is None else None
        if b is None or clip is None:
            return b
        return max(b[0], -clip), min(b[1], clip)


def compare(a: Scores, b: Scores, margin: float, reps: int = 400, seed: int = 0) -> Comparison:
    """Paired comparison of ``a`` with ``b`` over their shared seeds (and test rows when kept)."""
    metric = a.metric
    sign = 1.0 if metric.higher_is_better else -1.0
    seeds = sorted(set(a.by_seed) & set(b.by_seed))
    d = np.array([sign * (a.by_seed[s] - b.by_seed[s]) for s in seeds], dtype=float)
    n = len(d)
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    paired_rows = [s for s in seeds if s in a.rows and s in b.rows]
    parts = [(a.rows[s], b.rows[s]) for s in paired_rows] if len(paired_rows) == n and n else []
    row_var = _row_variance(metric, parts, sign, reps, np.random.default_rng(seed)) if parts else None
    mean = float(d.mean()) if n else math.nan
    if n < MIN_SEEDS:
        return Comparison(Interval(mean, 0.0, math.nan, n, sd, row_var), margin, None, None, None, f"{n} paired seed(s); a verdict needs {MIN_SEEDS}")
    if np.allclose(d, d[0], rtol=0.0, atol=1e-12):
        reason = "every seed gave the same difference: no spread to judge it by"
        return Comparison(Interval(mean, 0.0, math.nan, n, 0.0, row_var), margin, None, None, None, reason)
    se, df = _combine(sd, n, row_var)
    t = stats.t
    p = float(2 * t.sf(abs(mean) / se, df))
    p_lower = float(t.sf((mean + margin) / se, df))  # H0: difference <= -margin
    p_upper = float(t.cdf((mean - margin) / se, df))  # H0: difference >= +margin
    return Comparison(Interval(mean, se, df, n, sd, row_var), margin, p, max(p_lower, p_upper), p_lower)


def verdict(c: Comparison, p: float | None = None, p_tost: float | None = None, alpha: float = ALPHA) -> str:
    """``equivalent``, ``better``, ``worse`` or ``inconclusive`` (see the module docstring),
    from the comparison's p-values or corrected ones passed in."""
    p = c.p if p is None else p
    p_tost = c.p_tost if p_tost is None else p_tost
    if c.reason is not None or p is None:
        return "inconclusive"
    if p_tost is not None and p_tost < alpha:
        return "equivalent"
    if p < alpha:
        return "better" if c.diff.mean > 0 else "worse"
    return "inconclusive"


def holm(pvalues: Sequence[float | None], alpha: float = ALPHA) -> list[float | None]:
    """Holm-adjusted p-values (statsmodels), ``None`` kept where there is none."""
    present = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = list(pvalues)
    if present:
        adjusted = multipletests([pvalues[i] for i in present], alpha=alpha, method="holm")[1]
        for i, q in zip(present, adjusted):
            out[i] = float(q)
    return out


def seeds_to_settle(c: Comparison, alpha: float = ALPHA) -> tuple[int | None, str]:
    """About how many paired seeds would turn an inconclusive comparison into a verdict.

    Uses an upper 95% confidence bound of the seed spread (chi-square) and assumes the
    observed mean difference is the true one; the test rows' sampling error stays as it
    is, since seeds cannot reduce it. Approximate, and adding seeds after looking at the
    results inflates the error rates: plan the number of seeds before running.

    Returns:
        ``(seeds, note)``; ``seeds`` is None when no number of seeds would do.
    """
    n, sd, mean = c.diff.n, c.diff.sd, abs(c.diff.mean)
    if n < 2:
        return None, f"run at least {MIN_SEEDS} seeds to measure the spread"
    if sd == 0:
        # No spread to extrapolate from: no number of seeds can be promised.
        return None, c.reason or "every seed gave the same difference: no spread to judge it by"
    sd_upper = sd * math.sqrt((n - 1) / stats.chi2.ppf(alpha, n - 1)) if sd > 0 else 0.0
    row_var = c.diff.row_var or 0.0
    for k in range(max(n + 1, MIN_SEEDS), MAX_SEEDS + 1):
        se, df = _combine(sd_upper, k, row_var)
        if se == 0:
            return k, "approximate"
        if mean - stats.t.ppf(1 - alpha / 2, df) * se > 0 or mean + stats.t.ppf(1 - alpha, df) * se < c.margin:
            return k, "approximate"
    if row_var and math.sqrt(row_var) * stats.norm.ppf(1 - alpha) >= max(mean, c.margin - mean):
        return None, f"the test rows' sampling error (±{math.sqrt(row_var):.3g}) alone is too large: a larger test set would settle it, not more seeds"
    return None, f"more than {MAX_SEEDS} seeds would be needed (approximate)"


def clip_interval(bounds: tuple[float, float] | None, metric: Metric) -> tuple[float, float] | None:
    """An interval kept inside the metric's range (an accuracy interval never passes 1)."""
    if bounds is None:
        return None
    return max(bounds[0], metric.low), min(bounds[1], metric.high)


def seeded(*names: object) -> int:
    """A seed for a comparison's bootstrap, fixed by what is compared (stable across runs)."""
    return zlib.crc32("/".join(map(str, names)).encode())
