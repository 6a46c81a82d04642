"""LoRA adapters on plain PyTorch modules (Hu et al., "LoRA: Low-Rank Adaptation of Large
Language Models", ICLR 2022), through ``peft``.

An adapted layer computes ``W x + (α / r) · B A x``: the pretrained ``W`` stays frozen and
only ``A`` (``r × in``) and ``B`` (``out × r``, zero at the start, so the adapted model
begins as the pretrained one) train; an adapted ``Linear`` adds ``r · (in + out)``
trainable parameters. :func:`merge_lora` folds ``(α / r) · B A`` into ``W`` and returns
plain layers, so inference costs nothing extra.

``peft`` is an optional dependency, imported when these functions run.
"""

from __future__ import annotations

import re

from torch import nn

from polytask.core.errors import ConfigError

__all__ = ["apply_lora", "lora_targets", "merge_lora"]

def _peft():
    try:
        import peft
    except ImportError as e:
        raise ConfigError(f"LoRA needs the optional dependency peft ({e}): pip install 'polytask[lora]'") from None
    return peft


def _adaptable(m: nn.Module) -> bool:
    """Layers peft can wrap: exactly ``nn.Linear``, or ``nn.Conv2d`` without groups.

    peft rebuilds a conv's LoRA factors with the layer's own class, so a subclass with a
    different constructor (EfficientNet's static-padding convs) fails, and depthwise convs
    have no low-rank form there; both are left out.
    """
    if type(m) is nn.Linear:
        return True
    return type(m) is nn.Conv2d and m.groups == 1


def lora_targets(module: nn.Module, target_modules: list[str] | None = None) -> list[str]:
    """Full names of the submodules LoRA adapts.

    Args:
        module: the module to adapt.
        target_modules: names matched as peft does, a full name or its last dotted parts
            (``"fc"`` matches ``"block.fc"``); ``None``: every ``nn.Linear`` and
            ``nn.Conv2d``.

    Raises:
        ConfigError: when a given name matches nothing or matches a layer LoRA cannot
            adapt (the message lists the adaptable layers), or nothing is adaptable.
    """
    layers = {name: m for name, m in module.named_modules() if name and _adaptable(m)}
    if target_modules is None:
        if not layers:
            raise ConfigError(f"{type(module).__name__} has no plain nn.Linear or nn.Conv2d layer (groups=1) for LoRA to adapt")
        return list(layers)
    if isinstance(target_modules, str) or not target_modules:
        raise ConfigError(f"target_modules must be a non-empty list of module names; got {target_modules!r}")
    names = [name for name, _ in module.named_modules() if name]
    chosen: list[str] = []
    for target in target_modules:
        matched = [n for n in names if n == target or n.endswith("." + target)]
        if not matched:
            raise ConfigError(f"LoRA target '{target}' matches no module (adaptable: {', '.join(layers) or 'none'})")
        unsupported = [n for n in matched if n not in layers]
        if unsupported:
            adaptable = ", ".join(layers) or "none"
            raise ConfigError(f"LoRA target '{target}' matches {unsupported}, which are not nn.Linear or nn.Conv2d (adaptable: {adaptable})")
        chosen += [n for n in matched if n not in chosen]
    return chosen


def apply_lora(module: nn.Module, r: int = 8, alpha: float = 16, dropout: float = 0.0, target_modules: list[str] | None = None) -> nn.Module:
    """Add LoRA adapters to ``module`` in place and make them its only trainable parameters.

    Args:
        module: any ``nn.Module`` (e.g. a backbone); it keeps its class and forward.
        r: rank of the update ``B A``.
        alpha: scale numerator; the update is multiplied by ``alpha / r``.
        dropout: dropout on the adapter's input during training.
        target_modules: layers to adapt, see :func:`lora_targets`; default every
            ``nn.Linear`` and ``nn.Conv2d``.

    Returns:
        ``module`` itself, adapted.

    Raises:
        ConfigError: for bad hyperparameters or targets.
    """
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise ConfigError(f"LoRA rank r must be an integer >= 1; got {r!r}")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha <= 0:
        raise ConfigError(f"LoRA alpha must be a number > 0; got {alpha!r}")
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ConfigError(f"LoRA dropout must be in [0, 1); got {dropout!r}")
    names = lora_targets(module, target_modules)
    peft = _peft()
    # A full-match regex adapts exactly the resolved layers; a list would be suffix-matched
    # again by peft and could catch other modules whose names end the same way.
    pattern = "|".join(re.escape(n) for n in names)
    config = peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=f"^(?:{pattern})$")
    module = peft.inject_adapter_in_model(config, module)
    for name, p in module.named_parameters():
        p.requires_grad_("lora_" in name)
    return module


def merge_lora(module: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base layer and remove the adapters, in place.

    Each adapted layer becomes its original layer type with ``W ← W + (α / r) · B A``, so
    outputs are unchanged and the result has no ``peft`` modules. The merged weights keep
    the ``requires_grad`` of the frozen base weights (False).

    Returns:
        ``module`` itself, now plain.
    """
    lora_layer = _peft().tuners.lora.LoraLayer
    adapted = [(name, m) for name, m in module.named_modules() if isinstance(m, lora_layer)]
    for name, layer in adapted:
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, layer.get_base_layer())
    return module
