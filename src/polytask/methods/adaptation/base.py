"""The contract every domain adaptation method follows: the registry and :class:`Adapter`.

Every method is an :class:`Adapter`, an ``nn.Module`` that owns whatever the method trains
besides the backbone and the classifier head (a domain discriminator, extra classifiers),
so a strategy optimizes ``[*model.parameters(), *adapter.parameters()]`` and uses any
method through one call per step (see :mod:`polytask.methods.adaptation`).

``progress`` in ``[0, 1]`` is the fraction of training done; adversarial methods ramp their
gradient-reversal coefficient with it. The returned loss already carries the method's
``trade_off`` weight. Methods that need no target labels but do need source labels (MCD)
take them as ``y_s``; the others ignore it.
"""

from __future__ import annotations

import abc
from typing import Any

from torch import Tensor, nn

from polytask.core.registry import Registry

ADAPTERS: Registry[type] = Registry("domain adaptation method")


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
