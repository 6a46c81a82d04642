"""DANN: domain-adversarial training through a gradient reversal layer."""

from __future__ import annotations

from polytask.methods.adaptation.base import Adapter, register_adapter
from polytask.methods.adaptation.losses import _discriminator, _domain_bce, grad_reverse, grl_coefficient


@register_adapter("dann")
class DANN(Adapter):
    """Domain-adversarial training (Ganin et al., JMLR 2016).

    A discriminator ``D`` sees the features through a gradient reversal layer with
    coefficient ``grl_coefficient(progress, max_coeff, alpha)`` and is trained with BCE to
    tell source (label 1) from target (label 0):

        ``loss = trade_off * (BCE(D(R(f_s)), 1) + BCE(D(R(f_t)), 0)) / 2``

    (each domain's mean, then their mean). ``D`` minimizes it; the features, through the
    reversal, maximize it. The paper's discriminator is ``d -> 1024 -> 1024 -> 1``; the
    default hidden width here is 256, sized for small tabular backbones (set ``hidden=1024``
    for the paper's).

    Args:
        feature_dim, n_classes, trade_off: see :class:`Adapter`.
        hidden: width of the discriminator's two hidden layers.
        max_coeff: the reversal coefficient's limit (paper: 1).
        alpha: steepness of the schedule (paper: 10).
    """

    def __init__(self, feature_dim: int, n_classes: int, trade_off: float = 1.0, hidden: int = 256, max_coeff: float = 1.0, alpha: float = 10.0):
        super().__init__(feature_dim, n_classes, trade_off)
        self.hidden = hidden
        self.max_coeff = max_coeff
        self.alpha = alpha
        self.discriminator = _discriminator(feature_dim, hidden)

    def _loss(self, f_s, f_t, logits_s, logits_t, progress, y_s):
        coeff = grl_coefficient(progress, self.max_coeff, self.alpha)
        d_s = self.discriminator(grad_reverse(f_s, coeff)).squeeze(1)
        d_t = self.discriminator(grad_reverse(f_t, coeff)).squeeze(1)
        return self.trade_off * _domain_bce(d_s, d_t)
