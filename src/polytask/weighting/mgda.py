"""MGDA: the min-norm point of the convex hull of the task gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.weighting.base import Weighting, register_weighting

_NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def min_norm_simplex(gram: Tensor, max_iter: int = 2000, tol: float = 1e-12) -> Tensor:
    """Weights ``w`` on the simplex minimising ``w^T G w`` (the min-norm point).

    Two tasks use the exact closed form. More tasks use accelerated projected gradient
    (FISTA, step ``1/L`` with ``L = 2 * lambda_max(G)``) for at most ``max_iter``
    iterations, stopping when ``||w_k - w_{k-1}||_inf < tol``, followed by an exact
    *polish*: on the support found, the KKT system ``G_SS w_S = lambda 1, sum w_S = 1``
    is solved by least squares and kept when it is feasible and not worse. This gives
    exact vertices (weights exactly 1/0) and exact faces, not ``1 - 1e-3``.

    Args:
        gram: Gram matrix ``[T, T]`` (float64; any positive scale).
        max_iter: FISTA iteration limit (``T > 2`` only).
        tol: FISTA stopping tolerance on the weight change (``T > 2`` only).

    Returns:
        float64 weights ``[T]``, non-negative, summing to 1.
    """
    t = gram.shape[0]
    gram = gram.to(torch.float64)
    scale = gram.diagonal().max()
    if t == 1 or scale <= 0:
        # One task, or every gradient is zero: any point of the simplex is optimal.
        return torch.full((t,), 1.0 / t, dtype=torch.float64, device=gram.device)
    # Scale invariance: the minimiser does not change when G is multiplied by a constant,
    # and working with entries of order 1 keeps the thresholds below meaningful.
    gram = gram / scale
    if t == 2:
        # Sener & Koltun, Algorithm 1: gamma = g2.(g2 - g1) / ||g1 - g2||^2, clipped.
        denom = gram[0, 0] + gram[1, 1] - 2 * gram[0, 1]
        if denom <= 1e-12:
            # g1 == g2 (up to rounding): every convex combination is the same vector.
            gamma = torch.tensor(0.5, dtype=torch.float64, device=gram.device)
        else:
            gamma = ((gram[1, 1] - gram[0, 1]) / denom).clamp(0.0, 1.0)
        return torch.stack([gamma, 1.0 - gamma])

    lip = 2.0 * torch.linalg.eigvalsh(gram).max().clamp_min(1e-300)
    w = torch.full((t,), 1.0 / t, dtype=torch.float64, device=gram.device)
    y, k = w.clone(), 1.0
    for _ in range(max_iter):
        w_new = _project_simplex(y - (2.0 * gram @ y) / lip)
        k_new = (1.0 + (1.0 + 4.0 * k * k) ** 0.5) / 2.0
        y = w_new + ((k - 1.0) / k_new) * (w_new - w)
        done = (w_new - w).abs().max() < tol
        w, k = w_new, k_new
        if done:
            break
    return _polish(gram, w)


def _project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection onto the probability simplex (sort-based, exact)."""
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0) - 1.0
    idx = torch.arange(1, v.numel() + 1, dtype=v.dtype, device=v.device)
    rho = int(torch.nonzero(u - css / idx > 0).max())
    theta = css[rho] / (rho + 1)
    return (v - theta).clamp_min(0.0)


def _polish(gram: Tensor, w: Tensor) -> Tensor:
    """Exact solution on the support of the iterative ``w`` when it checks out (KKT)."""
    support = w > 1e-9
    s = int(support.sum())
    g_ss = gram[support][:, support]
    # KKT on the support: G_SS w_S - lam 1 = 0, 1^T w_S = 1.
    kkt = torch.zeros(s + 1, s + 1, dtype=torch.float64, device=gram.device)
    kkt[:s, :s] = g_ss
    kkt[:s, s] = -1.0
    kkt[s, :s] = 1.0
    rhs = torch.zeros(s + 1, dtype=torch.float64, device=gram.device)
    rhs[s] = 1.0
    sol = torch.linalg.pinv(kkt, rtol=1e-12) @ rhs
    w_s = sol[:s]
    if not torch.isfinite(w_s).all() or (w_s < -1e-12).any() or abs(float(w_s.sum()) - 1.0) > 1e-9:
        return w
    cand = torch.zeros_like(w)
    cand[support] = w_s.clamp_min(0.0)
    cand = cand / cand.sum()
    if cand @ gram @ cand <= w @ gram @ w + 1e-15:
        return cand
    return w


