"""What ImageNet backbones share: taking the study's images as they are (grey to three
channels, resized, normalized with the network's own statistics) and pooling features."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from polytask.core.errors import ConfigError


class ImageNetBackbone(nn.Module):
    """An ImageNet feature extractor taking the study's images as they are.

    Grey images are repeated to three channels, resized to ``resize`` (bilinear), then
    normalized with the network's own mean and std; features are globally averaged.

    Args:
        features: module mapping a normalized ``[N, 3, H, W]`` batch to a feature map
            ``[N, C, h, w]`` (or to ``[N, C]`` already pooled).
        out_features: ``C``.
        mean, std: per-channel normalization the network was trained with (on [0, 1] inputs).
        resize: side the images are resized to (``None``: keep).
        groups: the network's layers bottom to top (gradual unfreezing, layer-wise rates).
    """

    def __init__(self, features: nn.Module, out_features: int, mean, std, resize: int | None, groups: list[nn.Module]):
        super().__init__()
        self.features = features
        self.out_features = out_features
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.resize = resize
        self._groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"an ImageNet backbone needs images [N, 1 or 3, H, W], got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.resize and tuple(x.shape[-2:]) != (self.resize, self.resize):
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False, antialias=self.resize < max(x.shape[-2:]))
        out = self.features((x - self.mean) / self.std)
        return out.mean(dim=(2, 3)) if out.ndim == 4 else out

    def layer_groups(self) -> list[nn.Module]:
        """The network's layers, bottom first."""
        return list(self._groups)


def check_image_shape(name: str, input_shape: tuple) -> None:
    """Refuse inputs that are not 1- or 3-channel images for backbone ``name``."""
    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise ConfigError(f"backbone '{name}' needs images with 1 or 3 channels; got samples of shape {input_shape}")


class FeatureMap(nn.Module):
    """``net``'s feature map through its own method ``method`` (``extract_features`` of
    EfficientNet, ``forward_features`` of timm), as a module ``ImageNetBackbone`` can call."""

    def __init__(self, net: nn.Module, method: str):
        super().__init__()
        self.net = net
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.net, self.method)(x)
