"""Gradient Vaccine: pull each task pair's cosine up to its running target."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting


@register_weighting("gradvac")
class GradVac(Weighting):
    """Gradient Vaccine (Wang et al., "Gradient Vaccine: Investigating and Improving
    Multi-task Optimization in Massively Multilingual Models", ICLR 2021, Algorithm 1).

    For each task ``i`` (``g_i^PT = g_i``) and every other task ``j`` in a random order,
    with ``phi = cos(g_i^PT, g_j)`` and the running target ``phi_hat_ij``: if
    ``phi < phi_hat_ij``,

        ``g_i^PT <- g_i^PT + g_j * ||g_i^PT|| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2))
        / (||g_j|| sqrt(1 - phi_hat^2))``,

    after which ``cos(g_i^PT, g_j) = phi_hat_ij``. Then (for every pair, adjusted or not)
    ``phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi`` with the ``phi`` measured before the
    adjustment. The targets start at 0 (the first steps act like PCGrad). The update is
    ``sum_i g_i^PT``.

    Each ``g_i^PT`` is a linear combination of the raw gradients; its coefficients are
    tracked exactly (dot products from the float64 Gram matrix) and ``w = sum_i c_i`` is
    returned, ``combined = w @ grads``. ``phi_hat`` (``[T, T]``, float64) is the state.

    Choices: ``beta = 1e-2``, our reading of the paper; LibMTL and torchjd default to
    0.5 (``gradvac: {beta: 0.5}`` matches them). Every pair's target moves, as in the
    paper's Algorithm 1 and torchjd; some LibMTL versions move a target only when the
    pair was adjusted, so their targets can only fall. The paper applies the rule per layer or
    parameter group; here it acts on the ``[T, D]`` gradients it is given (one group).
    The order is drawn from the object's generator, not Python's global ``random``
    (LibMTL), so runs are reproducible. Pairs with a zero gradient are skipped (no cosine)
    and leave their target unchanged; a target with ``1 - phi_hat^2 < 1e-12`` (parallel
    target, infinite coefficient) is not enforced.

    Args:
        n_tasks: number of tasks.
        seed: seed of the generator drawing the task orders.
        beta: EMA rate of the cosine targets.
    """

    def __init__(self, n_tasks: int, seed: int = 0, beta: float = 1e-2):
        super().__init__(n_tasks, seed)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"gradvac: beta must be in [0, 1], got {beta}")
        self.beta = beta
        self.phi_hat = torch.zeros(n_tasks, n_tasks, dtype=torch.float64)

    def combine(self, grads: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        g = grads.detach().to(torch.float64)
        t = g.shape[0]
        gram = (g @ g.T).cpu()
        coef = torch.eye(t, dtype=torch.float64, device=g.device)  # row i: g_i^PT = coef[i] @ g
        for i in range(t):
            for j in torch.randperm(t, generator=self.generator, device="cpu").tolist():
                if j == i:
                    continue
                # ||g_i^PT||^2 = c_i G c_i^T; clamp rounding below zero.
                norm_i = max(float(coef[i] @ gram @ coef[i]), 0.0) ** 0.5
                norm_j = float(gram[j, j]) ** 0.5
                if norm_i == 0.0 or norm_j == 0.0:
                    continue  # no cosine with a zero vector: skip, target unchanged
                phi = min(1.0, max(-1.0, float(coef[i] @ gram[:, j]) / (norm_i * norm_j)))
                target = float(self.phi_hat[i, j])
                # Only pairs below their target are pulled up (phi >= phi_hat is left alone);
                # a target of +-1 would need an infinite coefficient.
                if phi < target and 1.0 - target * target >= 1e-12:
                    s_hat = math.sqrt(1.0 - target * target)
                    s_phi = math.sqrt(1.0 - phi * phi)
                    coef[i, j] += norm_i * (target * s_phi - phi * s_hat) / (norm_j * s_hat)
                self.phi_hat[i, j] = (1.0 - self.beta) * target + self.beta * phi
        w = coef.to(g.device).sum(0)
        combined = w @ g
        w = w.to(grads.dtype)
        self.last_weights = w
        return combined.to(grads.dtype), w
