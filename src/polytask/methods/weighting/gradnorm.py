"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018)."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting


@register_weighting("gradnorm")
class GradNorm(Weighting):
    """Learn task weights so that weighted gradient norms track relative training rates.

    Chen et al., "GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep
    Multitask Networks", ICML 2018. With ``G_t = ||w_t g_t||``, ``Gbar = mean_t G_t``, loss
    ratios ``r_t = L_t / L_t(0)`` and relative rates ``rt_t = r_t / mean(r)``::

        L_grad = sum_t | G_t - Gbar * rt_t^alpha |

    The target ``Gbar * rt_t^alpha`` is a constant (as in the paper), so
    ``d L_grad / d w_t = sign(G_t - target_t) * ||g_t||``. Each :meth:`combine` returns
    ``combined = w @ grads`` with the current weights, then takes one gradient-descent step
    on ``w``, clamps ``w`` to be positive and renormalises to ``sum_t w_t = T`` (the paper's
    renormalisation).

    The rows of ``grads`` should be the task gradients w.r.t. the last shared layer's
    weights (the paper's ``W``, to keep the extra cost small). They are then used both to
    learn ``w`` and as the combined gradient returned; an engine applying ``w`` to the
    full losses gets the paper's update. ``L_t(0)`` is the loss of the first call.

    Args:
        n_tasks: number of tasks ``T``.
        seed: seed of the (unused) generator.
        alpha: restoring-force strength (paper: 1.5 on NYUv2).
        lr: step size of the plain descent on ``w``. The paper trains ``w`` with the
            network's optimizer and gives no separate value; ``0.025`` is our choice. The
            gradient scales with ``||g_t||``, so tune ``lr`` to the gradient scale.
        min_weight: lower clamp of ``w`` before renormalising (keeps weights positive).
    """

    requires_grads = True

    def __init__(
        self,
        n_tasks: int,
        seed: int = 0,
        alpha: float = 1.5,
        lr: float = 0.025,
        min_weight: float = 1e-6,
    ):
        super().__init__(n_tasks, seed)
        self.alpha = alpha
        self.lr = lr
        self.min_weight = min_weight
        self.task_weights = torch.ones(n_tasks, dtype=torch.float64)
        self.initial_losses: Tensor | None = None

    def combine(self, grads: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        loss64 = self._losses(losses, grads).to(torch.float64)
        g64 = grads.detach().to(torch.float64)
        if self.initial_losses is None:
            self.initial_losses = loss64.clone()
        w = self.task_weights
        combined = (w @ g64).to(grads.dtype)
        self.last_weights = w.to(grads.dtype)

        norms = g64.norm(dim=1)
        gw = w * norms
        # Guard zero initial losses: such a task's ratio counts as 1 (on schedule).
        ratio = torch.where(self.initial_losses > 0, loss64 / self.initial_losses.clamp_min(1e-12), torch.ones_like(loss64))
        mean_ratio = ratio.mean()
        rel = ratio / mean_ratio if mean_ratio > 0 else torch.ones_like(ratio)
        target = gw.mean() * rel.clamp_min(0.0) ** self.alpha
        grad_w = torch.sign(gw - target) * norms
        new_w = (w - self.lr * grad_w).clamp_min(self.min_weight)
        self.task_weights = new_w * (self.n_tasks / new_w.sum())
        return combined, self.last_weights
