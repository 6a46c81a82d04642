"""Deep CORAL: match the source and target feature covariances."""

from __future__ import annotations

from polytask.methods.adaptation.base import Adapter, _at_least_two, register_adapter
from polytask.methods.adaptation.losses import coral_distance


@register_adapter("deep-coral")
class DeepCORAL(Adapter):
    """Deep CORAL (Sun & Saenko, ECCV-W 2016): match the feature covariances.

        ``loss = trade_off * ||C_s - C_t||_F² / (4 d²)``

    with unbiased covariances (:func:`coral_distance`, the paper's scale; TLlib and ADAPT
    scale differently). The paper picks ``trade_off`` so that the CORAL and classification
    losses are about equal at the end of training; the default is 1. Needs at least 2
    samples per domain.
    """

    def _loss(self, f_s, f_t, logits_s, logits_t, progress, y_s):
        _at_least_two(self.name, f_s, f_t)
        return self.trade_off * coral_distance(f_s, f_t)
