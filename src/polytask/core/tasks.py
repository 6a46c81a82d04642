"""Tasks: what is predicted and by which metric it is scored, without PyTorch (the command
line and the config describe tasks without loading it); the loss, target tensors and
scoring of head outputs are in :mod:`polytask.core.targets`.

Metric names carry their direction (``*_score``: higher is better, ``*_error``/``*_loss``:
lower is better; :mod:`polytask.core.metrics`), so analysis and reports rank without a table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from polytask.core.errors import ConfigError
from polytask.core.metrics import DEFAULT, Metric, get_metric, metric_names
from polytask.core.metrics import higher_is_better as higher_is_better

# Distinct whole-number labels read as classes when no kind is given; more are read as a
# quantity (counts, prices), and the user is told so.
MAX_INFERRED_CLASSES = 100


@dataclass(frozen=True)
class Task:
    """A prediction task.

    Attributes:
        name: task name from the config.
        kind: ``classification`` (C classes), ``binary`` (two classes) or ``regression``
            (real targets, trained standardized).
        n_outputs: width of the task's head.
        y_shift, y_scale: regression targets are trained as ``(y - shift) / scale``;
            metrics are computed in the original units. :func:`prepare_task` sets them from
            the training rows of each run.
        classes: the label values of class indices ``0..C-1`` (binary: of 0 and 1), in
            sorted order; labels are encoded through them, so ``{1, 2}`` or ``{-5, 5}``
            work as classes.
        metric_name: the metric's config name (:data:`polytask.core.metrics.METRICS`); the
            kind's default when None (accuracy, or RMSE for regression).
        note: how the kind was inferred, when that is worth telling the user.
    """

    name: str
    kind: str
    n_outputs: int
    y_shift: float = 0.0
    y_scale: float = 1.0
    classes: tuple[float, ...] | None = None
    metric_name: str | None = None
    note: str | None = None

    @property
    def scorer(self) -> Metric:
        """The task's metric."""
        return get_metric(self.metric_name or DEFAULT[self.kind])

    @property
    def metric(self) -> str:
        """Primary metric name, with its direction (``accuracy_score``, ``root_mean_squared_error``)."""
        return self.scorer.key

    def scaled_to(self, y_train: np.ndarray) -> Task:
        """For regression, the task with targets standardized by these training labels."""
        if self.kind != "regression":
            return self
        have = np.asarray(y_train, dtype=np.float64)
        have = have[labelled(have, self.kind)].reshape(-1, self.n_outputs)
        if len(have) == 0:
            return self
        scale = float(have.std())
        return replace(self, y_shift=float(have.mean()), y_scale=scale if scale > 0 and math.isfinite(scale) else 1.0)


def labelled(y: np.ndarray, kind: str) -> np.ndarray:
    """Boolean mask of rows that carry a label: NaN is missing for every kind, and -1 for
    classification and binary tasks (the usual marker in label columns)."""
    y = np.asarray(y, dtype=np.float64)
    mask = ~np.isnan(y) if y.ndim == 1 else ~np.isnan(y).all(axis=tuple(range(1, y.ndim)))
    if kind in ("classification", "binary"):
        mask &= y != -1
    return mask


def _inferred_kind(values: np.ndarray, integral: bool) -> tuple[str, str | None]:
    """The kind whole-number or real labels suggest, and a note when the guess is not obvious."""
    n = len(values)
    if not integral or n == 0:
        return "regression", None
    index_coded = bool(np.array_equal(values, np.arange(n)))
    listed = ", ".join(f"{v:g}" for v in values[:4]) + (", ..." if n > 4 else "")
    if n <= 2:
        if set(values.tolist()) <= {0, 1}:
            return "binary", None
        return "binary", f"{n} distinct whole-number labels ({listed}) read as two classes"
    if n <= MAX_INFERRED_CLASSES:
        return "classification", None if index_coded else f"{n} distinct whole-number labels ({listed}) read as {n} classes"
    return "regression", f"{n} distinct whole-number labels read as a quantity (regression)"


