"""A task's targets as tensors: encoding labels, which rows are labelled, the training loss,
and what a metric reads from head outputs. The PyTorch side of :class:`~polytask.core.tasks.Task`."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from polytask.core.tasks import Task, labelled


def encode_targets(task: Task, y: np.ndarray) -> torch.Tensor:
    """Labels as the tensor the loss expects; missing labels become -1 (classes) or NaN."""
    y = np.asarray(y, dtype=np.float64)
    missing = ~labelled(y, task.kind)
    if task.kind != "regression" and task.classes is not None:
        # Class values -> indices 0..C-1 (check_task_data has checked every value is a class).
        y = np.where(missing, -1.0, np.searchsorted(np.asarray(task.classes, dtype=np.float64), np.where(missing, task.classes[0], y)))
    if task.kind == "classification":
        return torch.as_tensor(np.where(missing, -1, y), dtype=torch.long)
    t = torch.as_tensor(np.where(missing.reshape(-1, *([1] * (y.ndim - 1))), np.nan, y), dtype=torch.float32)
    if task.kind == "regression":
        t = (t - task.y_shift) / task.y_scale
    return t.reshape(len(t), -1)


def labelled_rows(task: Task, y: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the rows of encoded targets ``y`` that carry a label."""
    return y >= 0 if task.kind == "classification" else ~torch.isnan(y).any(dim=1)


def task_loss(task: Task, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean training loss over the labelled rows of a batch (0 when none is labelled)."""
    mask = labelled_rows(task, y)
    if not bool(mask.all()):
        if not bool(mask.any()):
            return out.sum() * 0.0  # keeps the graph; this batch teaches this task nothing
        out, y = out[mask], y[mask]
    if task.kind == "classification":
        return F.cross_entropy(out, y)
    if task.kind == "binary":
        return F.binary_cross_entropy_with_logits(out, y)
    return F.mse_loss(out, y)


@torch.no_grad()
def predictions(task: Task, out: torch.Tensor) -> np.ndarray:
    """What the metric reads from head outputs: class probabilities ``[N, C]``, the
    probability of class 1 ``[N]`` (binary), or values ``[N, K]`` in original units."""
    out = out.detach().float().cpu()
    if task.kind == "classification":
        return torch.softmax(out, dim=1).numpy()
    if task.kind == "binary":
        return torch.sigmoid(out[:, 0]).numpy()
    return (out * task.y_scale + task.y_shift).numpy()


def truth(task: Task, y: torch.Tensor) -> np.ndarray:
    """Encoded targets as the metric reads them: class indices, or values in original units."""
    y = y.detach().cpu()
    if task.kind == "classification":
        return y.numpy()
    if task.kind == "binary":
        return y[:, 0].long().numpy()
    return (y * task.y_scale + task.y_shift).numpy()


def task_score(task: Task, out: torch.Tensor, y: torch.Tensor) -> float:
    """Primary metric over the labelled rows (NaN when none is labelled)."""
    mask = labelled_rows(task, y)
    if not bool(mask.any()):
        return float("nan")
    return task.scorer.score(truth(task, y[mask]), predictions(task, out[mask]))