@register_weighting("mgda")
class MGDA(Weighting):
    """Multiple-gradient descent (Sener & Koltun, "Multi-Task Learning as Multi-Objective
    Optimization", NeurIPS 2018).

    Finds ``gamma = argmin_{gamma in simplex} || sum_t gamma_t g~_t ||^2`` where
    ``g~_t = g_t / c_t`` are the (optionally) normalised task gradients, and returns

        ``combined = sum_t gamma_t g_t``   (the *raw* gradients), ``w = gamma``.

    With ``normalization="none"`` this is exactly the min-norm point of the convex hull of
    the gradients. With a normalisation, the weights are found on the normalised gradients
    and applied to the raw losses, as the original code does (``scale[t] = sol[t]``
    multiplies the raw loss ``loss_t``); LibMTL instead applies them to the normalised
    gradients, which changes the method. The returned weights are on the simplex (sum to
    1): there is no further rescaling of the update, so its scale differs from equal
    weighting's (which sums the gradients, weights summing to ``T``).

    Normalisations ``c_t``: ``"none"``: 1; ``"l2"``: ``||g_t||``; ``"loss"``: ``loss_t``;
    ``"loss+"``: ``loss_t * ||g_t||``. A task with ``c_t = 0`` (zero gradient or zero
    loss) gets ``g~_t = 0``: it is at a stationary point, so the min-norm point is that
    vertex and the update is zero.

    Numerics: the problem is solved on the float64 Gram matrix divided by its largest
    diagonal entry, so any gradient scale works (no failure at norms ``1e4`` or ``1e6``).
    Two tasks use the exact closed form ``gamma = clip(g2.(g2-g1)/||g1-g2||^2, 0, 1)``
    (vertices are exactly 1/0); more tasks use :func:`min_norm_simplex`.

    Args:
        n_tasks: number of tasks.
        seed: seed of the (unused) generator.
        normalization: one of ``"none"``, ``"l2"``, ``"loss"``, ``"loss+"``.
        max_iter: solver iteration limit for ``T > 2``.
        tol: solver tolerance for ``T > 2``.
    """

    def __init__(self, n_tasks: int, seed: int = 0, normalization: str = "none", max_iter: int = 2000, tol: float = 1e-12):
        super().__init__(n_tasks, seed)
        if normalization not in _NORMALIZATIONS:
            raise ValueError(f"mgda: normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
        self.normalization = normalization
        self.max_iter = max_iter
        self.tol = tol

    def combine(self, grads: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        g = grads.detach().to(torch.float64)
        norms = g.norm(dim=1)
        if self.normalization == "none":
            c = torch.ones_like(norms)
        else:
            c = norms.clone() if self.normalization == "l2" else torch.ones_like(norms)
            if self.normalization in ("loss", "loss+"):
                lo = self._losses(losses, grads).to(torch.float64)
                if (lo < 0).any():
                    raise ValueError("mgda: loss normalisation needs non-negative losses")
                c = c * lo
        # Zero normaliser -> zero normalised gradient (no division by zero).
        inv = torch.where(c > 0, 1.0 / torch.where(c > 0, c, torch.ones_like(c)), torch.zeros_like(c))
        g_norm = g * inv[:, None]
        # Divide by the largest row norm before forming the Gram matrix: entries stay O(1)
        # whatever the gradient scale (the minimiser is scale-invariant).
        top = g_norm.norm(dim=1).max()
        if top > 0:
            g_norm = g_norm / top
        gamma = min_norm_simplex(g_norm @ g_norm.T, self.max_iter, self.tol)
        combined = gamma @ g
        w = gamma.to(grads.dtype)
        self.last_weights = w
        return combined.to(grads.dtype), w
