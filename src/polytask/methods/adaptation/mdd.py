"""MDD: margin disparity discrepancy with an adversarial head."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from polytask.methods.adaptation.base import Adapter, register_adapter
from polytask.methods.adaptation.losses import grad_reverse, grl_coefficient

# Caps -log(1 - p) in MDD's target term at -log(1e-6), TLlib's shift_log offset.
_MAX_MODIFIED_LOG_LOSS = -math.log(1e-6)


@register_adapter("mdd")
class MDD(Adapter):
    """Margin disparity discrepancy (Zhang et al., ICML 2019).

    An adversarial head ``f'`` (``d -> hidden -> C``) sees the features through a gradient
    reversal layer ``R``; ``h_s, h_t`` are the main head's predicted classes (argmax, so no
    gradient reaches the main head). The paper's empirical discrepancy, with TLlib's signs, is

        ``D = E_t[log(1 - softmax(f'(R(f_t)))[h_t])] - gamma * E_s[CE(f'(R(f_s)), h_s)]``

    and this method returns

        ``loss = -trade_off * D = trade_off * (gamma * E_s[CE(f'(R(f_s)), h_s)] + E_t[-log(1 - p'_t[h_t])])``.

    Minimizing it, ``f'`` maximizes ``D`` (agree with the main head on source, disagree on
    target); the features, through the reversal, minimize ``D``. ``-log(1 - p)`` is computed
    as ``logsumexp(z) - logsumexp_{k != h}(z)`` (gradient bounded in the logits) and capped at
    ``-log(1e-6)``, TLlib's ``shift_log`` offset.

    Args:
        feature_dim, n_classes, trade_off: see :class:`Adapter` (paper, TLlib: 1).
        margin: ``gamma`` (paper: 4).
        hidden: width of the adversarial head's hidden layer (TLlib: 1024).
        max_coeff: the reversal coefficient's limit (official code and TLlib: 0.1).
        alpha: steepness of the schedule over ``progress`` (the official code ramps over its
            first few thousand iterations; here the DANN schedule shape, 10).
    """

    def __init__(
        self, feature_dim: int, n_classes: int, trade_off: float = 1.0, margin: float = 4.0, hidden: int = 256, max_coeff: float = 0.1, alpha: float = 10.0
    ):
        super().__init__(feature_dim, n_classes, trade_off)
        if margin <= 0:
            raise ValueError(f"{self.name}: margin must be positive, got {margin}")
        self.margin = margin
        self.hidden = hidden
        self.max_coeff = max_coeff
        self.alpha = alpha
        self.adversary = nn.Sequential(nn.Linear(feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def _loss(self, f_s, f_t, logits_s, logits_t, progress, y_s):
        coeff = grl_coefficient(progress, self.max_coeff, self.alpha)
        adv_s = self.adversary(grad_reverse(f_s, coeff))
        adv_t = self.adversary(grad_reverse(f_t, coeff))
        source = F.cross_entropy(adv_s, logits_s.argmax(1))
        target = modified_log_loss(adv_t, logits_t.argmax(1)).mean()
        return self.trade_off * (self.margin * source + target)


def modified_log_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """MDD's ``-log(1 - softmax(logits)[label])`` per row, capped at ``-log(1e-6)``."""
    mask = F.one_hot(labels, logits.shape[1]).bool()
    log_rest = logits.masked_fill(mask, float("-inf")).logsumexp(1)  # log sum_{k != label} exp(z_k)
    return (logits.logsumexp(1) - log_rest).clamp(max=_MAX_MODIFIED_LOG_LOSS)
