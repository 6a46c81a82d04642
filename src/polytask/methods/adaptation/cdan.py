"""CDAN and CDAN+E: domain-adversarial training conditioned on the predictions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from polytask.methods.adaptation.base import Adapter, register_adapter
from polytask.methods.adaptation.losses import _discriminator, _domain_bce, entropy_weights, grad_reverse, grl_coefficient


@register_adapter("cdan")
class CDAN(Adapter):
    """Conditional domain-adversarial network (Long et al., NeurIPS 2018), and CDAN+E.

    The discriminator sees, through the gradient reversal layer, the multilinear map of the
    features ``f`` and the predictions ``g = softmax(logits)`` (detached, as in the official
    code and TLlib):

    * ``T(f, g) = vec(g ⊗ f)`` (``[N, C * d]``) when ``C * d <= max_dim``;
    * otherwise the randomized map ``T(f, g) = (f R_f) ⊙ (g R_g) / sqrt(random_dim)``, with
      ``R_f [d, random_dim]``, ``R_g [C, random_dim]`` standard normal, drawn once from
      ``seed`` and kept as buffers (saved with the state dict, never trained).

    ``loss = trade_off * (mean_s w BCE(D(R(T_s)), 1) + mean_t w BCE(D(R(T_t)), 0)) / 2``, where
    ``w = 1`` for CDAN and, for CDAN+E (``entropy=True``), ``w = 1 + exp(-H(g))`` normalized to
    mean 1 within each domain's batch (the official code's per-domain normalization; the
    weights are detached, TLlib's choice; the official code lets them carry a reversed
    gradient).

    Args:
        feature_dim, n_classes, trade_off: see :class:`Adapter`.
        entropy: CDAN+E's entropy conditioning.
        hidden: width of the discriminator's two hidden layers (paper: 1024).
        max_dim: largest ``C * d`` for the exact multilinear map (paper: 4096).
        random_dim: output width of the randomized map (paper: 1024).
        seed: seed of the random matrices.
        max_coeff, alpha: gradient reversal schedule (paper: 1 and 10, as DANN).
    """

    def __init__(
        self,
        feature_dim: int,
        n_classes: int,
        trade_off: float = 1.0,
        entropy: bool = False,
        hidden: int = 256,
        max_dim: int = 4096,
        random_dim: int = 1024,
        seed: int = 0,
        max_coeff: float = 1.0,
        alpha: float = 10.0,
    ):
        super().__init__(feature_dim, n_classes, trade_off)
        self.entropy = entropy
        self.hidden = hidden
        self.max_dim = max_dim
        self.random_dim = random_dim
        self.seed = seed
        self.max_coeff = max_coeff
        self.alpha = alpha
        self.randomized = feature_dim * n_classes > max_dim
        if self.randomized:
            gen = torch.Generator().manual_seed(seed)
            self.register_buffer("r_f", torch.randn(feature_dim, random_dim, generator=gen))
            self.register_buffer("r_g", torch.randn(n_classes, random_dim, generator=gen))
        self.discriminator = _discriminator(random_dim if self.randomized else feature_dim * n_classes, hidden)

    def multilinear_map(self, f: Tensor, g: Tensor) -> Tensor:
        """``T(f, g)``: ``[N, C * d]`` (exact, class-major) or ``[N, random_dim]`` (randomized)."""
        if self.randomized:
            return (f @ self.r_f) * (g @ self.r_g) / math.sqrt(self.random_dim)
        return torch.einsum("nc,nd->ncd", g, f).flatten(1)

    def _loss(self, f_s, f_t, logits_s, logits_t, progress, y_s):
        coeff = grl_coefficient(progress, self.max_coeff, self.alpha)
        g_s = F.softmax(logits_s, dim=1).detach()
        g_t = F.softmax(logits_t, dim=1).detach()
        d_s = self.discriminator(grad_reverse(self.multilinear_map(f_s, g_s), coeff)).squeeze(1)
        d_t = self.discriminator(grad_reverse(self.multilinear_map(f_t, g_t), coeff)).squeeze(1)
        w_s, w_t = (entropy_weights(g_s), entropy_weights(g_t)) if self.entropy else (None, None)
        return self.trade_off * _domain_bce(d_s, d_t, w_s, w_t)
