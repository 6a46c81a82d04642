"""The regression gate's comparison: two models' predictions on the same rows, compared row
by row with a paired bootstrap (:func:`scipy.stats.bootstrap`, ``paired`` resampling of
the rows), one-sided."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import bootstrap

from polytask.core.metrics import Metric


def paired_difference(
    metric: Metric, truth: np.ndarray, candidate: np.ndarray, current: np.ndarray, resamples: int, alpha: float, seed: int
) -> dict[str, float]:
    """How much better ``candidate`` predictions are than ``current`` ones on the same rows.

    The difference is oriented so that positive means the candidate is better (for an
    error metric, ``current − candidate``). Rows are resampled together (the pairing);
    for a metric that is a mean of per-row terms (accuracy, MAE, log loss) the statistic is
    the mean of the per-row differences, else the metric is recomputed on each resample.

    Returns:
        ``difference`` (on all rows), ``lower`` (the one-sided ``1 - alpha`` lower bound,
        the percentile bootstrap's), ``candidate`` and ``current`` (each model's metric),
        ``rows``.
    """
    sign = 1.0 if metric.higher_is_better else -1.0
    rng = np.random.default_rng(seed)
    if metric.rows is not None:
        d = sign * (metric.rows(truth, candidate) - metric.rows(truth, current))
        data, statistic, vectorized = (d,), lambda x, axis=-1: np.mean(x, axis=axis), True
    else:

        def statistic(i: np.ndarray) -> float:
            i = i.astype(np.int64)
            return sign * (metric.fn(truth[i], candidate[i]) - metric.fn(truth[i], current[i]))

        data, vectorized = (np.arange(len(truth)),), False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # identical predictions: a degenerate (zero-width) distribution is an answer here
        result = bootstrap(data, statistic, n_resamples=resamples, confidence_level=1 - 2 * alpha, method="percentile", vectorized=vectorized, rng=rng)
    a, b = metric.fn(truth, candidate), metric.fn(truth, current)
    lower = float(result.confidence_interval.low)
    if not np.isfinite(lower):  # every resample equal: the bound is the difference itself
        lower = float(sign * (a - b))
    return {"difference": float(sign * (a - b)), "lower": lower, "candidate": float(a), "current": float(b), "rows": int(len(truth))}
