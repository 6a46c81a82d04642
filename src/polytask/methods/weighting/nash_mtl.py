"""Nash-MTL: the Nash bargaining solution of the task gradients (Navon et al., ICML 2022).

Also home of :func:`solve_fair_weights`, the exact solver of the alpha-fair system
``(G G^T alpha)_i = alpha_i^(-1/a)`` that FairGrad (``fairgrad.py``) shares: with
``a = 1`` it is Nash-MTL's ``alpha_i (G G^T alpha)_i = 1``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting
from polytask.methods.weighting.mgda import min_norm_simplex

# ||min-norm point of conv(g_i)|| / max_i ||g_i|| below this: 0 is (numerically) in the
# convex hull, so no direction improves every task and the alpha-fair system has no
# positive solution (Gordan's alternative).
_STATIONARY_TOL = 1e-9


def _phi(x: np.ndarray, p: float) -> np.ndarray:
    """Utility whose derivative is ``x^(-p)`` (``log`` for ``p = 1``)."""
    if p == 1.0:
        return np.log(x)
    return x ** (1.0 - p) / (1.0 - p)


def _newton(m: np.ndarray, p: float, tol: float, max_iter: int) -> np.ndarray:
    """Minimise the strictly convex ``f(x) = x^T M x / 2 - sum_i phi(x_i)`` over ``x > 0``.

    Its stationarity condition ``M x = x^(-p)`` is the system we want. Damped Newton with a
    fraction-to-the-boundary rule keeps ``x > 0``; Armijo backtracking makes it global.
    """
    diag = np.clip(np.diag(m), 1e-300, None)
    # Exact answer when the gradients are orthogonal: M_ii x = x^(-p).
    x = diag ** (-1.0 / (1.0 + p))

    def f(v):
        return 0.5 * v @ m @ v - _phi(v, p).sum()

    for _ in range(max_iter):
        mx = m @ x
        if np.abs(x**p * mx - 1.0).max() < tol:
            break
        grad = mx - x ** (-p)
        hess = m + np.diag(p * x ** (-p - 1.0))
        try:
            dx = -np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            dx = -np.linalg.lstsq(hess, grad, rcond=None)[0]
        t = 1.0
        neg = dx < 0
        if neg.any():
            # Stay strictly inside the positive orthant.
            t = min(1.0, 0.99 * float(np.min(-x[neg] / dx[neg])))
        f0, slope = f(x), float(grad @ dx)
        for _ in range(60):
            x_new = x + t * dx
            if f(x_new) <= f0 + 1e-4 * t * slope + 1e-15 * abs(f0):
                break
            t *= 0.5
        if np.abs(x_new - x).max() <= 1e-16 * np.abs(x).max():
            break  # no progress left at float64 precision (near-stationary, ill-conditioned M)
        x = x_new
    return x


def solve_fair_weights(gram: Tensor, a: float = 1.0, tol: float = 1e-13,
                       max_iter: int = 500) -> tuple[Tensor, bool]:
    """Positive ``alpha`` with ``(M alpha)_i = alpha_i^(-1/a)``, ``M = G G^T``, solved exactly.

    ``a = 1`` is Nash-MTL's ``alpha_i (M alpha)_i = 1``. Tasks with a zero gradient are
    dropped (weight 0: they have nothing to contribute and make the system unsolvable).
    The remaining system has a positive solution iff some direction ``d`` has
    ``g_i . d > 0`` for every task (Gordan), i.e. iff the min-norm point of the convex
    hull is non-zero; otherwise (a Pareto-stationary point, e.g. ``g_2 = -g_1``) every
    weight is 0 and ``ok`` is False.

    The problem is solved on ``M / s^2`` (``s`` the largest gradient norm, so entries are
    O(1)) and mapped back with ``alpha = alpha' s^(-2a/(a+1))``, exact for this system.

    Args:
        gram: Gram matrix ``[T, T]``.
        a: fairness parameter ``a > 0``.
        tol: Newton stops when ``max_i |alpha_i^(1/a) (M alpha)_i - 1| < tol``.
        max_iter: Newton iteration limit.

    Returns:
        ``(alpha, ok)``: float64 weights ``[T]`` (0 for dropped tasks) and whether a
        positive solution was found for the non-zero tasks.
    """
    if a <= 0:
        raise ValueError(f"fairness parameter must be positive, got {a}")
    m_all = gram.detach().to(torch.float64).cpu().numpy()
    t = m_all.shape[0]
    alpha = np.zeros(t)
    diag = np.clip(np.diag(m_all), 0.0, None)
    top = diag.max(initial=0.0)
    keep = diag > top * 1e-24 if top > 0 else np.zeros(t, dtype=bool)
    if not keep.any():
        return torch.zeros(t, dtype=torch.float64), False
    scale2 = top
    m = m_all[np.ix_(keep, keep)] / scale2
    # Existence check (Gordan): 0 in conv(g_i) <=> no positive solution.
    gamma = min_norm_simplex(torch.from_numpy(m))
    if float(gamma @ torch.from_numpy(m) @ gamma) < _STATIONARY_TOL**2:
        return torch.zeros(t, dtype=torch.float64), False
    p = 1.0 / a
    x = _newton(m, p, tol, max_iter)
    alpha[keep] = x * scale2 ** (-a / (a + 1.0))
    res = np.abs(alpha[keep] ** p * (m_all[np.ix_(keep, keep)] @ alpha[keep]) - 1.0).max()
    # Near a Pareto-stationary point (0 almost in the hull) alpha is huge and M alpha is
    # formed with cancellation: the attainable residual degrades; say so when it does.
    if not np.isfinite(res) or res > 1e-6:
        warnings.warn(f"alpha-fair solve: residual {res:.2e} (ill-conditioned, nearly Pareto-stationary gradients)", RuntimeWarning,
                      stacklevel=2)
    return torch.from_numpy(alpha), True


class _FairSolveWeighting(Weighting):
    """Shared machinery of Nash-MTL and FairGrad: solve, reuse, optionally clip."""

    _a = 1.0

    def __init__(self, n_tasks: int, seed: int = 0, max_norm: float | None = None,
                 update_weights_every: int = 1):
        super().__init__(n_tasks, seed)
        if update_weights_every < 1:
            raise ValueError(f"update_weights_every must be >= 1, got {update_weights_every}")
        if max_norm is not None and max_norm <= 0:
            raise ValueError(f"max_norm must be positive or None, got {max_norm}")
        self.max_norm = max_norm
        self.update_weights_every = update_weights_every
        self._step = 0
        self._alpha: Tensor | None = None
        self.last_solve_ok = True

    def combine(self, grads: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        g = grads.detach().to(torch.float64)
        if self._alpha is None or self._alpha.shape[0] != g.shape[0] or self._step % self.update_weights_every == 0:
            alpha, ok = solve_fair_weights(g @ g.T, self._a)
            self.last_solve_ok = ok
            if not ok and (g.norm(dim=1) > 0).any():
                warnings.warn(f"{self.name}: 0 is in the convex hull of the task gradients (Pareto-stationary); "
                              "no positive solution, update is zero", RuntimeWarning, stacklevel=2)
            self._alpha = alpha
        self._step += 1
        alpha = self._alpha.to(g.device)
        combined = alpha @ g
        if self.max_norm is not None:
            norm = float(combined.norm())
            if norm > self.max_norm:
                # Clip the step and the weights together so that combined == w @ grads.
                alpha = alpha * (self.max_norm / norm)
                combined = alpha @ g
        w = alpha.to(grads.dtype)
        self.last_weights = w
        return combined.to(grads.dtype), w


@register_weighting("nash-mtl")
class NashMTL(_FairSolveWeighting):
    """Nash-MTL (Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022).

    The update is ``d = sum_i alpha_i g_i`` with ``alpha > 0`` solving

        ``alpha_i (G G^T alpha)_i = 1``   for every task ``i``

    (paper, Eq. 2/Alg. 1): the Nash bargaining solution, for which every task gets
    ``g_i . d = 1 / alpha_i > 0``. The effective weights are ``alpha``.

    The system is solved exactly (damped Newton on its convex potential, float64,
    residual ``< 1e-13`` typically), not by the official sequence of cvxpy convex
    programs: those report "unbounded" when some entry of ``G G^T 1`` is negative and the
    reference code then silently returns ``alpha = 1``.

    Differences from the official code, on purpose:

    * ``max_norm`` defaults to ``None`` (no clipping). The official default 1.0 clips
      nearly every step (``||d|| = sqrt(T)`` at the solution), silently fixing the step
      size. Clipping scales the weights as well.
    * The official code divides ``G G^T`` by its Frobenius norm before solving, which
      makes the update scale-free; we return the paper's ``alpha`` for the raw gradients.
    * Tasks with a zero gradient get weight 0. When 0 lies in the convex hull of the
      task gradients (e.g. ``g_2 = -g_1``) no positive solution exists: the update and
      weights are 0 and a ``RuntimeWarning`` is issued (``last_solve_ok`` is False).

    Args:
        n_tasks: number of tasks.
        seed: seed of the (unused) generator.
        max_norm: clip ``||d||`` to this value; ``None`` (default) for no clipping.
        update_weights_every: recompute ``alpha`` every this many calls, reusing the last
            ``alpha`` in between (paper's speed-up; default 1: every step).
    """


__all__ = ["NashMTL", "solve_fair_weights"]
