"""UPGrad: unconflicting projection of gradients (Quinton & Rey, 2024; torchjd's UPGrad)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import nnls
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting, task_vector


def project_weights(gram: np.ndarray, reg_eps: float = 0.0) -> np.ndarray:
    """Rows ``W[i]`` solving ``min_w w^T M w`` s.t. ``w >= e_i`` (``M = G G^T``, float64).

    ``W[i] @ G`` is the projection of ``g_i`` onto the dual cone ``{x : G x >= 0}``.
    With ``w = e_i + v`` and ``M = R^T R`` (``R = Lambda^(1/2) V^T`` from ``eigh``), this is
    the non-negative least-squares problem ``min_{v >= 0} ||R v + R e_i||^2``, solved
    exactly by the Lawson-Hanson active-set method (``scipy.optimize.nnls``).

    Args:
        gram: ``[T, T]`` Gram matrix.
        reg_eps: optional ridge ``M + reg_eps I`` (torchjd's default is 1e-4; 0 = exact).
    """
    t = gram.shape[0]
    m = gram + reg_eps * np.eye(t)
    lam, vec = np.linalg.eigh(m)
    r = np.sqrt(np.clip(lam, 0.0, None))[:, None] * vec.T
    out = np.eye(t)
    for i in range(t):
        # Dual feasibility at v = 0 (M e_i >= 0): g_i conflicts with no task, keep it.
        if (m[:, i] >= 0).all():
            continue
        v, _ = nnls(r, -r[:, i], maxiter=50 * t)
        out[i] += v
    return out


@register_weighting("upgrad")
class UPGrad(Weighting):
    """UPGrad (Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024).

    Each task gradient ``g_i`` is projected onto the dual cone of the rows of ``G``,
    ``{x : G x >= 0}`` (the directions that conflict with no task), and the projections
    are averaged with the preference weights ``p`` (default uniform ``1/T``):

        ``d = sum_i p_i pi(g_i)``,  ``pi(g_i) = G^T w^(i)``,
        ``w^(i) = argmin_{w >= e_i} w^T G G^T w``.

    Effective weights ``sum_i p_i w^(i)`` (each ``w^(i) >= e_i``). Properties: ``G d >= 0``
    (non-conflicting); when no pair of gradients conflicts (``G G^T >= 0`` entrywise)
    every projection is ``g_i`` itself and ``d`` is the mean gradient.

    Each QP is solved exactly (NNLS active set in the ``T x T`` Gram space). torchjd
    normalises the Gram matrix and adds ``reg_eps = 1e-4`` to its diagonal, which moves
    the answer up to 1% on ill-conditioned Gram matrices; here ``reg_eps`` defaults to 0
    and, when set, is added to the Gram matrix divided by its trace (torchjd's scale).

    Args:
        n_tasks: number of tasks.
        seed: seed of the (unused) generator.
        pref_vector: preference weights ``[T]`` (default uniform ``1/T``).
        reg_eps: diagonal regulariser on the trace-normalised Gram matrix (default 0:
            exact).
    """

    def __init__(self, n_tasks: int, seed: int = 0, pref_vector: list[float] | Tensor | None = None,
                 reg_eps: float = 0.0):
        super().__init__(n_tasks, seed)
        if reg_eps < 0:
            raise ValueError(f"upgrad: reg_eps must be non-negative, got {reg_eps}")
        self.pref_vector = task_vector(pref_vector, n_tasks, "upgrad", "pref_vector")
        self.reg_eps = reg_eps

    def combine(self, grads: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        g = grads.detach().to(torch.float64)
        t = g.shape[0]
        pref = (self.pref_vector if self.pref_vector is not None
                else torch.full((t,), 1.0 / t, dtype=torch.float64, device="cpu")).cpu().numpy()
        trace = float((g * g).sum())
        if trace > 0:
            gs = g / trace**0.5  # the projection weights are scale-invariant; keep entries O(1)
            wmat = project_weights((gs @ gs.T).cpu().numpy(), self.reg_eps)
        else:
            wmat = np.eye(t)
        w = torch.from_numpy(pref @ wmat).to(g.device)
        combined = w @ g
        w_out = w.to(grads.dtype)
        self.last_weights = w_out
        return combined.to(grads.dtype), w_out
