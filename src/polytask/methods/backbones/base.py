"""Backbones: the shared layers, mapping an input batch to a feature vector.

Every backbone exposes ``out_features``. Builders are registered by name with
:func:`register_backbone`; users may also pass their own ``nn.Module`` (see
:func:`from_user_module`).
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from torch import nn

from polytask.config import ModelConfig
from polytask.core.errors import ConfigError
from polytask.core.registry import Registry

BackboneBuilder = Callable[[tuple[int, ...], ModelConfig], nn.Module]
BACKBONES: Registry[BackboneBuilder] = Registry("backbone")


def register_backbone(name: str):
    """Decorator registering ``fn(input_shape, model_config) -> nn.Module``; duplicates raise."""
    return BACKBONES.register(name)


class MLP(nn.Module):
    """Flatten, then ``Linear -> ReLU -> Dropout`` per hidden width."""

    def __init__(self, in_features: int, hidden: list[int], dropout: float):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU(), nn.Dropout(dropout)]
            in_features = width
        self.net = nn.Sequential(*layers)
        self.out_features = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_backbone("mlp")
def _mlp(input_shape: tuple[int, ...], cfg: ModelConfig) -> nn.Module:
    if not all(isinstance(d, int) for d in input_shape):
        raise ConfigError("backbone 'mlp' reads numeric inputs, but the task's inputs are text: use gru, minilm or hf:<name>")
    return MLP(math.prod(input_shape), cfg.mlp.hidden, cfg.mlp.dropout)


class CNN(nn.Module):
    """``Conv3x3 -> BatchNorm -> ReLU -> MaxPool2`` stages, then a hidden linear layer."""

    def __init__(self, input_shape: tuple[int, ...], channels: list[int], hidden: int, dropout: float):
        super().__init__()
        c, h, w = input_shape
        stages: list[nn.Module] = []
        for out_c in channels:
            # Pool only while the map is at least 2x2, so small images (8x8 digits) still fit.
            pool = nn.MaxPool2d(2) if min(h, w) >= 2 else nn.Identity()
            stages += [nn.Conv2d(c, out_c, 3, padding=1, bias=False), nn.BatchNorm2d(out_c), nn.ReLU(), pool]
            c = out_c
            if min(h, w) >= 2:
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*stages, nn.Flatten())
        self.head = nn.Sequential(nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.out_features = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_backbone("cnn")
def _cnn(input_shape: tuple[int, ...], cfg: ModelConfig) -> nn.Module:
    if len(input_shape) != 3 or not all(isinstance(d, int) for d in input_shape):
        raise ConfigError(f"backbone 'cnn' needs image inputs (N, H, W) or (N, C, H, W); got samples of shape {input_shape}")
    return CNN(input_shape, cfg.cnn.channels, cfg.cnn.hidden, cfg.cnn.dropout)


def from_user_module(module: nn.Module | Callable[[], nn.Module], input_shape: tuple[int, ...]) -> nn.Module:
    """A fresh backbone from a user's module or a zero-argument factory.

    A module instance is deep-copied and its parameters re-initialized (every submodule
    with ``reset_parameters``), so each run starts from its own seeded initialization.
    ``out_features`` is read from the module or found by one forward pass.
    """
    if isinstance(module, nn.Module):
        net = copy.deepcopy(module)
        for m in net.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    else:
        net = module()
        if not isinstance(net, nn.Module):
            raise ConfigError(f"backbone factory returned {type(net).__name__}; expected a torch.nn.Module")
    if not hasattr(net, "out_features") or not isinstance(net.out_features, int):
        was = net.training
        net.eval()
        with torch.no_grad():
            out = net(torch.zeros(2, *input_shape))
        net.train(was)
        if out.ndim != 2:
            raise ConfigError(f"user backbone returns shape {tuple(out.shape)} for a batch; expected (batch, features)")
        net.out_features = int(out.shape[1])
    return net
