"""Geometric loss strategy (Chennupati et al., CVPR Workshops 2019)."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting


@register_weighting("gls")
class GeometricLossStrategy(Weighting):
    """Minimise the geometric mean of the task losses.

    Chennupati et al., "MultiNet++: Multi-Stream Feature Aggregation and Geometric Loss
    Strategy for Multi-Task Learning", CVPRW 2019::

        total = (prod_t L_t)^(1/T),     w_t = d total / d L_t = total / (T * L_t)

    The geometric mean is scale-invariant per task: rescaling one loss rescales ``total``
    but leaves the *relative* weights unchanged, and a task with a small loss gets a
    large weight.

    Losses must be positive. Losses ``<= eps`` are clamped to ``eps`` (computed in log
    space, float64): the weights stay finite, though a near-zero loss still gets a very
    large weight, which is what the geometric mean's gradient is.

    Args:
        n_tasks: number of tasks ``T``.
        seed: seed of the (unused) generator.
        eps: lower clamp of the losses.
    """

    requires_grads = False

    def __init__(self, n_tasks: int, seed: int = 0, eps: float = 1e-8):
        super().__init__(n_tasks, seed)
        self.eps = eps

    def weights(self, losses: Tensor) -> Tensor:
        log_l = torch.log(losses.detach().to(torch.float64).clamp_min(self.eps))
        # total / L_t = exp(mean(log L) - log L_t): one exp, no overflowing product.
        w = torch.exp(log_l.mean() - log_l) / self.n_tasks
        self.last_weights = w.to(losses.dtype)
        return self.last_weights