def infer_task(name: str, y_train: np.ndarray, kind: str | None = None, metric: str | None = None) -> Task:
    """Build a :class:`Task` from training labels, inferring the kind when not given.

    Whole-number labels with two distinct values are ``binary``; with 3 to
    :data:`MAX_INFERRED_CLASSES` values ``classification``; anything else is ``regression``. Class labels need not be ``0..C-1``: their sorted values become
    the classes. Missing labels (NaN; -1 for classes) are ignored here and masked out of
    losses and metrics. A guess worth telling the user is in :attr:`Task.note`.

    Args:
        name: the task's name.
        y_train: its training labels.
        kind: the kind, when the config gives it.
        metric: the metric's name (default: the kind's).

    Raises:
        ConfigError: labels that do not fit the requested kind, none present, or a
            metric that does not apply to the kind.
    """
    y = np.asarray(y_train)
    yf = y.astype(np.float64)
    present = yf[~np.isnan(yf)] if y.ndim == 1 else yf
    integral = y.ndim == 1 and bool(np.all(np.mod(present, 1) == 0))
    values = np.unique(present[present != -1]) if integral else np.array([])
    minus_one = int(np.sum(present == -1)) if integral else 0
    if minus_one and len(values) == 1 and kind != "regression":
        raise ConfigError(
            f"task '{name}': labels take only the values -1 and {values[0]:g}, and -1 means a missing label, so one class would remain; "
            "recode the classes (e.g. as 0 and 1) and mark missing labels with NaN"
        )
    notes = []
    if kind is None:
        kind, guess = _inferred_kind(values, integral)
        if guess:
            notes.append(f"task '{name}': {guess} (set tasks.{name}.kind to change it)")
    if minus_one and kind != "regression":
        notes.append(f"task '{name}': {minus_one} label(s) of -1 are read as missing; if -1 is a class, recode the labels (e.g. as 0..C-1)")
    note = "; ".join(notes) or None
    have = yf[labelled(yf, kind)]
    if len(have) == 0:
        raise ConfigError(f"task '{name}': y_train has no labels (every value is missing)")
    if metric is not None and kind not in get_metric(metric).kinds:
        raise ConfigError(f"field 'tasks.{name}.metric': '{metric}' does not apply to a {kind} task (use one of: {', '.join(metric_names(kind))})")
    if kind in ("classification", "binary") and not integral:
        raise ConfigError(f"task '{name}': kind {kind} needs integer labels in a 1-D y_train, got dtype {y.dtype} shape {y.shape}")
    if kind == "binary":
        classes = tuple(values.tolist()) if not set(values.tolist()) <= {0, 1} else (0.0, 1.0)
        if len(classes) != 2:
            raise ConfigError(f"task '{name}': binary labels must take two values (-1 or NaN: missing), got {sorted(values.tolist())[:5]}")
        return Task(name, "binary", 1, classes=classes, metric_name=metric, note=note)
    if kind == "classification":
        if len(values) < 2:
            raise ConfigError(f"task '{name}': classification needs at least two classes in y_train, got {values.tolist()}")
        return Task(name, "classification", len(values), classes=tuple(values.tolist()), metric_name=metric, note=note)
    have = have.reshape(len(have), -1)
    scale = float(have.std()) or 1.0
    return Task(name, "regression", have.shape[1], y_shift=float(have.mean()), y_scale=scale, metric_name=metric, note=note)


# Share of the majority class above which accuracy says little: predicting that class
# alone scores at least this much.
MAJORITY_WARNING = 0.9


def task_notes(task: Task, data, reported: bool = True) -> list[str]:
    """What is worth telling the user about a task before it runs: a guessed kind, and,
    for a ``reported`` (target) task, accuracy on labels dominated by one class."""
    notes = [task.note] if task.note else []
    if reported and task.kind != "regression" and task.scorer.name == "accuracy":
        y = np.asarray(data.y_train, dtype=np.float64)
        y = y[labelled(y, task.kind)]
        share = float(np.unique(y, return_counts=True)[1].max() / len(y))
        if share > MAJORITY_WARNING:
            notes.append(
                f"task '{task.name}': {share:.0%} of the training labels are one class, so predicting it alone scores "
                f"{share:.2f} accuracy; set tasks.{task.name}.metric to balanced_accuracy, f1_macro, roc_auc or average_precision"
            )
    return notes
