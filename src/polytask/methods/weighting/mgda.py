"""MGDA: the min-norm point of the convex hull of the task gradients."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting

_NORMALIZATIONS = ("none", "l2", "loss", "loss+")


def min_norm_simplex(gram: Tensor | np.ndarray, max_iter: int = 2000, tol: float = 1e-12) -> Tensor:
    """Weights ``w`` on the simplex minimising ``w^T G w`` (the min-norm point).

    Two tasks use the exact closed form. More tasks use Wolfe's min-norm-point algorithm
    (Wolfe 1976, "Finding the nearest point in a polytope") on the ``T x T`` Gram matrix
    in numpy float64: an active-set method that keeps an affinely independent support
    ("corral"), solves the affine min-norm problem ``G_SS w_S = lambda 1, sum w_S = 1``
    on it exactly, and adds the vertex most opposed to the current point until no vertex
    improves it. It terminates after finitely many steps with the exact solution: exact
    vertices (weights exactly 1/0) and exact faces, not ``1 - 1e-3``. (It replaces an
    iterative FISTA solver that needed up to thousands of tiny tensor operations.)

    Args:
        gram: Gram matrix ``[T, T]`` (float64; any positive scale).
        max_iter: limit on Wolfe's major iterations (``T > 2`` only; a few times ``T``
            suffice in practice).
        tol: optimality tolerance, relative to the largest squared norm: stop when
            ``x.x - min_j g_j.x <= tol`` (``T > 2`` only).

    Returns:
        float64 weights ``[T]``, non-negative, summing to 1.
    """
    device = gram.device if isinstance(gram, Tensor) else None
    gm = gram.detach().cpu().numpy() if isinstance(gram, Tensor) else np.asarray(gram)
    gm = gm.astype(np.float64, copy=False)
    t = gm.shape[0]
    scale = float(gm.diagonal().max()) if t else 0.0
    if t == 1 or scale <= 0:
        # One task, or every gradient is zero: any point of the simplex is optimal.
        return torch.full((t,), 1.0 / t, dtype=torch.float64, device=device)
    # Scale invariance: the minimiser does not change when G is multiplied by a constant,
    # and working with entries of order 1 keeps the thresholds below meaningful.
    gm = gm / scale
    if t == 2:
        # Sener & Koltun, Algorithm 1: gamma = g2.(g2 - g1) / ||g1 - g2||^2, clipped.
        denom = gm[0, 0] + gm[1, 1] - 2 * gm[0, 1]
        if denom <= 1e-12:
            # g1 == g2 (up to rounding): every convex combination is the same vector.
            gamma = 0.5
        else:
            gamma = min(max((gm[1, 1] - gm[0, 1]) / denom, 0.0), 1.0)
        return torch.tensor([gamma, 1.0 - gamma], dtype=torch.float64, device=device)
    return torch.from_numpy(_wolfe(gm, max_iter, tol)).to(device)


def _affine_min_norm(gm: np.ndarray, support: list[int]) -> np.ndarray | None:
    """Coefficients of the min-norm point of the affine hull of ``support`` (None if singular)."""
    s = len(support)
    kkt = np.empty((s + 1, s + 1))
    kkt[:s, :s] = gm[np.ix_(support, support)]
    kkt[:s, s] = -1.0
    kkt[s, :s] = 1.0
    kkt[s, s] = 0.0
    rhs = np.zeros(s + 1)
    rhs[s] = 1.0
    try:
        sol = np.linalg.solve(kkt, rhs)
    except np.linalg.LinAlgError:
        sol = np.linalg.lstsq(kkt, rhs, rcond=1e-13)[0]
    a = sol[:s]
    if not np.isfinite(a).all():
        return None
    return a


def _wolfe(gm: np.ndarray, max_iter: int, tol: float) -> np.ndarray:
    """Wolfe's min-norm point on the simplex, ``gm`` the Gram matrix scaled to max diag 1."""
    t = gm.shape[0]
    j0 = int(np.argmin(gm.diagonal()))
    support = [j0]
    lam = np.array([1.0])  # coefficients of the support points
    for _ in range(max(max_iter, 1)):
        gx = gm[:, support] @ lam  # g_j . x for every j
        xx = float(lam @ gx[support])
        j = int(np.argmin(gx))
        # Optimality (Wolfe's criterion): no vertex lies strictly on the origin's side of
        # the hyperplane through x orthogonal to x.
        if xx - gx[j] <= tol or j in support:
            break
        support.append(j)
        lam = np.append(lam, 0.0)
        # Minor cycle: move towards the affine min-norm point of the support, dropping the
        # vertices whose coefficient reaches 0, until that point is in the relative interior.
        while True:
            a = _affine_min_norm(gm, support)
            if a is None:
                break
            if (a > 1e-15).all():
                lam = a
                break
            neg = a <= 1e-15
            theta = float(np.min(lam[neg] / (lam[neg] - a[neg])))
            lam = lam + theta * (a - lam)
            keep = lam > 1e-15
            keep[np.argmin(np.where(neg, lam, np.inf))] = False  # drop at least one vertex
            support = [i for i, k in zip(support, keep) if k]
            lam = lam[keep]
            lam = lam / lam.sum()
    w = np.zeros(t)
    w[support] = np.clip(lam, 0.0, None)
    return w / w.sum()


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
    (vertices are exactly 1/0); more tasks use :func:`min_norm_simplex` (Wolfe's exact
    active-set algorithm on the ``T x T`` Gram matrix).

    Args:
        n_tasks: number of tasks.
        seed: seed of the (unused) generator.
        normalization: one of ``"none"``, ``"l2"``, ``"loss"``, ``"loss+"``.
        max_iter: limit on the solver's major iterations for ``T > 2``.
        tol: solver optimality tolerance for ``T > 2`` (relative to the largest squared norm).
    """

    def __init__(self, n_tasks: int, seed: int = 0, normalization: str = "none", max_iter: int = 2000, tol: float = 1e-12):
        super().__init__(n_tasks, seed)
        if normalization not in _NORMALIZATIONS:
            raise ValueError(f"mgda: normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
        self.normalization = normalization
        self.max_iter = max_iter
        self.tol = tol

    def combine(self, grads: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        # One float64 copy and one Gram matrix; everything else is on the T x T matrix
        # (normalising row t by 1/c_t is G -> diag(1/c) G diag(1/c), no full-size copy).
        g = grads.detach().to(torch.float64)
        gram = g @ g.T
        norms = gram.diagonal().clamp_min(0.0).sqrt()
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
        gram_norm = gram * inv[:, None] * inv[None, :]
        # min_norm_simplex divides by the largest diagonal entry: entries stay O(1)
        # whatever the gradient scale (the minimiser is scale-invariant).
        gamma = min_norm_simplex(gram_norm, self.max_iter, self.tol)
        combined = gamma.to(g.device) @ g
        w = gamma.to(grads.dtype)
        self.last_weights = w
        return combined.to(grads.dtype), w


@register_weighting("mgda-ub")
class MGDAUB(MGDA):
    """MGDA-UB (Sener & Koltun 2018, Section 3.3): MGDA on gradients of the representation.

    With shared layers ``Z = f(x; theta)`` read by every head, ``grad_theta L_t =
    J^T grad_Z L_t`` and ``|| sum_t a_t grad_theta L_t || <= ||J|| * || sum_t a_t grad_Z L_t ||``:
    minimising the upper bound needs only the gradients with respect to ``Z`` (one
    backward through the heads per task, none through the encoder), then one backward
    of ``sum_t a_t L_t`` through the encoder. ``combine`` is MGDA's; the engine feeds it
    gradients of the representation on one batch shared by every task, which needs tasks
    on the same inputs and one representation (architecture ``hard``).
    """

    representation_only = True
