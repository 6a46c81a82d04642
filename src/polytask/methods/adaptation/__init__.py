"""Unsupervised domain adaptation: extra losses that align a source and a target domain.

Every method is an :class:`Adapter`, an ``nn.Module`` that owns whatever the method trains
besides the backbone and the classifier head (a domain discriminator, extra classifiers),
so a strategy optimizes ``[*model.parameters(), *adapter.parameters()]`` and uses any
method through one call per step::

    adapter = create_adapter("dann", feature_dim=64, n_classes=10)
    f_s, f_t = backbone(x_s), backbone(x_t)
    logits_s, logits_t = head(f_s), head(f_t)
    loss = F.cross_entropy(logits_s, y_s) + adapter.loss(f_s, f_t, logits_s, logits_t, progress, y_s=y_s)

``progress`` in ``[0, 1]`` is the fraction of training done; adversarial methods ramp their
gradient-reversal coefficient with it. The returned loss already carries the method's
``trade_off`` weight. Methods that need no target labels but do need source labels (MCD)
take them as ``y_s``; the others ignore it.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polytask.core.registry import Registry

ADAPTERS: Registry[type] = Registry("domain adaptation method")

# Caps -log(1 - p) in MDD's target term at -log(1e-6), TLlib's shift_log offset.
_MAX_MODIFIED_LOG_LOSS = -math.log(1e-6)


def register_adapter(name: str):
    """Class decorator registering an :class:`Adapter` subclass as ``name``."""
    return ADAPTERS.register_class(name)


def create_adapter(name: str, feature_dim: int, n_classes: int, **hparams: Any) -> Adapter:
    """A fresh instance of the registered method ``name``.

    Example:
        >>> import torch
        >>> a = create_adapter("deep-coral", feature_dim=3, n_classes=2)
        >>> f = torch.randn(8, 3)
        >>> float(a.loss(f, f, torch.zeros(8, 2), torch.zeros(8, 2), progress=0.5))
        0.0
    """
    return ADAPTERS.get_item(name)(feature_dim, n_classes, **hparams)


def adapter_names() -> list[str]:
    """Registered method names."""
    return ADAPTERS.names()


# --------------------------------------------------------------------------- shared pieces


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


# --------------------------------------------------------------------------- base class


class Adapter(nn.Module, abc.ABC):
    """Base class of domain adaptation methods.

    Subclasses take their hyperparameters as keyword arguments with the paper's defaults,
    store them unchanged, build their extra trainable modules (so the optimizer gets
    ``adapter.parameters()``) and implement :meth:`_loss`.

    Args:
        feature_dim: width ``d`` of the backbone features.
        n_classes: number of classes ``C`` of the classifier head (at least 2).
        trade_off: weight ``lambda`` of the adaptation loss.
    """

    name = "base"

    def __init__(self, feature_dim: int, n_classes: int, trade_off: float = 1.0):
        super().__init__()
        if feature_dim < 1:
            raise ValueError(f"{self.name}: feature_dim must be at least 1, got {feature_dim}")
        if n_classes < 2:
            raise ValueError(f"{self.name}: n_classes must be at least 2, got {n_classes}")
        if trade_off < 0:
            raise ValueError(f"{self.name}: trade_off must be non-negative, got {trade_off}")
        self.feature_dim = feature_dim
        self.n_classes = n_classes
        self.trade_off = trade_off

    def loss(self, f_s: Tensor, f_t: Tensor, logits_s: Tensor, logits_t: Tensor, progress: float, *, y_s: Tensor | None = None) -> Tensor:
        """Adaptation loss (a scalar, ``trade_off`` included) added to the source classification loss.

        Args:
            f_s: backbone features of a source batch, ``[n_s, feature_dim]``.
            f_t: backbone features of an unlabelled target batch, ``[n_t, feature_dim]``.
            logits_s: the classifier head's outputs on ``f_s``, ``[n_s, n_classes]``.
            logits_t: the classifier head's outputs on ``f_t``, ``[n_t, n_classes]``.
            progress: fraction of training done, in ``[0, 1]`` (gradient-reversal schedules).
            y_s: source labels ``[n_s]``; only methods that train their own classifiers need them.
        """
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"{self.name}: progress must be in [0, 1], got {progress}")
        for field, f, logits in (("source", f_s, logits_s), ("target", f_t, logits_t)):
            if f.ndim != 2 or f.shape[1] != self.feature_dim:
                raise ValueError(f"{self.name}: {field} features must have shape [n, {self.feature_dim}], got {tuple(f.shape)}")
            if logits.shape != (f.shape[0], self.n_classes):
                raise ValueError(f"{self.name}: {field} logits must have shape [{f.shape[0]}, {self.n_classes}], got {tuple(logits.shape)}")
        return self._loss(f_s, f_t, logits_s, logits_t, progress, y_s)

    @abc.abstractmethod
    def _loss(self, f_s: Tensor, f_t: Tensor, logits_s: Tensor, logits_t: Tensor, progress: float, y_s: Tensor | None) -> Tensor:
        """The method's loss on validated inputs (see :meth:`loss`)."""

    def extra_repr(self) -> str:
        return f"feature_dim={self.feature_dim}, n_classes={self.n_classes}, trade_off={self.trade_off}"


