"""``cnn``: a small convolutional backbone for images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.methods.backbones.base import register_backbone


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
def build_cnn(input_shape: tuple[int, ...], channels: Sequence[int] = (32, 64), hidden: int = 128, dropout: float = 0.1) -> nn.Module:
    """A :class:`CNN`: conv stages of ``channels``, then a ``hidden`` layer and ``dropout``."""
    if len(input_shape) != 3 or not all(isinstance(d, int) for d in input_shape):
        raise ConfigError(f"backbone 'cnn' needs image inputs (N, H, W) or (N, C, H, W); got samples of shape {input_shape}")
    return CNN(input_shape, list(channels), hidden, dropout)
