"""Dynamic weight average (Liu, Johns & Davison, CVPR 2019, MTAN)."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting


@register_weighting("dwa")
class DynamicWeightAverage(Weighting):
    """Weights from the rate of change of each task's epoch-average loss.

    Liu et al., "End-to-End Multi-Task Learning with Attention", CVPR 2019, eq. (7)::

        r_t = Lbar_t(k-1) / Lbar_t(k-2),     w_t = T * softmax(r / temp)_t

    where ``Lbar_t(k)`` is task ``t``'s average training loss over epoch ``k``. Until two
    completed epochs exist, ``w_t = 1`` (the paper initialises ``r_t = 1`` for the first two
    epochs, which gives the same weights).

    Every call of :meth:`weights` (hence :meth:`combine`) adds the given losses to the
    current epoch's running average; :meth:`on_epoch_end` closes the epoch. Call it once
    per training step with the batch losses.

    Args:
        n_tasks: number of tasks ``T``.
        seed: seed of the (unused) generator.
        temp: softmax temperature (paper: 2).
    """

    requires_grads = False

    def __init__(self, n_tasks: int, seed: int = 0, temp: float = 2.0):
        super().__init__(n_tasks, seed)
        if temp <= 0:
            raise ValueError(f"dwa: temp must be positive, got {temp}")
        self.temp = temp
        self._sum = torch.zeros(n_tasks, dtype=torch.float64)
        self._count = 0
        self.epoch_losses: list[Tensor] = []  # averages of the last two completed epochs

    def weights(self, losses: Tensor) -> Tensor:
        loss64 = losses.detach().to(torch.float64)
        self._sum += loss64
        self._count += 1
        if len(self.epoch_losses) < 2:
            w = torch.ones(self.n_tasks, dtype=torch.float64, device=losses.device)
        else:
            prev2, prev1 = self.epoch_losses
            # Guard a zero average loss (a solved task): its ratio then counts as 1.
            ratio = torch.where(prev2 > 0, prev1 / prev2.clamp_min(1e-12), torch.ones_like(prev1))
            w = self.n_tasks * torch.softmax(ratio / self.temp, dim=0)
        self.last_weights = w.to(losses.dtype)
        return self.last_weights

    def on_epoch_end(self) -> None:
        if self._count == 0:
            return  # an epoch without steps carries no loss information
        self.epoch_losses = (self.epoch_losses + [self._sum / self._count])[-2:]
        self._sum = torch.zeros_like(self._sum)
        self._count = 0
