"""``module:package.module:callable``: ``callable()`` returns the user's backbone. Python API
only (``Study(backbone=...)``): a config file may not name code to import and run."""

from __future__ import annotations

import importlib

from torch import nn

from polytask.core.errors import ConfigError
from polytask.methods.backbones.base import from_user_module, register_prefix


@register_prefix("module")
def build_module(spec: str, input_shape: tuple, pretrained: bool) -> nn.Module:
    """``fn()`` of ``module:package.module:fn``: the user's backbone, as returned or re-initialized."""
    mod_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"backbone 'module:{spec}': cannot import {attr} from {mod_name} ({e})") from None
    net = fn()
    if not isinstance(net, nn.Module):
        raise ConfigError(f"backbone 'module:{spec}' returned {type(net).__name__}; expected a torch.nn.Module")
    # pretrained: the callable's weights as returned; scratch: the same module re-initialized.
    return net if pretrained else from_user_module(net, input_shape)
