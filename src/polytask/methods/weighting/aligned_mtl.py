"""Aligned-MTL: independent component alignment (Senushkin et al., CVPR 2023)."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting, task_vector

_SCALE_MODES = ("min", "median", "rmse")


def alignment_matrix(gram: Tensor, scale_mode: str = "min", rank_tol: float | None = None) -> Tensor:
    """``B = s V Lambda^(-1/2) V^T`` over the non-zero eigenvalues of ``M = G G^T = V Lambda V^T``.

    The aligned gradients ``G^T B`` have Gram matrix ``B M B = s^2 V_r V_r^T``: on the span
    of the gradients they are orthogonal with equal norms ``s`` (condition number 1).

    Args:
        gram: ``[T, T]`` Gram matrix (float64).
        scale_mode: ``s = sqrt(lambda_min)`` ("min", paper default), ``sqrt(median lambda)``
            ("median") or ``sqrt(mean lambda)`` ("rmse"), over the non-zero eigenvalues.
        rank_tol: eigenvalues ``<= rank_tol * lambda_max`` count as zero (default
            ``T * eps(float32)``, as the official code's ``torch.finfo().eps``).
    """
    t = gram.shape[0]
    lam, vec = torch.linalg.eigh(gram)
    lmax = float(lam.max()) if t else 0.0
    if lmax <= 0:
        return torch.zeros_like(gram)
    tol = (t * torch.finfo(torch.float32).eps if rank_tol is None else rank_tol) * lmax
    keep = lam > tol
    lam, vec = lam[keep], vec[:, keep]
    if scale_mode == "min":
        s2 = lam.min()
    elif scale_mode == "median":
        s2 = lam.median()
    else:
        s2 = lam.mean()
    return s2.sqrt() * (vec * lam.rsqrt()) @ vec.T


@register_weighting("aligned-mtl")
class AlignedMTL(Weighting):
    """Aligned-MTL (Senushkin et al., "Independent Component Alignment for Multi-Task
    Learning", CVPR 2023).

    With ``M = G G^T = V Lambda V^T`` (non-zero eigenvalues only), the task gradients are
    replaced by the aligned ones ``G_hat^T = G^T B``, ``B = sqrt(lambda_min) V Lambda^(-1/2)
    V^T``: the closest (Procrustes) system whose singular values all equal
    ``sqrt(lambda_min)``, so its condition number is 1. The update is the pre-weighted sum
    ``d = G_hat^T w_pre = G^T B w_pre`` (official code and LibMTL: ``w_pre = 1``, a sum
    as in equal weighting); the effective weights on the raw gradients are ``B w_pre``.

    Rank-deficient ``G`` (identical or zero gradients) is handled by keeping only the
    eigenvalues above ``rank_tol * lambda_max`` (the pseudo-inverse square root); all-zero
    gradients give a zero update.

    Args:
        n_tasks: number of tasks.
        seed: seed of the (unused) generator.
        task_weights: pre-defined task weights ``w_pre`` ``[T]`` (default all ones).
        scale_mode: "min" (default), "median" or "rmse", see :func:`alignment_matrix`.
        rank_tol: relative eigenvalue cut-off (default ``T * eps(float32)``).
    """

    def __init__(self, n_tasks: int, seed: int = 0, task_weights: list[float] | Tensor | None = None,
                 scale_mode: str = "min", rank_tol: float | None = None):
        super().__init__(n_tasks, seed)
        if scale_mode not in _SCALE_MODES:
            raise ValueError(f"aligned-mtl: scale_mode must be one of {_SCALE_MODES}, got {scale_mode!r}")
        self.task_weights = task_vector(task_weights, n_tasks, "aligned-mtl", "task_weights")
        self.scale_mode = scale_mode
        self.rank_tol = rank_tol

    def combine(self, grads: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        g = grads.detach().to(torch.float64)
        t = g.shape[0]
        pre = self.task_weights if self.task_weights is not None else torch.ones(t, dtype=torch.float64, device=g.device)
        # One Gram matrix of the float64 gradients; normalising by the largest row norm is
        # then done on the T x T matrix (no second full-size copy).
        gram = g @ g.T
        top2 = float(gram.diagonal().max()) if t else 0.0
        if top2 > 0:
            # B scales like 1 (s / sqrt(lambda)): compute it on the normalised Gram matrix.
            b = alignment_matrix(gram / top2, self.scale_mode, self.rank_tol)
        else:
            b = torch.zeros(t, t, dtype=torch.float64, device=g.device)
        w = b @ pre.to(b.device)
        combined = w @ g
        w_out = w.to(grads.dtype)
        self.last_weights = w_out
        return combined.to(grads.dtype), w_out
