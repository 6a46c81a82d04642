"""Fine-tuning recipes: which layers train, at which learning rate, and when.

All helpers work on a model with a ``backbone`` and ``heads`` (like
:class:`~polytask.methods.architectures.multitask.MultiTaskModel`) and read the backbone's stages with
:func:`backbone_layers`, input side first: the backbone's ``layer_groups()`` when it has
them (pretrained EfficientNet blocks, transformer layers), else
:func:`~polytask.methods.architectures.stagewise.stages_of`:

- :func:`select_trainable`: freeze all but the last ``k`` stages;
- :func:`layerwise_lr_groups`: discriminative learning rates, decaying from the head down
  (ULMFiT, Howard & Ruder 2018; BEiT's layer-wise decay);
- :class:`GradualUnfreeze`: ULMFiT's gradual unfreezing as an engine callback;
- :func:`freeze_batchnorm`: BatchNorm layers that stay in eval mode;
- :func:`lp_ft_phases`: linear probe, then full fine-tuning (LP-FT, Kumar et al. 2022).

Freezing is ``requires_grad = False``. A frozen parameter may still sit in the optimizer:
the engine zeroes gradients with ``set_to_none=True`` and AdamW skips parameters whose
gradient is ``None``, so it neither moves nor decays until it is unfrozen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from polytask.core.errors import ConfigError
from polytask.methods.architectures.stagewise import stages_of

__all__ = ["GradualUnfreeze", "Phase", "backbone_layers", "freeze_batchnorm", "layerwise_lr_groups", "lp_ft_phases", "select_trainable", "trainable_names"]


def backbone_layers(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's layers, input side first: its ``layer_groups()`` or its stages."""
    groups = getattr(backbone, "layer_groups", None)
    return list(groups()) if callable(groups) else stages_of(backbone)


