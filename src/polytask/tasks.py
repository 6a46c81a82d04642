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
        """Labels as the tensor the loss expects."""
        if self.kind == "classification":
            return torch.as_tensor(y, dtype=torch.long)
        t = torch.as_tensor(y, dtype=torch.float32)
        if self.kind == "regression":
            t = (t - self.y_shift) / self.y_scale
        return t.reshape(len(t), -1)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean training loss of a batch (cross-entropy, logistic or squared error)."""
        if self.kind == "classification":
            return F.cross_entropy(out, y)
        if self.kind == "binary":
            return F.binary_cross_entropy_with_logits(out, y)
        return F.mse_loss(out, y)

    def score(self, out: torch.Tensor, y: torch.Tensor) -> float:
        """Primary metric of predictions ``out`` against encoded targets ``y``."""
        if self.kind == "classification":
            return (out.argmax(1) == y).float().mean().item()
        if self.kind == "binary":
            return ((out > 0).float() == y).float().mean().item()
        return (torch.sqrt(F.mse_loss(out, y)) * self.y_scale).item()


def infer_task(name: str, y_train: np.ndarray, kind: str | None = None) -> Task:
    """Build a :class:`Task` from training labels, inferring the kind when not given.

    Whole-number labels 0/1 are ``binary``; 3 to 100 distinct non-negative whole numbers
    are ``classification``; anything else is ``regression``. Pass ``kind`` to override.

    Raises:
        ConfigError: when labels do not fit the requested kind.
    """
    y = np.asarray(y_train)
    integral = y.ndim == 1 and (np.issubdtype(y.dtype, np.integer) or bool(np.all(np.mod(y, 1) == 0)))
    if kind is None:
        values = np.unique(y) if integral else np.array([])
        if integral and set(values.tolist()) == {0, 1}:
            kind = "binary"
        # Many distinct whole numbers (counts, prices) are more likely a quantity than classes.
        elif integral and 2 < len(values) <= 100 and values.min() >= 0:
            kind = "classification"
        else:
            kind = "regression"
    if kind in ("classification", "binary") and not integral:
        raise ConfigError(f"task '{name}': kind {kind} needs integer labels in a 1-D y_train, got dtype {y.dtype} shape {y.shape}")
    if kind == "binary":
        if not set(np.unique(y).tolist()) <= {0, 1}:
            raise ConfigError(f"task '{name}': binary labels must be 0 or 1, got values {sorted(np.unique(y).tolist())[:5]}")
        return Task(name, "binary", 1)
    if kind == "classification":
        if y.min() < 0:
            raise ConfigError(f"task '{name}': class labels must be 0..C-1, got {int(y.min())} in y_train")
        return Task(name, "classification", int(y.max()) + 1)
    yf = y.astype(np.float64).reshape(len(y), -1)
    scale = float(yf.std()) or 1.0
    return Task(name, "regression", yf.shape[1], y_shift=float(yf.mean()), y_scale=scale)
