"""Smooth Tchebycheff scalarization (Lin et al., ICML 2024)."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting


@register_weighting("stch")
class SmoothTchebycheff(Weighting):
    """Smooth (log-sum-exp) version of the Tchebycheff scalarization ``max_t (L_t - z_t)``.

    Lin et al., "Smooth Tchebycheff Scalarization for Multi-Objective Optimization",
    ICML 2024, eq. (8) with preference ``lambda = 1``::

        total = mu * log sum_t exp((L_t - z_t) / mu),     w_t = softmax((L - z) / mu)_t

    ``z`` is the ideal point. As ``mu -> 0`` the weights concentrate on the worst task
    (``total -> max_t (L_t - z_t)``); as ``mu`` grows they tend to ``1/T`` (mean).
    The weights sum to 1.

    Args:
        n_tasks: number of tasks ``T``.
        seed: seed of the (unused) generator.
        mu: smoothing parameter (LibMTL / official STCH_MTL default: 1.0).
        ideal: ``"zero"`` (``z = 0``, the ideal point of non-negative losses, default) or
            ``"running_min"`` (``z_t`` = smallest loss of task ``t`` seen so far, an
            estimate of the ideal point when losses do not approach 0).
    """

    requires_grads = False

    def __init__(self, n_tasks: int, seed: int = 0, mu: float = 1.0, ideal: str = "zero"):
        super().__init__(n_tasks, seed)
        if mu <= 0:
            raise ValueError(f"stch: mu must be positive, got {mu}")
        if ideal not in ("zero", "running_min"):
            raise ValueError(f"stch: ideal must be 'zero' or 'running_min', got {ideal!r}")
        self.mu = mu
        self.ideal = ideal
        self.ideal_point = torch.zeros(n_tasks, dtype=torch.float64)
        self._seen = False

    def weights(self, losses: Tensor) -> Tensor:
        loss64 = losses.detach().to(torch.float64)
        if self.ideal == "running_min":
            self.ideal_point = loss64.clone() if not self._seen else torch.minimum(self.ideal_point, loss64)
            self._seen = True
        # softmax subtracts the max internally: stable for any mu.
        w = torch.softmax((loss64 - self.ideal_point) / self.mu, dim=0)
        self.last_weights = w.to(losses.dtype)
        return self.last_weights

    def total(self, losses: Tensor) -> Tensor:
        """The scalarized objective ``mu * logsumexp((L - z) / mu)`` (differentiable)."""
        z = self.ideal_point.to(losses.dtype)
        return self.mu * torch.logsumexp((losses - z) / self.mu, dim=0)
