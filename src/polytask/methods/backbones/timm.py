"""``timm:<name>``: a timm image model, when timm imports."""

from __future__ import annotations

import importlib

from torch import nn

from polytask.core.errors import ConfigError
from polytask.methods.backbones.base import register_prefix
from polytask.methods.backbones.imagenet import FeatureMap, ImageNetBackbone, check_image_shape


@register_prefix("timm", options=("imagenet",))
def build_timm(spec: str, input_shape: tuple, pretrained: bool, resize: int | None = 64) -> nn.Module:
    """timm model ``spec`` (``num_classes=0``) as an image backbone, when timm imports."""
    check_image_shape(f"timm:{spec}", input_shape)
    try:
        timm = importlib.import_module("timm")
    except Exception as e:  # a timm/torchvision built for another torch fails with several error types
        raise ConfigError(f"backbone 'timm:{spec}' needs timm, which does not import here ({type(e).__name__}: {e})") from None
    try:
        net = timm.create_model(spec, pretrained=pretrained, num_classes=0, global_pool="")
    except Exception as e:  # unknown model names, missing weights and no network all land here
        raise ConfigError(f"backbone 'timm:{spec}': could not create it ({type(e).__name__}: {e})") from None
    data_cfg = getattr(net, "pretrained_cfg", {}) or {}
    mean, std = data_cfg.get("mean", (0.485, 0.456, 0.406)), data_cfg.get("std", (0.229, 0.224, 0.225))
    return ImageNetBackbone(FeatureMap(net, "forward_features"), int(net.num_features), mean, std, resize, [net])
