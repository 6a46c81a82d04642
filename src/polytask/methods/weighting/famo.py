"""Fast Adaptive Multitask Optimization (Liu, Liu, Jin, Stone & Liu, NeurIPS 2023)."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting


@register_weighting("famo")
class FAMO(Weighting):
    """FAMO: balance the *rate* of log-loss decrease across tasks in O(1) per step.

    Liu et al., "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023.

    Logits ``xi`` (init 0) give ``z = softmax(xi)``. The step minimises
    ``sum_t z_t log(L_t - m_t)`` (``m`` = ``min_losses``), normalised by
    ``c = (sum_t z_t / D_t)^-1`` with ``D_t = L_t - m_t + eps``, so the effective weights on
    the task gradients are::

        w_t = c * z_t / D_t        (sum_t w_t = 1)

    After the optimizer step, :meth:`after_step` gets the new losses and updates ``xi``
    with the observed decrease of the log losses ``delta_t = log D_t(before) - log
    D_t(after)``::

        xi <- xi - lr * (J_z^T delta + gamma * xi),     J_z = d softmax(xi) / d xi

    ``J_z^T delta = z * (delta - z . delta)``: a task whose log loss fell faster than the
    z-weighted average gets a positive gradient, so its logit (and next weight) *falls*,
    shifting effort to the lagging tasks.

    The paper's Algorithm 1 takes the plain step above; the official code
    (github.com/Cranial-XIX/FAMO) feeds ``J_z^T delta`` to Adam with L2 weight decay
    ``gamma``. ``optimizer="adam"`` (default) follows the code, whose ``lr`` default is
    tuned for it; ``optimizer="sgd"`` is Algorithm 1 exactly.

    Call :meth:`combine` (or :meth:`weights`) with the losses before the step and
    :meth:`after_step` with the losses of the same batch after it; without an
    ``after_step`` call the logits stay put.

    Args:
        n_tasks: number of tasks ``T``.
        seed: seed of the (unused) generator.
        lr: step size for the logits (official code: 0.025).
        gamma: weight decay on the logits: 1e-3, as in LibMTL and torchjd (the
            official code's class default is 1e-5, its experiment scripts pass 0.01 or
            1e-3 depending on the benchmark).
        min_losses: per-task lower bounds ``m_t`` of the losses (default 0).
        optimizer: ``"adam"`` (official code) or ``"sgd"`` (paper, Algorithm 1).
        eps: added to ``L_t - m_t`` before the log, as in the official code.
    """

    requires_grads = False

    def __init__(
        self,
        n_tasks: int,
        seed: int = 0,
        lr: float = 0.025,
        gamma: float = 0.001,
        min_losses: float | list[float] | Tensor = 0.0,
        optimizer: str = "adam",
        eps: float = 1e-8,
    ):
        super().__init__(n_tasks, seed)
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"famo: optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        self.lr = lr
        self.gamma = gamma
        self.min_losses = min_losses
        self.optimizer = optimizer
        self.eps = eps
        self._m = torch.as_tensor(min_losses, dtype=torch.float64).expand(n_tasks).clone()
        self.logits = torch.zeros(n_tasks, dtype=torch.float64)
        self._prev_log: Tensor | None = None
        # Adam state (betas and eps as torch.optim.Adam's defaults).
        self._adam_m = torch.zeros(n_tasks, dtype=torch.float64)
        self._adam_v = torch.zeros(n_tasks, dtype=torch.float64)
        self._adam_t = 0

    def _log_gap(self, losses: Tensor) -> Tensor:
        # Clamp so a loss at (or numerically below) its bound cannot give log of <= 0.
        gap = (losses.detach().to(torch.float64) - self._m).clamp_min(0.0) + self.eps
        return torch.log(gap)

    def weights(self, losses: Tensor) -> Tensor:
        log_d = self._log_gap(losses)
        self._prev_log = log_d
        # w_t = z_t / D_t / sum_k z_k / D_k, computed as a softmax in log space for stability.
        w = torch.softmax(torch.log_softmax(self.logits, dim=0) - log_d, dim=0)
        self.last_weights = w.to(losses.dtype)
        return self.last_weights

    def after_step(self, losses: Tensor) -> None:
        if self._prev_log is None:
            return
        delta = self._prev_log - self._log_gap(losses)
        self._prev_log = None
        z = torch.softmax(self.logits, dim=0)
        grad = z * (delta - (z * delta).sum()) + self.gamma * self.logits
        if self.optimizer == "sgd":
            self.logits = self.logits - self.lr * grad
            return
        b1, b2, adam_eps = 0.9, 0.999, 1e-8
        self._adam_t += 1
        self._adam_m = b1 * self._adam_m + (1 - b1) * grad
        self._adam_v = b2 * self._adam_v + (1 - b2) * grad * grad
        m_hat = self._adam_m / (1 - b1**self._adam_t)
        v_hat = self._adam_v / (1 - b2**self._adam_t)
        self.logits = self.logits - self.lr * m_hat / (v_hat.sqrt() + adam_eps)
