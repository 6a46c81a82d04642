"""MCD: maximum classifier discrepancy, in a one-step gradient-reversal form."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from polytask.methods.adaptation.base import Adapter, register_adapter
from polytask.methods.adaptation.losses import classifier_discrepancy, grad_reverse, grl_coefficient


@register_adapter("mcd")
class MCD(Adapter):
    """Maximum classifier discrepancy (Saito et al., CVPR 2018), one-step GRL variant.

    Two extra classifiers ``F1, F2`` (``d -> C`` linear) live in the adapter. The paper
    alternates three steps per batch (A: train G, F1, F2 on source; B: F1, F2 maximize the
    target discrepancy; C: G minimizes it). Here one loss does all three in one backward
    pass, with a gradient reversal layer ``R`` between the target features and ``F1, F2``:

        ``loss = CE(F1(f_s), y_s) + CE(F2(f_s), y_s) - trade_off * d(F1(R(f_t)), F2(R(f_t)))``

    with ``d`` the mean L1 distance of the softmax outputs (:func:`classifier_discrepancy`).
    Minimizing it, the classifiers *increase* the discrepancy (the minus sign) and the
    features, through the reversal, *decrease* it. The value is therefore not a distance
    and may be negative. Requires ``y_s``. Predict with :meth:`predict_proba` (the mean of
    the two classifiers) or with the model's own head, trained on source as usual.

    Args:
        feature_dim, n_classes, trade_off: see :class:`Adapter`.
        max_coeff, alpha: gradient reversal schedule (as DANN's).
    """

    def __init__(self, feature_dim: int, n_classes: int, trade_off: float = 1.0, max_coeff: float = 1.0, alpha: float = 10.0):
        super().__init__(feature_dim, n_classes, trade_off)
        self.max_coeff = max_coeff
        self.alpha = alpha
        self.classifier1 = nn.Linear(feature_dim, n_classes)
        self.classifier2 = nn.Linear(feature_dim, n_classes)

    def predict_proba(self, f: Tensor) -> Tensor:
        """Mean of the two classifiers' softmax outputs, ``[N, C]``."""
        return 0.5 * (F.softmax(self.classifier1(f), dim=1) + F.softmax(self.classifier2(f), dim=1))

    def _loss(self, f_s, f_t, logits_s, logits_t, progress, y_s):
        if y_s is None:
            raise ValueError(f"{self.name} trains its own classifiers and needs the source labels: loss(..., y_s=labels)")
        source = F.cross_entropy(self.classifier1(f_s), y_s) + F.cross_entropy(self.classifier2(f_s), y_s)
        r = grad_reverse(f_t, grl_coefficient(progress, self.max_coeff, self.alpha))
        return source - self.trade_off * classifier_discrepancy(self.classifier1(r), self.classifier2(r))
