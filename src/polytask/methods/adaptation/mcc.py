"""MCC: minimum class confusion on the target predictions."""

from __future__ import annotations

from polytask.methods.adaptation.base import Adapter, register_adapter
from polytask.methods.adaptation.losses import mcc_loss


@register_adapter("mcc")
class MCC(Adapter):
    """Minimum class confusion (Jin et al., ECCV 2020) on the target logits.

        ``loss = trade_off * mcc_loss(logits_t, temperature)``

    (see :func:`mcc_loss`). Uses neither the features nor the source batch.

    Args:
        feature_dim, n_classes, trade_off: see :class:`Adapter` (paper: 1).
        temperature: probability rescaling ``T`` (paper: 2.5).
    """

    def __init__(self, feature_dim: int, n_classes: int, trade_off: float = 1.0, temperature: float = 2.5):
        super().__init__(feature_dim, n_classes, trade_off)
        if temperature <= 0:
            raise ValueError(f"{self.name}: temperature must be positive, got {temperature}")
        self.temperature = temperature

    def _loss(self, f_s, f_t, logits_s, logits_t, progress, y_s):
        return self.trade_off * mcc_loss(logits_t, self.temperature)
