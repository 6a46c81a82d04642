"""IMTL-G: the combination whose projections onto every task direction are equal."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting


@register_weighting("imtl")
class IMTL(Weighting):
    """Impartial MTL, gradient part (Liu et al., "Towards Impartial Multi-task Learning",
    ICLR 2021, IMTL-G).

    With unit gradients ``u_t = g_t / ||g_t||``, ``D = [g_1 - g_t]_{t=2..T}`` and
    ``U = [u_1 - u_t]_{t=2..T}`` (rows), the closed form is

        ``alpha_{2..T} = g_1 U^T (D U^T)^{-1}``,  ``alpha_1 = 1 - sum_{t>=2} alpha_t``,
        ``combined = sum_t alpha_t g_t``,  ``w = alpha``,

    so that ``combined . u_t`` is the same for every task (``U combined = 0``).

    Degenerate cases: ``D U^T`` is singular when gradients are parallel or identical (the
    reference implementations call ``inverse`` and raise). Here the inverse is the
    Moore-Penrose pseudo-inverse, dropping singular values below
    ``rcond * max(1, sigma_max)``. The gradients are first divided by the largest norm (the
    weights are invariant to a common scale), so entries of ``D`` and ``U`` are at most 2
    and the cutoff is effectively absolute: gradients within an angle of about ``rcond``
    count as parallel. This is the minimum-norm least-squares ``alpha``: for parallel
    gradients every ``alpha`` with ``sum alpha = 1`` satisfies the condition and the
    pseudo-inverse picks ``alpha = e_1``. A zero gradient has no direction: its ``u_t`` is
    taken as 0. Everything is computed in float64.

    Args:
        n_tasks: number of tasks.
        seed: seed of the (unused) generator.
        rcond: singular-value cutoff of the pseudo-inverse (see above).
    """

    def __init__(self, n_tasks: int, seed: int = 0, rcond: float = 1e-10):
        super().__init__(n_tasks, seed)
        self.rcond = rcond

    def combine(self, grads: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        g = grads.detach().to(torch.float64)
        t = g.shape[0]
        norms = g.norm(dim=1)
        top = norms.max()
        if t == 1 or top == 0:
            alpha = torch.zeros(t, dtype=torch.float64, device=g.device)
            alpha[0] = 1.0
        else:
            gs = g / top
            ns = norms / top
            u = gs / torch.where(ns > 0, ns, torch.ones_like(ns))[:, None]  # zero rows stay zero
            d = gs[:1] - gs[1:]
            uu = u[:1] - u[1:]
            rhs = gs[0] @ uu.T  # [T-1]
            alpha_rest = rhs @ torch.linalg.pinv(d @ uu.T, atol=self.rcond, rtol=self.rcond)
            alpha = torch.cat([(1.0 - alpha_rest.sum()).reshape(1), alpha_rest])
        combined = alpha @ g
        w = alpha.to(grads.dtype)
        self.last_weights = w
        return combined.to(grads.dtype), w
