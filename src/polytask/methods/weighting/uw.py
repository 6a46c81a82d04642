"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018)."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting


@register_weighting("uw")
class UncertaintyWeighting(Weighting):
    """Homoscedastic-uncertainty weighting with learnable log-variances ``s_t``.

    Kendall et al., "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
    Geometry and Semantics", CVPR 2018. With ``s_t = log sigma_t^2`` the objective is::

        total = sum_t exp(-s_t) * L_t + s_t

    Constant choice: the paper writes ``L_t / (2 sigma_t^2) + log sigma_t`` for regression
    and ``L_t / sigma_t^2 + log sigma_t`` for classification. We use one form for every
    task, ``exp(-s_t) L_t + s_t`` (the common LibMTL / reference-code form), which is twice
    the regression form: it has the same minimiser in ``s`` for regression tasks and a
    single convention regardless of the loss type. Its stationary point is
    ``exp(-s_t) = 1 / L_t``, i.e. the weights drift towards inverse-loss weighting.

    Effective weights on the task gradients are ``w_t = exp(-s_t)``. Each call of
    :meth:`weights` returns the weights for the current ``s`` and then takes one plain
    gradient-descent step on ``total`` w.r.t. ``s`` (the object is its own optimizer)::

        d total / d s_t = 1 - exp(-s_t) L_t,      s_t <- s_t - lr * (1 - exp(-s_t) L_t)

    Args:
        n_tasks: number of tasks ``T``.
        seed: seed of the (unused) generator.
        lr: step size for ``s``. Default ``1e-3``: the paper trains ``s`` jointly with the
            network, typically with Adam at ``lr ~ 1e-3`` to ``1e-4``; plain descent with a
            gradient of order one moves ``s`` by about ``lr`` per step, as Adam would.
        init: initial value of every ``s_t`` (paper: 0, i.e. weights 1).
    """

    requires_grads = False

    def __init__(self, n_tasks: int, seed: int = 0, lr: float = 1e-3, init: float = 0.0):
        super().__init__(n_tasks, seed)
        self.lr = lr
        self.init = init
        self.log_vars = torch.full((n_tasks,), float(init), dtype=torch.float64)

    def weights(self, losses: Tensor) -> Tensor:
        loss64 = losses.detach().to(torch.float64)
        w = torch.exp(-self.log_vars)
        # Gradient of the UW objective w.r.t. s at the current losses; the network's own
        # step uses w (computed before this update), as in joint training.
        grad_s = 1.0 - w * loss64
        self.log_vars = self.log_vars - self.lr * grad_s
        self.last_weights = w.to(losses.dtype)
        return self.last_weights