def _parts(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    backbone, heads = getattr(model, "backbone", None), getattr(model, "heads", None)
    if not isinstance(backbone, nn.Module) or not isinstance(heads, nn.Module):
        raise ConfigError(f"fine-tuning recipes need a model with `backbone` and `heads` modules (like MultiTaskModel); got {type(model).__name__}")
    return backbone, heads


def _check_positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite number > 0; got {value!r}")


def select_trainable(backbone: nn.Module, layers: str | int = "all") -> list[nn.Module]:
    """Make only the last ``layers`` stages of ``backbone`` trainable; return those stages.

    Args:
        backbone: the pretrained shared layers (not the heads, which this leaves alone).
        layers: ``"all"`` (every stage trains) or ``k`` in ``0..n_stages``: the ``k``
            stages nearest the head train and the rest are frozen (``0``: feature
            extraction, only the heads train).

    Raises:
        ConfigError: when ``layers`` is neither ``"all"`` nor an integer in ``0..n_stages``.
    """
    stages = backbone_layers(backbone)
    if layers == "all":
        k = len(stages)
    elif isinstance(layers, int) and not isinstance(layers, bool):
        if not 0 <= layers <= len(stages):
            raise ConfigError(f"layers={layers} but backbone {type(backbone).__name__} has {len(stages)} stages; use 0..{len(stages)} or 'all'")
        k = layers
    else:
        raise ConfigError(f"layers must be 'all' or a number of stages; got {layers!r}")
    backbone.requires_grad_(False)
    trainable = stages[len(stages) - k :] if k else []
    for stage in trainable:
        stage.requires_grad_(True)
    return trainable


def layerwise_lr_groups(model: nn.Module, base_lr: float, decay: float, head_lr: float | None = None) -> list[dict[str, Any]]:
    """AdamW parameter groups with learning rates decaying from the head to the input.

    With ``n`` backbone stages, stage ``i`` (0 = input side) learns at
    ``base_lr · decay^(n − i)``: the last stage at ``base_lr · decay``, the one before at
    ``base_lr · decay²``, ...; the heads learn at ``head_lr`` (default ``base_lr``). Lower
    layers hold more general features, so they move least (ULMFiT's discriminative
    fine-tuning; BEiT's layer-wise decay).

    Every parameter is included, frozen or not, so that stages unfrozen later (by
    :class:`GradualUnfreeze`) are already in the optimizer.

    Returns:
        One group per stage (input side first), then the heads' group; each
        ``{"params": [...], "lr": float, "name": "stage<i>" | "heads"}``.

    Raises:
        ConfigError: for a non-positive rate, ``decay`` outside ``(0, 1]``, or a model
            parameter in neither a stage nor a head (it would never train).
    """
    _check_positive("base_lr", base_lr)
    if head_lr is not None:
        _check_positive("head_lr", head_lr)
    if not isinstance(decay, (int, float)) or isinstance(decay, bool) or not 0 < decay <= 1:
        raise ConfigError(f"decay must be in (0, 1]; got {decay!r}")
    backbone, heads = _parts(model)
    stages = backbone_layers(backbone)
    seen: set[int] = set()

    def fresh(params) -> list[nn.Parameter]:
        # A module shared by two stages (or a stage and a head) joins only the first group.
        out = [p for p in params if id(p) not in seen]
        seen.update(id(p) for p in out)
        return out

    n = len(stages)
    head_group = {"params": fresh(heads.parameters()), "lr": base_lr if head_lr is None else head_lr, "name": "heads"}
    stage_groups = [{"params": fresh(s.parameters()), "lr": base_lr * decay ** (n - i), "name": f"stage{i}"} for i, s in reversed(list(enumerate(stages)))]
    missing = [name for name, p in model.named_parameters() if id(p) not in seen]
    if missing:
        raise ConfigError(f"parameters {missing} are in no backbone stage and no head; layer-wise rates cannot place them")
    return [g for g in reversed(stage_groups) if g["params"]] + [head_group]


class GradualUnfreeze:
    """ULMFiT's gradual unfreezing (Howard & Ruder, ACL 2018) as an engine callback.

    Training starts with only the heads trainable; after every ``every`` epochs one more
    backbone stage, from the top (head side) down, is unfrozen: after epoch ``e`` the last
    ``min(e // every, n_stages)`` stages train.

    Construction freezes the whole backbone, because the first epoch must already be
    head-only and the engine has no start-of-training hook; build it before training.
    The optimizer is built before training too, so it must already hold the frozen
    stages' parameters: pass ``param_groups`` that include them (e.g.
    :func:`layerwise_lr_groups`), not the engine's default of the trainable parameters
    only. Until unfrozen they get no gradient, and AdamW skips them.

    Args:
        backbone: the pretrained shared layers.
        every: epochs between two unfreezings (default 1, as ULMFiT).

    Attributes:
        stages: the backbone's stages, input side first.
        n_trainable_: how many stages train now.
    """

    def __init__(self, backbone: nn.Module, every: int = 1):
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ConfigError(f"every must be an integer >= 1; got {every!r}")
        self.backbone, self.every = backbone, every
        self.stages = backbone_layers(backbone)
        self.n_trainable_ = len(select_trainable(backbone, 0))

    def on_epoch_end(self, epoch: int, max_epochs: int, record: dict[str, float]) -> None:
        """After epoch ``epoch`` (1-based), unfreeze the stages the schedule has reached."""
        k = min(epoch // self.every, len(self.stages))
        if k != self.n_trainable_:
            self.n_trainable_ = len(select_trainable(self.backbone, k))


_BATCHNORMS = (nn.modules.batchnorm._BatchNorm, nn.SyncBatchNorm)


def _keep_eval(module: nn.Module, inputs) -> None:
    # A forward pre-hook runs after any model.train() call, so the layer always normalizes
    # with its frozen running statistics and never updates them.
    module.training = False


def freeze_batchnorm(module: nn.Module, affine: bool = False) -> list[nn.Module]:
    """Keep every BatchNorm layer in ``module`` in eval mode, even after ``.train()``.

    Fine-tuning on a small target set with batch statistics shifts the pretrained running
    mean and variance towards a few noisy batches; frozen layers keep using (and keeping)
    the pretrained ones. A forward pre-hook resets each layer's ``training`` flag before
    every forward, so the engine's ``model.train()`` cannot undo it. Freezing twice
    registers one hook.

    Args:
        module: a model or backbone.
        affine: also freeze the layers' scale and shift (``weight``, ``bias``).

    Returns:
        The BatchNorm layers found (empty if none).
    """
    layers = [m for m in module.modules() if isinstance(m, _BATCHNORMS)]
    for m in layers:
        m.eval()
        if not getattr(m, "_polytask_frozen_bn", False):
            m.register_forward_pre_hook(_keep_eval)
            m._polytask_frozen_bn = True
        if affine:
            m.requires_grad_(False)
    return layers


@dataclass
class Phase:
    """One training run of a multi-phase recipe.

    Attributes:
        name: ``"linear-probe"`` or ``"fine-tune"``.
        epochs: how many epochs to train (the engine's ``max_epochs``).
        param_groups: AdamW groups for the engine's ``param_groups``.
        trainable: the parameters that train in this phase; :meth:`enter` freezes the rest
            of the model.
    """

    name: str
    epochs: int
    param_groups: list[dict[str, Any]]
    trainable: list[nn.Parameter] = field(repr=False)
    model: nn.Module = field(repr=False)

    def enter(self) -> Phase:
        """Set ``requires_grad`` for this phase: ``trainable`` on, every other parameter off."""
        chosen = {id(p) for p in self.trainable}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in chosen)
        return self


def lp_ft_phases(
    model: nn.Module,
    lp_epochs: int,
    ft_epochs: int,
    lp_lr: float,
    ft_lr: float,
    backbone_lr_ratio: float = 1.0,
) -> list[Phase]:
    """LP-FT (Kumar et al., "Fine-Tuning can Distort Pretrained Features and Underperform
    Out-of-Distribution", ICLR 2022): linear probe, then fine-tune everything.

    A randomly initialized head sends large, noisy gradients into the pretrained features
    early in fine-tuning and distorts them. Training the head alone first (the linear
    probe) means fine-tuning starts from a head that already fits the features.

    Run the phases in order on the same ``model``::

        for phase in lp_ft_phases(model, lp_epochs=5, ft_epochs=20, lp_lr=1e-2, ft_lr=1e-3):
            phase.enter()
            fit(model, data, train.model_copy(update={"max_epochs": phase.epochs}), seed, param_groups=phase.param_groups)

    The engine trains ``model`` in place (and restores its best epoch), so phase 2 starts
    from phase 1's head. During the probe the engine's ``model.train()`` still updates
    BatchNorm statistics and applies dropout in the backbone; call
    :func:`freeze_batchnorm` on the backbone for a probe on truly fixed features.

    Args:
        model: module with ``backbone`` and ``heads``.
        lp_epochs, ft_epochs: epochs of each phase (>= 1).
        lp_lr: learning rate of the head during the probe.
        ft_lr: learning rate of the head during fine-tuning.
        backbone_lr_ratio: backbone rate during fine-tuning as a fraction of ``ft_lr``.

    Returns:
        ``[linear-probe phase, fine-tune phase]``.
    """
    for name, value in (("lp_epochs", lp_epochs), ("ft_epochs", ft_epochs)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1; got {value!r}")
    for name, value in (("lp_lr", lp_lr), ("ft_lr", ft_lr), ("backbone_lr_ratio", backbone_lr_ratio)):
        _check_positive(name, value)
    backbone, heads = _parts(model)
    head_params, backbone_params = list(heads.parameters()), list(backbone.parameters())
    probe = Phase("linear-probe", lp_epochs, [{"params": head_params, "lr": lp_lr}], head_params, model)
    tune = Phase(
        "fine-tune",
        ft_epochs,
        [{"params": backbone_params, "lr": ft_lr * backbone_lr_ratio}, {"params": head_params, "lr": ft_lr}],
        backbone_params + head_params,
        model,
    )
    return [probe, tune]


def trainable_names(model: nn.Module) -> list[str]:
    """Names of the parameters that currently train (handy for logging a recipe)."""
    return [n for n, p in model.named_parameters() if p.requires_grad]
