"""DAN: multi-kernel MMD between the source and target features."""

from __future__ import annotations

from polytask.methods.adaptation.base import Adapter, register_adapter
from polytask.methods.adaptation.losses import gaussian_mk_mmd


@register_adapter("dan")
class DAN(Adapter):
    """Deep adaptation network (Long et al., ICML 2015): multi-kernel MMD on the features.

        ``loss = trade_off * MK-MMD²(f_s, f_t)``

    with :func:`gaussian_mk_mmd`: the biased estimate, five Gaussian kernels
    ``exp(-||a - b||² / (2^k h))``, ``k = -2..2``, equally weighted, around ``h`` = the median
    pooled pairwise squared distance (detached). The paper learns the kernel weights and uses
    the linear-time unbiased estimate; fixed equal weights and the quadratic biased estimate
    are the common re-implementation (TLlib, pytorch-adapt). Applied to the backbone features
    only (the paper also adapts the last hidden layers and the logits of AlexNet).

    Args:
        feature_dim, n_classes, trade_off: see :class:`Adapter` (paper: ``lambda = 1``).
        bandwidth: a fixed ``h`` instead of the median heuristic.
    """

    def __init__(self, feature_dim: int, n_classes: int, trade_off: float = 1.0, bandwidth: float | None = None):
        super().__init__(feature_dim, n_classes, trade_off)
        if bandwidth is not None and bandwidth <= 0:
            raise ValueError(f"{self.name}: bandwidth must be positive, got {bandwidth}")
        self.bandwidth = bandwidth

    def _loss(self, f_s, f_t, logits_s, logits_t, progress, y_s):
        return self.trade_off * gaussian_mk_mmd(f_s, f_t, bandwidth=self.bandwidth)
