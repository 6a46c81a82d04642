"""Equal weighting: every task's gradient with weight 1 (the plain sum of the losses)."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting


@register_weighting("ew")
class EqualWeighting(Weighting):
    """``w_t = 1`` for every task: the sum of the task losses.

    The strong baseline of multi-task learning: careful re-runs often find the elaborate
    methods within seed noise of it.
    """

    requires_grads = False

    def weights(self, losses: Tensor) -> Tensor:
        return torch.ones(self.n_tasks, dtype=losses.dtype, device=losses.device)

    def combine(self, grads: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        w = torch.ones(grads.shape[0], dtype=grads.dtype, device=grads.device)
        return grads.sum(0), w
