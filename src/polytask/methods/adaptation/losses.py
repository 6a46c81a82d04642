"""Pieces shared by the adaptation methods: gradient reversal and its schedule, the domain
discriminator and its loss, kernel and covariance discrepancies, entropy and class confusion."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GradientReversal(torch.autograd.Function):
    """Identity on the forward pass; multiplies the gradient by ``-coeff`` on the way back.

    Ganin et al. 2016, eq. (13)-(14): the layer sits between the feature extractor and the
    domain discriminator, so one backward pass trains the discriminator to *minimize* the
    domain loss and the features to *maximize* it.
    """

    @staticmethod
    def forward(ctx, x: Tensor, coeff: float) -> Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.coeff * grad, None


def grad_reverse(x: Tensor, coeff: float = 1.0) -> Tensor:
    """``x`` unchanged, with its gradient multiplied by ``-coeff`` (:class:`GradientReversal`)."""
    return GradientReversal.apply(x, coeff)


def grl_coefficient(progress: float, max_coeff: float = 1.0, alpha: float = 10.0) -> float:
    """Ganin et al.'s schedule ``max_coeff * (2 / (1 + exp(-alpha * p)) - 1)``.

    Starts at 0 (the discriminator's early, noisy signal does not reach the features) and
    approaches ``max_coeff`` as ``p -> 1``; the paper uses ``alpha = 10``.
    """
    return max_coeff * (2.0 / (1.0 + math.exp(-alpha * progress)) - 1.0)


def _discriminator(in_dim: int, hidden: int) -> nn.Sequential:
    """Ganin et al.'s domain classifier ``in -> hidden -> hidden -> 1`` (a logit) with ReLUs."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))


def _domain_bce(d_s: Tensor, d_t: Tensor, w_s: Tensor | None = None, w_t: Tensor | None = None) -> Tensor:
    """Mean of the two domains' (weighted) mean BCE, source labelled 1 and target 0.

    Averaging per domain first keeps the loss balanced when the two batches differ in size.
    """
    l_s = F.binary_cross_entropy_with_logits(d_s, torch.ones_like(d_s), reduction="none")
    l_t = F.binary_cross_entropy_with_logits(d_t, torch.zeros_like(d_t), reduction="none")
    if w_s is not None:
        l_s, l_t = l_s * w_s, l_t * w_t
    return 0.5 * (l_s.mean() + l_t.mean())


def prediction_entropy(logits: Tensor) -> Tensor:
    """Entropy in nats of ``softmax(logits)`` per row, ``[N]``."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(1)


def gaussian_mk_mmd(x: Tensor, y: Tensor, multipliers: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0), bandwidth: float | None = None) -> Tensor:
    """Biased (V-statistic) multi-kernel MMD² between samples ``x [n, d]`` and ``y [m, d]``.

    ``MMD² = mean K(x, x') + mean K(y, y') - 2 mean K(x, y)`` with diagonals included (the
    biased estimate: never negative, exactly 0 for identical batches), where
    ``K = (1/U) sum_u exp(-||a - b||² / (c_u * h))`` is an equal-weight convex combination of
    Gaussian kernels (Long et al. 2015 constrain the kernel weights to sum to 1).

    Bandwidth convention: ``h`` is the median (``torch.median``, the lower median for an
    even count) of the squared distances between distinct points of the *pooled* batch
    ``[x; y]``, detached so no gradient flows through the bandwidth; ``bandwidth`` fixes
    ``h`` instead. This is neither pytorch-adapt's (lower median of source-source distances)
    nor TLlib's (a multiple of the mean): values are comparable within this convention only.
    """
    z = torch.cat([x, y])
    sq = (z * z).sum(1)
    # Squared distances without cdist: its gradient at zero distance is undefined.
    d2 = (sq[:, None] + sq[None, :] - 2.0 * z @ z.T).clamp_min(0.0)
    if bandwidth is None:
        i, j = torch.triu_indices(len(z), len(z), offset=1, device=z.device)
        h = d2.detach()[i, j].median()
    else:
        h = torch.as_tensor(bandwidth, dtype=z.dtype, device=z.device)
    # All points identical: every kernel is 1 whatever h, so any positive h gives MMD = 0.
    h = h.clamp_min(torch.finfo(z.dtype).tiny)
    k = torch.stack([torch.exp(-d2 / (c * h)) for c in multipliers]).mean(0)
    n = len(x)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2.0 * k[:n, n:].mean()


def coral_distance(f_s: Tensor, f_t: Tensor) -> Tensor:
    """Sun & Saenko 2016, eq. (1): ``||C_s - C_t||_F² / (4 d²)`` with unbiased covariances.

    ``C = (X^T X - (1^T X)^T (1^T X) / n) / (n - 1)`` per domain. Other libraries scale
    differently (TLlib adds the squared mean difference and divides by ``d²``; ADAPT takes
    ``0.25 * mean(ΔC²)``); this is the paper's.
    """
    d = f_s.shape[1]
    diff = torch.cov(f_s.T, correction=1).reshape(d, d) - torch.cov(f_t.T, correction=1).reshape(d, d)
    return (diff * diff).sum() / (4.0 * d * d)


def entropy_weights(g: Tensor) -> Tensor:
    """CDAN+E's ``w = 1 + exp(-H(g))`` per row, divided by its batch mean (mean weight 1).

    ``g`` are class probabilities ``[N, C]``; confident (low-entropy) rows weigh more.
    """
    h = -(g * torch.log(g.clamp_min(1e-12))).sum(1)
    w = 1.0 + torch.exp(-h)
    return w / w.mean()


def mcc_loss(logits: Tensor, temperature: float = 2.5) -> Tensor:
    """Minimum class confusion (Jin et al. 2020, eqs. 1-7) of one target batch ``[B, C]``.

    ``Y = softmax(logits / T)``; sample weights ``W_ii = B (1 + exp(-H(Y_i))) / sum_j (1 + exp(-H(Y_j)))``
    (entropy detached, as in TLlib); class confusion ``C = Y^T W Y``; each class's column is
    normalized to sum 1 (``C_jk / sum_j' C_j'k``; ``C`` is symmetric so rows and columns agree);
    loss ``= (sum_{j != k} C_jk) / |C|``.
    """
    b, c = logits.shape
    y = F.softmax(logits / temperature, dim=1)
    h = prediction_entropy(logits / temperature).detach()
    w = 1.0 + torch.exp(-h)
    w = b * w / w.sum()
    confusion = (y * w[:, None]).T @ y
    confusion = confusion / confusion.sum(0, keepdim=True)
    return (confusion.sum() - confusion.trace()) / c


def classifier_discrepancy(logits_1: Tensor, logits_2: Tensor) -> Tensor:
    """MCD's ``d(p1, p2) = mean over samples and classes of |p1 - p2|`` (Saito et al. 2018, eq. 1)."""
    return (F.softmax(logits_1, dim=1) - F.softmax(logits_2, dim=1)).abs().mean()
