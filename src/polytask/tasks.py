"""Tasks: what is predicted, with which loss, scored by which metric.

Metric names carry their direction (``*_score``: higher is better, ``*_error``: lower is
better), so analysis and reports can rank without a lookup table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from polytask.errors import ConfigError

METRICS = {"classification": "accuracy_score", "binary": "accuracy_score", "regression": "root_mean_squared_error"}


def higher_is_better(metric: str) -> bool:
    """Direction of a metric from its name: ``*_score`` up, ``*_error``/``*_loss`` down."""
    if metric.endswith("_score"):
        return True
    if metric.endswith(("_error", "_loss")):
        return False
    raise ValueError(f"metric '{metric}' does not end in _score, _error or _loss")


@dataclass(frozen=True)
class Task:
    """A prediction task.

    Attributes:
        name: task name from the config.
        kind: ``classification`` (C classes, labels 0..C-1), ``binary`` (labels 0/1) or
            ``regression`` (real targets, trained standardized).
        n_outputs: width of the task's head.
        y_shift, y_scale: regression targets are trained as ``(y - shift) / scale``;
            the metric is reported in the original units.
    """

    name: str
    kind: str
    n_outputs: int
    y_shift: float = 0.0
    y_scale: float = 1.0

    @property
    def metric(self) -> str:
        """Primary metric name."""
        return METRICS[self.kind]

    def encode_targets(self, y: np.ndarray) -> torch.Tensor:
        """Labels as the tensor the loss expects; missing labels become -1 (classes) or NaN."""
        y = np.asarray(y, dtype=np.float64)
        missing = ~labelled(y, self.kind)
        if self.kind == "classification":
            return torch.as_tensor(np.where(missing, -1, y), dtype=torch.long)
        t = torch.as_tensor(np.where(missing.reshape(-1, *([1] * (y.ndim - 1))), np.nan, y), dtype=torch.float32)
        if self.kind == "regression":
            t = (t - self.y_shift) / self.y_scale
        return t.reshape(len(t), -1)

    def labelled_rows(self, y: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the rows of encoded targets ``y`` that carry a label."""
        return y >= 0 if self.kind == "classification" else ~torch.isnan(y).any(dim=1)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean training loss over the labelled rows of a batch (0 when none is labelled)."""
        mask = self.labelled_rows(y)
        if not bool(mask.all()):
            if not bool(mask.any()):
                return out.sum() * 0.0  # keeps the graph; this batch teaches this task nothing
            out, y = out[mask], y[mask]
        if self.kind == "classification":
            return F.cross_entropy(out, y)
        if self.kind == "binary":
            return F.binary_cross_entropy_with_logits(out, y)
        return F.mse_loss(out, y)

    def score(self, out: torch.Tensor, y: torch.Tensor) -> float:
        """Primary metric over the labelled rows (NaN when none is labelled)."""
        mask = self.labelled_rows(y)
        if not bool(mask.any()):
            return float("nan")
        out, y = out[mask], y[mask]
        if self.kind == "classification":
            return (out.argmax(1) == y).float().mean().item()
        if self.kind == "binary":
            return ((out > 0).float() == y).float().mean().item()
        return (torch.sqrt(F.mse_loss(out, y)) * self.y_scale).item()


def labelled(y: np.ndarray, kind: str) -> np.ndarray:
    """Boolean mask of rows that carry a label: NaN is missing for every kind, and -1 for
    classification and binary tasks (the usual marker in label columns)."""
    y = np.asarray(y, dtype=np.float64)
    mask = ~np.isnan(y) if y.ndim == 1 else ~np.isnan(y).all(axis=tuple(range(1, y.ndim)))
    if kind in ("classification", "binary"):
        mask &= y != -1
    return mask


def infer_task(name: str, y_train: np.ndarray, kind: str | None = None) -> Task:
    """Build a :class:`Task` from training labels, inferring the kind when not given.

    Whole-number labels 0/1 are ``binary``; 3 to 100 distinct non-negative whole numbers
    are ``classification``; anything else is ``regression``. Missing labels (NaN; -1 for
    classes) are ignored here and masked out of losses and metrics. Pass ``kind`` to override.

    Raises:
        ConfigError: when labels do not fit the requested kind, or none is present.
    """
    y = np.asarray(y_train)
    yf = y.astype(np.float64)
    present = yf[~np.isnan(yf)] if y.ndim == 1 else yf
    integral = y.ndim == 1 and bool(np.all(np.mod(present, 1) == 0))
    if kind is None:
        values = np.unique(present[present != -1]) if integral else np.array([])
        if integral and set(values.tolist()) == {0, 1}:
            kind = "binary"
        # Many distinct whole numbers (counts, prices) are more likely a quantity than classes.
        elif integral and 2 < len(values) <= 100 and values.min() >= 0:
            kind = "classification"
        else:
            kind = "regression"
    have = yf[labelled(yf, kind)]
    if len(have) == 0:
        raise ConfigError(f"task '{name}': y_train has no labels (every value is missing)")
    if kind in ("classification", "binary") and not integral:
        raise ConfigError(f"task '{name}': kind {kind} needs integer labels in a 1-D y_train, got dtype {y.dtype} shape {y.shape}")
    if kind == "binary":
        if not set(np.unique(have).tolist()) <= {0, 1}:
            raise ConfigError(f"task '{name}': binary labels must be 0 or 1 (-1 or NaN: missing), got values {sorted(np.unique(have).tolist())[:5]}")
        return Task(name, "binary", 1)
    if kind == "classification":
        if have.min() < 0:
            raise ConfigError(f"task '{name}': class labels must be 0..C-1 (-1 or NaN: missing), got {int(have.min())} in y_train")
        return Task(name, "classification", int(have.max()) + 1)
    have = have.reshape(len(have), -1)
    scale = float(have.std()) or 1.0
    return Task(name, "regression", have.shape[1], y_shift=float(have.mean()), y_scale=scale)
