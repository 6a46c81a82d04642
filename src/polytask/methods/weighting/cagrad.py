"""CAGrad: Conflict-Averse Gradient descent (Liu et al., NeurIPS 2021)."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting

_RESCALES = (0, 1, 2)


def cagrad_dual_two_tasks(gram: np.ndarray, k: float) -> float:
    """Exact minimiser ``x`` of the CAGrad dual for two tasks, ``w = (x, 1 - x)``.

    ``F(x) = g0 . g_w + k ||g_w||`` with ``g_w = g2 + x d``, ``d = g1 - g2``. Writing
    ``||g_w||^2 = a (x - x0)^2 + h`` (``a = ||d||^2``, ``x0 = -g2.d / a``, ``h >= 0`` the
    squared distance from 0 to the line), ``F'(x) = beta + k a u / sqrt(a u^2 + h)``
    with ``u = x - x0``, ``beta = g0 . d``. ``F`` is convex, so the stationary point
    ``u = -sign(beta) |beta| sqrt(h / (a (k^2 a - beta^2)))`` (which exists iff
    ``|beta| < k sqrt(a)``), clipped to ``[0, 1]``, is the minimiser on the segment.

    Args:
        gram: ``[2, 2]`` Gram matrix (float64).
        k: ``c * ||g0||``.
    """
    g11, g12, g22 = gram[0, 0], gram[0, 1], gram[1, 1]
    a = g11 + g22 - 2.0 * g12
    # g0 . d with g0 = (g1 + g2) / 2.
    beta = 0.5 * (g11 - g22)
    if a <= 1e-14 * max(g11, g22, 1e-300):
        return 0.5  # g1 == g2: every w gives the same g_w.
    g2d = g12 - g22
    x0 = -g2d / a
    h = max(g22 - g2d * g2d / a, 0.0)
    if k * k * a - beta * beta <= 0.0:
        # F is monotone on the whole line: the minimiser is an end of the segment.
        return 1.0 if beta < 0 else 0.0
    u = -math.copysign(1.0, beta) * abs(beta) * math.sqrt(h / (a * (k * k * a - beta * beta)))
    return float(min(max(x0 + u, 0.0), 1.0))


def cagrad_dual(gram: np.ndarray, k: float, tol: float = 1e-15, max_iter: int = 1000) -> np.ndarray:
    """Simplex weights ``w`` minimising ``w^T (M 1/T) + k sqrt(w^T M w)`` (CAGrad's dual).

    Two tasks: :func:`cagrad_dual_two_tasks` (exact). More: an active-set Newton method
    on the ``T x T`` problem (:func:`_cagrad_dual_newton`: Newton steps on the face of
    the simplex spanned by the current support, dropping a vertex when a step reaches the
    boundary, adding vertices with negative reduced gradient when the face is optimal),
    which ends with the KKT conditions met to rounding in a few dozen
    ``T x T`` solves. When it does not certify optimality (e.g. ``||g_w|| -> 0``, where
    the objective is not smooth) SLSQP with the analytic gradient
    ``M 1/T + k M w / sqrt(w^T M w)`` and tight tolerance ``tol`` is used instead (the
    reference uses finite differences and default tolerances, accurate to about 1e-4).
    """
    t = gram.shape[0]
    if t == 1:
        return np.ones(1)
    if t == 2:
        x = cagrad_dual_two_tasks(gram, k)
        return np.array([x, 1.0 - x])
    b = gram.mean(axis=1)  # M g0-coefficients: (G g0)_i = (M 1/T)_i

    def obj(w):
        return float(w @ b + k * math.sqrt(max(w @ gram @ w, 1e-30)))

    def jac(w):
        mw = gram @ w
        return b + k * mw / math.sqrt(max(w @ mw, 1e-30))

    w0 = np.full(t, 1.0 / t)
    w = _cagrad_dual_newton(gram, b, k, max_iter)
    if w is not None and obj(w) <= obj(w0):
        return w
    res = minimize(obj, w0, jac=jac, method="SLSQP", bounds=[(0.0, 1.0)] * t,
                   constraints={"type": "eq", "fun": lambda w: w.sum() - 1.0, "jac": lambda w: np.ones_like(w)},
                   options={"ftol": tol, "maxiter": max_iter})
    w = np.clip(res.x, 0.0, None)
    w = w / w.sum()
    # Never worse than the start (guards against an SLSQP failure).
    return w if obj(w) <= obj(w0) else w0


def _cagrad_dual_newton(gram: np.ndarray, b: np.ndarray, k: float, max_iter: int) -> np.ndarray | None:
    """Active-set Newton for :func:`cagrad_dual` (``T > 2``); ``None`` when not certified."""
    t = gram.shape[0]
    scale = max(float(np.abs(gram).max()), 1e-300)
    kkt_tol = 1e-11 * (float(np.abs(b).max()) + k * math.sqrt(scale))
    # Start at the best vertex and grow the support: the optimal support is usually small,
    # so this takes fewer Newton steps than shrinking it from the uniform start.
    j = int(np.argmin(b + k * np.sqrt(np.clip(gram.diagonal(), 0.0, None))))
    w = np.zeros(t)
    w[j] = 1.0
    support = w > 0
    first_add = True

    def parts(w):
        mw = gram @ w
        r2 = float(w @ mw)
        return mw, r2

    # Each vertex enters or leaves the support a few times at most: a short cap makes a
    # non-converging case (near-singular Gram, ||g_w|| -> 0) fall back to SLSQP quickly.
    for _ in range(min(max_iter, 30 + 5 * t)):
        mw, r2 = parts(w)
        if r2 <= 1e-20 * scale:
            return None  # ||g_w|| ~ 0: the objective is not smooth there
        r = math.sqrt(r2)
        grad = b + k * mw / r
        idx = np.flatnonzero(support)
        s = idx.size
        # Newton step on the face: [H 1; 1^T 0] [d; -mu] = [-grad; 0].
        h = k * (gram[np.ix_(idx, idx)] / r - np.outer(mw[idx], mw[idx]) / (r2 * r))
        kkt = np.zeros((s + 1, s + 1))
        kkt[:s, :s] = h + 1e-14 * scale * np.eye(s)  # H w = 0: a tiny ridge keeps it solvable
        kkt[:s, s] = 1.0
        kkt[s, :s] = 1.0
        rhs = np.concatenate([-grad[idx], [0.0]])
        try:
            sol = np.linalg.solve(kkt, rhs)
        except np.linalg.LinAlgError:
            return None
        d = sol[:s]
        if not np.isfinite(d).all():
            return None
        mu = float(grad[idx] @ w[idx]) if s else 0.0  # multiplier estimate (sum w = 1)
        face_ok = float(np.abs(grad[idx] - mu).max()) <= kkt_tol
        if face_ok:
            # Optimal on the face: add the vertices whose reduced gradient is negative. The
            # first time all of them at once (far fewer faces to visit when the optimal
            # support is large, e.g. near-orthogonal gradients), afterwards only the most
            # negative one (adding all each time can cycle).
            add = ~support & (grad < mu - kkt_tol)
            if not add.any():
                return w
            if first_add:
                support = support | add
                first_add = False
            else:
                support[int(np.argmin(np.where(add, grad, np.inf)))] = True
            continue
        # Step to the boundary at most; drop the vertex that reaches it.
        neg = d < 0
        alpha_max = float(np.min(-w[idx][neg] / d[neg])) if neg.any() else np.inf
        alpha = min(1.0, alpha_max)
        f0 = float(w @ b) + k * r
        while True:
            cand = w.copy()
            cand[idx] = w[idx] + alpha * d
            cand = np.clip(cand, 0.0, None)
            mc = gram @ cand
            fc = float(cand @ b) + k * math.sqrt(max(float(cand @ mc), 0.0))
            if fc <= f0 + 1e-4 * alpha * float(grad[idx] @ d):
                break
            alpha *= 0.5
            if alpha < 1e-12:
                return None  # no descent along the Newton direction: not certified
        if alpha == alpha_max:
            # (alpha_max may be 0: a just-added vertex the step would make negative.)
            cand[idx[neg][int(np.argmin(-w[idx][neg] / d[neg]))]] = 0.0
        support = cand > 0
        w = cand / cand.sum()
    return None


@register_weighting("cagrad")
class CAGrad(Weighting):
    """Conflict-Averse Gradient descent (Liu et al., "Conflict-Averse Gradient Descent for
    Multi-task Learning", NeurIPS 2021).

    With ``g0 = (1/T) sum_t g_t`` the update maximises the worst task improvement within a
    ball around ``g0``: ``max_d min_i g_i . d`` s.t. ``||d - g0|| <= c ||g0||``. Its dual
    (paper, Eq. 4) is

        ``w* = argmin_{w in simplex} g_w . g0 + c ||g0|| ||g_w||``,  ``g_w = sum_t w_t g_t``,

    and ``d = g0 + (c ||g0|| / ||g_w||) g_w``. ``c = 0`` gives ``g0``.

    ``rescale`` as in the official code: 0: ``d``; 1 (official default): ``d / (1 + c^2)``;
    2: ``d / (1 + c)``. Effective weights: ``w_t = (1/T + lambda w*_t) / r`` with
    ``lambda = c ||g0|| / ||g_w||`` and ``r`` the rescale divisor (they sum to about 1,
    like the mean gradient, not to ``T``).

    Numerics: float64 on the Gram matrix divided by the largest squared gradient norm
    (the dual minimiser is scale-invariant). Two tasks: exact closed form; more tasks: an
    active-set Newton method on the ``T x T`` dual, with SLSQP as the fallback
    (:func:`cagrad_dual`). When ``||g_w||`` is zero (0 in
    the convex hull of the gradients, e.g. ``g_2 = -g_1``) the correction is undefined;
    we then return ``g0`` (``lambda = 0``) instead of the reference's ``1e-8``-guarded
    blow-up.

    Args:
        n_tasks: number of tasks.
        seed: seed of the (unused) generator.
        c: conflict-aversion radius ``c >= 0`` (default 0.5).
        rescale: 0, 1 (default) or 2, see above.
    """

    def __init__(self, n_tasks: int, seed: int = 0, c: float = 0.5, rescale: int = 1):
        super().__init__(n_tasks, seed)
        if c < 0:
            raise ValueError(f"cagrad: c must be non-negative, got {c}")
        if rescale not in _RESCALES:
            raise ValueError(f"cagrad: rescale must be one of {_RESCALES}, got {rescale!r}")
        self.c = c
        self.rescale = rescale

    def combine(self, grads: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        g = grads.detach().to(torch.float64)
        t = g.shape[0]
        coef = torch.full((t,), 1.0 / t, dtype=torch.float64, device=g.device)
        # One Gram matrix of the float64 gradients; the scaling by the largest squared norm
        # is done on the T x T matrix (no second full-size copy).
        gram_raw = g @ g.T
        top2 = float(gram_raw.diagonal().max())
        if top2 > 0 and self.c > 0:
            # Entries O(1): the dual minimiser does not depend on the scale.
            gram = (gram_raw / top2).cpu().numpy()
            g0_norm = math.sqrt(max(float(gram.mean()), 0.0))  # ||g0||^2 = 1^T M 1 / T^2
            k = self.c * g0_norm
            if k > 0:
                w = cagrad_dual(gram, k)
                gw_norm = math.sqrt(max(float(w @ gram @ w), 0.0))
                if gw_norm > 1e-12:
                    coef = coef + (k / gw_norm) * torch.from_numpy(w).to(g.device)
        divisor = {0: 1.0, 1: 1.0 + self.c**2, 2: 1.0 + self.c}[self.rescale]
        coef = coef / divisor
        combined = coef @ g
        w_out = coef.to(grads.dtype)
        self.last_weights = w_out
        return combined.to(grads.dtype), w_out
