"""FairGrad: alpha-fair resource allocation among tasks (Ban & Ji, ICML 2024)."""

from __future__ import annotations

from polytask.methods.weighting.base import register_weighting
from polytask.methods.weighting.nash_mtl import _FairSolveWeighting


@register_weighting("fairgrad")
class FairGrad(_FairSolveWeighting):
    """FairGrad (Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024).

    The update ``d = sum_i w_i g_i`` maximises the alpha-fair utility
    ``sum_i (g_i . d)^(1-a) / (1-a)`` over a ball; its weights ``w > 0`` solve

        ``(G G^T w)_i = w_i^(-1/a)``   for every task ``i``,

    i.e. every task gets ``g_i . d = w_i^(-1/a)``. ``a = 1`` (proportional fairness) is
    exactly Nash-MTL's system ``w_i (G G^T w)_i = 1``; ``a -> inf`` tends to max-min
    fairness. The effective weights are ``w``.

    The official code solves the system with ``scipy.optimize.least_squares`` (bounds
    ``w > 0``, default tolerances); here it is solved exactly by damped Newton on the
    system's convex potential (shared with Nash-MTL, :func:`solve_fair_weights`). Zero
    gradients get weight 0; when 0 lies in the convex hull of the gradients no positive
    solution exists, and the update is 0 with a ``RuntimeWarning``.

    Args:
        n_tasks: number of tasks.
        seed: seed of the (unused) generator.
        alpha: fairness parameter ``a > 0`` (default 1.0, the official code's and
            LibMTL's default; the official experiment scripts use 2.0 on CelebA, QM9
            and MT10/MT50).
        max_norm: clip ``||d||`` (and the weights) to this value; ``None`` (default): no
            clipping.
        update_weights_every: recompute the weights every this many calls (default 1).
    """

    def __init__(self, n_tasks: int, seed: int = 0, alpha: float = 1.0, max_norm: float | None = None,
                 update_weights_every: int = 1):
        super().__init__(n_tasks, seed, max_norm=max_norm, update_weights_every=update_weights_every)
        if alpha <= 0:
            raise ValueError(f"fairgrad: alpha must be positive, got {alpha}")
        self.alpha = alpha
        self._a = float(alpha)
