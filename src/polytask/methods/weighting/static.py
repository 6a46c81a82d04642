"""Static task weights: a fixed weight per task, the baseline tuned weighting methods face."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting, task_vector


@register_weighting("static")
class StaticWeighting(Weighting):
    """``w_t`` fixed for the whole run: the loss is ``sum_t w_t L_t``.

    With ``weights`` omitted every weight is 1 (equal weighting). Re-evaluations of
    multi-task methods (Xin et al., "Do Current Multi-Task Optimization Methods in Deep
    Learning Even Help?", NeurIPS 2022; Kurin et al., "In Defense of the Unitary
    Scalarization for Deep Multi-Task Learning", NeurIPS 2022) find that static weights,
    once tuned, match the specialised methods; ``tune: {space: {task_weights: [lo, hi]}}``
    searches them.

    Args:
        n_tasks: number of tasks ``T``.
        weights: ``T`` non-negative weights, in the order of the study's tasks.
    """

    requires_grads = False

    def __init__(self, n_tasks: int, seed: int = 0, weights: list[float] | None = None):
        super().__init__(n_tasks, seed)
        vec = task_vector(weights, n_tasks, "static", "weights")
        if vec is not None and (not torch.isfinite(vec).all() or (vec < 0).any()):
            raise ValueError(f"static: weights must be finite and >= 0, got {vec.tolist()}")
        self.task_weights = torch.ones(n_tasks, dtype=torch.float64) if vec is None else vec

    def weights(self, losses: Tensor) -> Tensor:
        return self.task_weights.to(losses.dtype)
