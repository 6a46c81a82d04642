"""Dual-balancing multi-task learning (Lin, Ye, Zhang, Kwok & Zhang, 2023)."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting


@register_weighting("db-mtl")
class DualBalancing(Weighting):
    """DB-MTL: balance loss scales with a log transform, gradient scales with norms.

    Lin et al., "Dual-Balancing for Multi-Task Learning" (arXiv 2308.12029), Algorithm 1:

    1. Loss-scale balancing: use the gradients of ``log(L_t + eps)``,
       ``h_t = g_t / (L_t + eps)``.
    2. An EMA of each task's log-gradient, ``gbar_t <- beta_k gbar_t + (1 - beta_k) h_t`` with
       ``beta_k = beta / k^beta_sigma`` at step ``k`` and ``gbar = 0`` initially (no bias
       correction, as in the official LibMTL code).
    3. Gradient-magnitude balancing: rescale each task's gradient to the largest EMA
       norm ``M = max_k ||gbar_k||``.

    Two ways to do step 3 (``direction``):

    * ``"ema"`` (default, the paper and LibMTL): ``combined = sum_t M gbar_t / ||gbar_t||``.
      This combines the EMA gradients, which mix past steps' gradients, so no weights
      ``w`` with ``combined = w @ grads`` exist for the current gradients and the method
      returns ``None`` as weights (per the contract); ``last_scales`` holds ``M/||gbar_t||``.
    * ``"current"``: the EMA sets only the magnitudes; the current log-gradients give the
      direction, ``combined = sum_t M h_t / ||h_t||``. Then the effective weights on the
      raw gradients are exactly::

          w_t = M / (||h_t|| * (L_t + eps)) = M / ||g_t||

      (``L_t + eps > 0`` cancels in ``||h_t||``: the loss scale only enters through ``M``).

    Zero-norm rows get weight 0 (``1e-8`` is added to norms, as in the official code).

    Args:
        n_tasks: number of tasks ``T``.
        seed: seed of the (unused) generator.
        beta: EMA coefficient (official default 0.9).
        beta_sigma: decay exponent of the EMA coefficient (official default 0).
        eps: added to the losses before the log (official: 1e-8).
        direction: ``"ema"`` (paper) or ``"current"``.
    """

    requires_grads = True

    def __init__(
        self,
        n_tasks: int,
        seed: int = 0,
        beta: float = 0.9,
        beta_sigma: float = 0.0,
        eps: float = 1e-8,
        direction: str = "ema",
    ):
        super().__init__(n_tasks, seed)
        if direction not in ("ema", "current"):
            raise ValueError(f"db-mtl: direction must be 'ema' or 'current', got {direction!r}")
        self.beta = beta
        self.beta_sigma = beta_sigma
        self.eps = eps
        self.direction = direction
        self.step = 0
        self.grad_buffer: Tensor | None = None
        self.last_scales: Tensor | None = None

    def combine(self, grads: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        loss64 = self._losses(losses, grads).to(torch.float64)
        g = grads.detach()
        # d log(L_t + eps) = g_t / (L_t + eps); clamp so a zero/negative loss cannot flip signs.
        denom = (loss64 + self.eps).clamp_min(self.eps)
        self.step += 1
        b = self.beta / self.step**self.beta_sigma
        # EMA update in place, gbar <- b gbar + (1 - b) g / denom: one pass over the float64
        # buffer instead of materialising h = g / denom and two more full-size temporaries.
        coef = ((1.0 - b) / denom)[:, None]
        if self.grad_buffer is None or self.grad_buffer.shape != g.shape:
            self.grad_buffer = torch.zeros(g.shape, dtype=torch.float64, device=g.device)
        self.grad_buffer.mul_(b).addcmul_(g, coef)
        ema_norm = self.grad_buffer.norm(dim=1)
        target = ema_norm.max()
        if self.direction == "ema":
            scales = target / (ema_norm + 1e-8)
            self.last_scales = scales.to(grads.dtype)
            combined = scales @ self.grad_buffer
            self.last_weights = None
            return combined.to(grads.dtype), None
        g64 = g.to(torch.float64)
        # ||h_t|| = ||g_t|| / denom_t.
        scales = target / (g64.norm(dim=1) / denom + 1e-8)
        self.last_scales = scales.to(grads.dtype)
        w = scales / denom
        self.last_weights = w.to(grads.dtype)
        return (w @ g64).to(grads.dtype), self.last_weights
