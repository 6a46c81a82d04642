"""Random loss weighting (Lin, Ye, Xu, Shi & Zhang, TMLR 2022)."""

from __future__ import annotations

import torch
from torch import Tensor

from polytask.methods.weighting.base import Weighting, register_weighting


@register_weighting("rlw")
class RandomLossWeighting(Weighting):
    """Fresh random weights every step: ``w = softmax(z)``, ``z ~ N(0, I)``.

    Lin et al., "Reasonable Effectiveness of Random Weighting: A Litmus Test for
    Multi-Task Learning", TMLR 2022. Of the paper's weight distributions this is the
    normal-then-softmax one (the paper's and LibMTL's default). The weights lie on the
    simplex (sum to 1) and are *not* rescaled by ``T``, as in LibMTL; multiply the
    learning rate by ``T`` to compare step sizes with equal weighting (weights 1).

    ``z`` is drawn from the object's own generator, so runs are reproducible.

    Args:
        n_tasks: number of tasks ``T``.
        seed: seed of the generator that draws ``z``.
    """

    requires_grads = False

    def weights(self, losses: Tensor) -> Tensor:
        z = torch.randn(self.n_tasks, generator=self.generator, dtype=torch.float64, device="cpu").to(losses.device)
        w = torch.softmax(z, dim=0)
        self.last_weights = w.to(losses.dtype)
        return self.last_weights
