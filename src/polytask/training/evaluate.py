"""Evaluation: head outputs, metrics and losses on a split, test predictions, and the
validation criterion that picks the best epoch.

Every pass runs in eval mode and in batches of :data:`EVAL_BATCH` rows; the model's
training mode is restored afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from polytask.core.targets import labelled_rows, predictions, task_loss, task_score, truth
from polytask.core.tasks import higher_is_better
from polytask.data.prepare import PreparedTask, Split
from polytask.training.batches import same_input_groups
from polytask.training.devices import module_device

# Rows per forward pass when evaluating or caching features. Large batches do not pay on
# CPU: EfficientNet-Lite0 at 64 px computes 600 rows 2.9x faster in batches of 128 than in
# one batch (activations fall out of cache), and attention memory grows with the batch.
EVAL_BATCH = 128


@torch.no_grad()
def _outputs(model: nn.Module, task: PreparedTask, split: Split) -> torch.Tensor:
    """Head outputs of ``model`` for every row of ``split`` (eval mode, in batches), on the
    CPU: each batch goes to the model's device and its outputs come back."""
    was = model.training
    model.eval()
    device = module_device(model)
    outs = [model(x.to(device), task.task.name).float().cpu() for x in split.x.split(EVAL_BATCH)]
    model.train(was)
    return torch.cat(outs)


def evaluate(model: nn.Module, task: PreparedTask, split: Split) -> tuple[float, float]:
    """Primary metric and mean loss of ``model`` on one split of ``task`` (eval mode)."""
    out = _outputs(model, task, split)
    return task_score(task.task, out, split.y), task_loss(task.task, out, split.y).item()


@torch.no_grad()
def _validate(model: nn.Module, data: dict[str, PreparedTask], shared: bool) -> tuple[dict[str, float], dict[str, float]]:
    """Every task's validation metric and loss; tasks validated on the same rows share one
    backbone pass when the model has one representation for every head."""
    metrics, losses = {}, {}
    groups = same_input_groups(data, "val") if shared else [[n] for n in data]
    was = model.training
    model.eval()
    for g in groups:
        x = data[g[0]].val.x
        z = torch.cat([model.backbone(chunk) for chunk in x.split(EVAL_BATCH)]) if len(g) > 1 else None
        for n in g:
            out = model.heads[n](z) if z is not None else torch.cat([model(chunk, n) for chunk in x.split(EVAL_BATCH)])
            metrics[n], losses[n] = task_score(data[n].task, out, data[n].val.y), task_loss(data[n].task, out, data[n].val.y).item()
    model.train(was)
    return metrics, losses


@dataclass
class Predictions:
    """A model's predictions on the labelled rows of one split, as the metric reads them.

    Attributes:
        metric: the task's metric on these rows.
        truth: labels (class indices, or values in the target's units).
        pred: class probabilities ``[N, C]``, probability of class 1 ``[N]``, or values ``[N, K]``.
    """

    metric: float
    truth: np.ndarray
    pred: np.ndarray


def predict(model: nn.Module, task: PreparedTask, split: Split) -> Predictions:
    """Predictions of ``model`` on the labelled rows of ``split``, with the task's metric.

    Kept per test row so the analysis can resample test rows (their sampling error is
    part of how sure a comparison is).
    """
    out = _outputs(model, task, split)
    mask = labelled_rows(task.task, split.y)
    y, pred = truth(task.task, split.y[mask]), predictions(task.task, out[mask])
    return Predictions(task.task.scorer.score(y, pred), y, pred)


def _criterion(select: str | Sequence[str], data: dict[str, PreparedTask]):
    """Validation criterion, higher is better: one task's metric, minus the mean loss, or
    for several tasks the mean of their metrics, each signed so that higher is better and
    divided by its value at the first evaluation, so that tasks of different scales (an
    accuracy, an RMSE in dollars) weigh alike."""
    if isinstance(select, str) and select == "loss":
        return lambda metrics, losses: -sum(losses.values()) / len(losses)
    names = [select] if isinstance(select, str) else list(select)
    sign = {n: 1.0 if higher_is_better(data[n].task.metric) else -1.0 for n in names}
    if len(names) == 1:
        return lambda metrics, losses: sign[names[0]] * metrics[names[0]]
    first: dict[str, float] = {}

    def mean_relative(metrics: dict[str, float], losses: dict[str, float]) -> float:
        if not first:
            first.update({n: abs(metrics[n]) if math.isfinite(metrics[n]) and metrics[n] != 0 else 1.0 for n in names})
        return sum(sign[n] * metrics[n] / first[n] for n in names) / len(names)

    return mean_relative