def _at_least_two(name: str, f_s: Tensor, f_t: Tensor) -> None:
    if len(f_s) < 2 or len(f_t) < 2:
        raise ValueError(f"{name}: needs at least 2 samples per domain, got {len(f_s)} source and {len(f_t)} target")


# --------------------------------------------------------------------------- methods


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


@register_adapter("adabn")
class AdaBN(Adapter):
    """Adaptive batch normalization (Li et al., 2016): no loss, target BatchNorm statistics.

    Training is plain source training (:meth:`loss` is a zero connected to the graph, so
    ``backward`` works whatever it is added to); after training, call
    :func:`adabn_recalibrate` on the model with target inputs so every BatchNorm layer
    normalizes with target statistics.
    """

    def _loss(self, f_s, f_t, logits_s, logits_t, progress, y_s):
        return f_s.sum() * 0.0

    @staticmethod
    def recalibrate(model: nn.Module, target_x: Tensor, batch_size: int = 256) -> nn.Module:
        """:func:`adabn_recalibrate`."""
        return adabn_recalibrate(model, target_x, batch_size)


@torch.no_grad()
def adabn_recalibrate(model: nn.Module, target_x: Tensor, batch_size: int = 256) -> nn.Module:
    """Replace every BatchNorm layer's running statistics by statistics of ``target_x``.

    Resets the running mean and variance of each BatchNorm layer that tracks them, then
    runs ``target_x`` through the model in ``ceil(N / batch_size)`` near-equal batches with
    ``momentum=None`` (PyTorch's cumulative average). Only the BatchNorm layers are in
    training mode meanwhile, so dropout does not perturb the statistics. The running mean is
    the exact target mean; the running variance is the average of the per-batch unbiased
    variances, the exact unbiased target variance when one batch holds all of ``target_x``.
    Each layer's momentum and every module's training flag are restored afterwards.

    Args:
        model: the network (its BatchNorm layers are updated in place).
        target_x: target inputs ``[N, ...]``, on the model's device.
        batch_size: largest batch size (at least 2: BatchNorm needs two values per channel).

    Returns:
        ``model``.
    """
    if batch_size < 2:
        raise ValueError(f"adabn: batch_size must be at least 2, got {batch_size}")
    if len(target_x) < 2:
        raise ValueError(f"adabn: needs at least 2 target inputs, got {len(target_x)}")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    modes = {m: m.training for m in model.modules()}
    momenta = [m.momentum for m in norms]
    try:
        model.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        # Near-equal batches: the cumulative average weighs batches equally, and no batch of 1.
        for chunk in torch.tensor_split(target_x, math.ceil(len(target_x) / batch_size)):
            model(chunk)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        for m, mode in modes.items():
            m.training = mode
    return model


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
