"""``bss``: Batch Spectral Shrinkage (Chen et al., NeurIPS 2019), a penalty on the smallest
singular values of the batch features."""

from __future__ import annotations

import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.methods.finetuning.regularizers.base import Penalty, _check_nonnegative, register_regularizer

__all__ = ["BSS"]


@register_regularizer("bss")
class BSS(Penalty):
    """Batch Spectral Shrinkage (Chen et al., "Catastrophic Forgetting Meets Negative
    Transfer: Batch Spectral Shrinkage for Safe Transfer Learning", NeurIPS 2019), Eq. 5:

    ``L_bss = η · Σ_{i=1..k} σ_{-i}²``

    the squares of the ``k`` smallest singular values of the batch feature matrix ``F``
    (backbone output, one flattened row per sample; ``min(batch, features)`` singular
    values), which shrinks the feature directions the small target set cannot support.

    Args:
        start: ignored (BSS needs no pretrained reference); accepted for the uniform
            constructor.
        eta: strength (default 0.001).
        k: how many of the smallest singular values to shrink (default 1).
    """

    uses_features = True

    def __init__(self, start: nn.Module | None = None, eta: float = 0.001, k: int = 1):
        _check_nonnegative(eta=eta)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"k must be an integer >= 1; got {k!r}")
        super().__init__(None)
        self.eta, self.k = eta, k

    def forward(self, model: nn.Module, x: torch.Tensor, task: str, y: torch.Tensor | None = None) -> torch.Tensor:
        f = self.features(x)[-1].flatten(1)
        sigma = torch.linalg.svdvals(f)  # descending
        if self.k > len(sigma):
            raise ValueError(f"bss: k={self.k} exceeds the {len(sigma)} singular values of a {tuple(f.shape)} feature batch")
        return self.eta * sigma[-self.k :].pow(2).sum()
