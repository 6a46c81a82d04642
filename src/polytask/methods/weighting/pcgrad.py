"""PCGrad: project each task gradient off the gradients it conflicts with."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting


@register_weighting("pcgrad")
class PCGrad(Weighting):
    """Projecting conflicting gradients (Yu et al., "Gradient Surgery for Multi-Task
    Learning", NeurIPS 2020, Algorithm 1).

    For each task ``i``, start from ``g_i^PC = g_i`` and, for every other task ``j`` in a
    random order, if ``g_i^PC . g_j < 0`` replace

        ``g_i^PC <- g_i^PC - (g_i^PC . g_j) / ||g_j||^2 * g_j``.

    The update is ``sum_i g_i^PC`` (the paper's sum, not a mean).

    Every ``g_i^PC`` is a linear combination of the raw gradients, so the method tracks its
    coefficients exactly (all dot products come from the float64 Gram matrix) and returns
    ``w = sum_i c_i`` with ``combined = w @ grads``.

    Differences from common implementations, on purpose: the random order comes from the
    object's own generator (LibMTL and the official code use Python's global ``random``,
    so runs are not reproducible); ``j = i`` is skipped as in the paper's Algorithm 1
    (the official code also tests ``g_i^PC`` against ``g_i`` itself). A zero ``g_j`` is
    skipped (nothing to project onto).

    Args:
        n_tasks: number of tasks.
        seed: seed of the generator drawing the task orders.
    """

    def __init__(self, n_tasks: int, seed: int = 0):
        super().__init__(n_tasks, seed)

    def combine(self, grads: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        g = grads.detach().to(torch.float64)
        t = g.shape[0]
        gram = g @ g.T
        coef = torch.eye(t, dtype=torch.float64, device=g.device)  # row i: g_i^PC = coef[i] @ g
        for i in range(t):
            # One fresh random order of the other tasks per task i (as in the paper).
            for j in torch.randperm(t, generator=self.generator, device="cpu").tolist():
                if j == i or gram[j, j] <= 0:
                    continue
                dot = coef[i] @ gram[:, j]  # g_i^PC . g_j
                if dot < 0:
                    coef[i, j] -= dot / gram[j, j]
        w = coef.sum(0)
        combined = w @ g
        w = w.to(grads.dtype)
        self.last_weights = w
        return combined.to(grads.dtype), w
