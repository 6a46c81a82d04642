"""Task metrics, computed with scikit-learn, each with its direction and range.

A metric reads a task's predictions in one form (:func:`Metric.score`): class
probabilities ``[N, C]`` for classification, the probability of class 1 ``[N]`` for
binary tasks, values ``[N, K]`` in the target's own units for regression; and the true
labels as class indices (or values). Names in configs are short (``accuracy``, ``rmse``);
each metric's ``key`` is scikit-learn's function name and carries the direction
(``*_score`` higher is better, ``*_error``/``*_loss`` lower is better).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm

from polytask.core.registry import Registry

CLASSES = ("classification", "binary")


def _labels(pred: np.ndarray) -> np.ndarray:
    """Predicted classes from probabilities: argmax of ``[N, C]``, or ``p > 0.5`` for binary."""
    return pred.argmax(1) if pred.ndim == 2 else (pred > 0.5).astype(np.int64)


def _proba_matrix(pred: np.ndarray) -> np.ndarray:
    """``[N, C]`` probabilities (``[1 - p, p]`` for binary), renormalized in float64."""
    p = np.asarray(pred, dtype=np.float64)
    p = np.stack([1.0 - p, p], 1) if p.ndim == 1 else p
    return p / p.sum(1, keepdims=True)


def _both_classes(y: np.ndarray) -> None:
    # Ranking metrics are undefined on rows of a single class; scikit-learn raises for AUC
    # but only warns (and returns a number) for average precision.
    if len(np.unique(y)) < 2:
        raise ValueError("rows of a single class")


def _one_vs_rest(y: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indicator columns and scores of the classes present in ``y``: a class absent from
    the rows has no ROC or precision-recall curve, so it is left out of the macro average."""
    present = np.unique(y)
    return (y[:, None] == present[None, :]).astype(int), pred[:, present]


def _roc_auc(y: np.ndarray, pred: np.ndarray) -> float:
    _both_classes(y)
    if pred.ndim == 1:
        return skm.roc_auc_score(y, pred)
    # One-vs-rest, macro: with every class present, scikit-learn's multi_class="ovr".
    return skm.roc_auc_score(*_one_vs_rest(y, pred), average="macro")


def _average_precision(y: np.ndarray, pred: np.ndarray) -> float:
    _both_classes(y)
    if pred.ndim == 1:
        return skm.average_precision_score(y, pred)
    return skm.average_precision_score(*_one_vs_rest(y, pred), average="macro")


def _log_loss(y: np.ndarray, pred: np.ndarray) -> float:
    p = _proba_matrix(pred)
    return skm.log_loss(y, p, labels=np.arange(p.shape[1]))


def _log_loss_rows(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    # scikit-learn clips probabilities to [eps, 1 - eps] of their dtype before the log.
    p = _proba_matrix(pred)
    eps = np.finfo(p.dtype).eps
    return -np.log(np.clip(p[np.arange(len(y)), y], eps, 1 - eps))


@dataclass(frozen=True)
class Metric:
    """A task metric.

    Attributes:
        name: the name in configs (``tasks.<t>.metric``).
        key: scikit-learn's name, carrying the direction (``accuracy_score``).
        kinds: task kinds it applies to.
        fn: ``fn(y_true, pred) -> float`` (scikit-learn).
        low, high: the range of its values (for clipping intervals).
        rows: ``rows(y_true, pred) -> [N]`` per-row terms whose mean is the metric, when
            it is such a mean (resampling test rows is then one vectorized step).
        relative_margin: the default practical margin is 1% of the baseline's value
            (error metrics, whose scale is the target's) rather than 0.01 (bounded scores).
    """

    name: str
    key: str
    kinds: tuple[str, ...]
    fn: Callable[[np.ndarray, np.ndarray], float]
    low: float = 0.0
    high: float = 1.0
    rows: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    relative_margin: bool = False

    @property
    def higher_is_better(self) -> bool:
        return higher_is_better(self.key)

    def score(self, y: np.ndarray, pred: np.ndarray) -> float:
        """The metric of predictions ``pred`` against labels ``y`` (NaN when undefined)."""
        try:
            return float(self.fn(y, pred))
        except ValueError:
            return math.nan  # e.g. AUC on rows of a single class

    def default_margin(self, baseline: float) -> float:
        """The practical margin when the config gives none: 0.01, or 1% of ``baseline``."""
        return 0.01 * abs(baseline) if self.relative_margin else 0.01


METRICS: Registry[Metric] = Registry("metric")


def _add(metric: Metric) -> None:
    METRICS.register(metric.name)(metric)


_add(Metric("accuracy", "accuracy_score", CLASSES, lambda y, p: skm.accuracy_score(y, _labels(p)), rows=lambda y, p: (_labels(p) == y).astype(np.float64)))
_add(Metric("balanced_accuracy", "balanced_accuracy_score", CLASSES, lambda y, p: skm.balanced_accuracy_score(y, _labels(p))))
_add(
    Metric(
        "f1_macro",
        "f1_macro_score",
        CLASSES,
        lambda y, p: skm.f1_score(y, _labels(p), average="macro", labels=np.arange(p.shape[1] if p.ndim == 2 else 2), zero_division=0),
    )
)
_add(Metric("roc_auc", "roc_auc_score", CLASSES, _roc_auc))
_add(Metric("average_precision", "average_precision_score", CLASSES, _average_precision))
_add(Metric("log_loss", "log_loss", CLASSES, _log_loss, high=math.inf, rows=_log_loss_rows, relative_margin=True))
_add(Metric("rmse", "root_mean_squared_error", ("regression",), skm.root_mean_squared_error, high=math.inf, relative_margin=True))
_add(
    Metric(
        "mae",
        "mean_absolute_error",
        ("regression",),
        skm.mean_absolute_error,
        high=math.inf,
        rows=lambda y, p: np.abs(y - p).reshape(len(y), -1).mean(1),
        relative_margin=True,
    )
)
_add(Metric("r2", "r2_score", ("regression",), skm.r2_score, low=-math.inf))

DEFAULT = {"classification": "accuracy", "binary": "accuracy", "regression": "rmse"}
BY_KEY = {m.key: m for m in METRICS.values()}


def metric_names(kind: str | None = None) -> list[str]:
    """Metric names, those for task ``kind`` only when given."""
    return [n for n, m in METRICS.items() if kind is None or kind in m.kinds]


def get_metric(name_or_key: str) -> Metric:
    """A metric by config name (``rmse``) or by key (``root_mean_squared_error``)."""
    return BY_KEY.get(name_or_key) or METRICS.get_item(name_or_key)


def higher_is_better(metric: str) -> bool:
    """Direction of a metric from its name: ``*_score`` up, ``*_error``/``*_loss`` down."""
    if metric.endswith("_score"):
        return True
    if metric.endswith(("_error", "_loss")):
        return False
    raise ValueError(f"metric '{metric}' does not end in _score, _error or _loss")
