"""Fine-tuning regularizers: extra losses that keep a fine-tuned model near its start.

Every regularizer is a :class:`Penalty` registered in :data:`REGULARIZERS` and built the
same way::

    penalty = create_regularizer(name, start, **hparams)   # start: the pretrained model
    penalty.to(device).attach(model)                       # once, before training
    ...
    out = model(x, task)                                   # each step: the model's forward,
    loss = task_loss(out, y) + penalty(model, x, task, y)  # then the penalty on the same x

- ``start`` is the model fine-tuning starts from: a module with a ``backbone`` (the
  pretrained shared layers) and, where a penalty needs them, ``heads`` (an
  ``nn.ModuleDict`` task -> head), like :class:`~polytask.methods.architectures.multitask.MultiTaskModel`.
  The penalty keeps a frozen deep copy in eval mode (``penalty.start``); the caller's
  module is not touched. :class:`BSS` needs no start and accepts ``None``.
- :meth:`Penalty.attach` registers a forward hook on ``model.backbone`` (or on its stages)
  that keeps the last output computed in training mode with gradients enabled, so a
  penalty reads the trained model's features without running it a second time. Call the
  penalty right after the forward on ``x``: a later forward (another task's batch)
  replaces the captured features, and each capture serves one penalty call.
- :meth:`Penalty.trainable_parameters` lists the penalty's own trainable parameters
  (LwF's copy of the old heads); the optimizer must include them.

Regularizers (each with its paper's defaults):

- ``l2-sp``: :class:`L2SP` (Li, Grandvalet & Davoine, ICML 2018);
- ``delta``: :class:`DELTA` (Li et al., ICLR 2019);
- ``bss``: :class:`BSS` (Chen et al., NeurIPS 2019);
- ``lwf``: :class:`LwF` (Li & Hoiem, TPAMI 2017).

AdamW's decoupled weight decay pulls every weight towards zero; with ``l2-sp`` or
``delta`` it fights the pull towards the start, so those runs should use
``weight_decay = 0``.
"""

from __future__ import annotations

import abc
import copy
import functools
import math
from collections.abc import Sequence

import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.registry import Registry

__all__ = ["Penalty", "REGULARIZERS", "create_regularizer", "register_regularizer", "regularizer_names"]

REGULARIZERS: Registry[type[Penalty]] = Registry("fine-tuning regularizer")


def register_regularizer(name: str):
    """Decorator registering a fine-tuning regularizer under ``name``; a duplicate name raises."""
    return REGULARIZERS.register(name)


def create_regularizer(name: str, start: nn.Module | None = None, **hparams) -> Penalty:
    """Build the registered regularizer ``name`` as ``cls(start, **hparams)``.

    Raises:
        ConfigError: for an unknown name (the message lists the known ones) or a bad
            hyperparameter.
    """
    return REGULARIZERS.get_item(name)(start, **hparams)


def regularizer_names() -> list[str]:
    """Registered regularizer names."""
    return REGULARIZERS.names()


def _check_nonnegative(**values: float) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name} must be a finite number >= 0; got {value!r}")


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{name} must be a finite number > 0; got {value!r}")


def _backbone_of(model: nn.Module, role: str) -> nn.Module:
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise ConfigError(f"{role} must have a `backbone` module (like MultiTaskModel); got {type(model).__name__}")
    return backbone


def _frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy that never trains: no gradients, eval mode (no dropout, fixed BatchNorm)."""
    twin = copy.deepcopy(module)
    twin.requires_grad_(False)
    return twin.eval()


def _new_parameters(model: nn.Module, reference: dict[str, torch.Tensor]) -> list[nn.Parameter]:
    """Parameters with no pretrained value: everything outside ``model.backbone`` (the new
    heads) plus backbone parameters whose name has no entry in ``reference`` (adapters)."""
    backbone = model.backbone
    in_backbone = {id(p) for p in backbone.parameters()}
    new = [p for p in model.parameters() if id(p) not in in_backbone]
    new += [p for n, p in backbone.named_parameters() if n not in reference]
    return new


def _half_sq_norm(params: Sequence[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """``1/2 * sum ||p||^2``; a zero on ``like``'s device when there are no parameters."""
    if not params:
        return like.new_zeros(())
    return 0.5 * sum(p.pow(2).sum() for p in params)


class Penalty(nn.Module, abc.ABC):
    """Base class: an extra training loss computed once per step.

    Args:
        start: the model fine-tuning starts from (see the module docstring); a frozen
            copy is kept as ``self.start``. ``None`` for penalties that need none.

    Subclasses set ``uses_features`` when they read the trained backbone's output (hooked
    by :meth:`attach`) and implement :meth:`forward`.
    """

    uses_features = False

    def __init__(self, start: nn.Module | None = None):
        super().__init__()
        self.start = None if start is None else _frozen_copy(start)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._captured: list[torch.Tensor | None] = []

    def train(self, mode: bool = True) -> Penalty:
        """Set the mode of the penalty's own modules; the start copy stays in eval mode."""
        super().train(mode)
        if self.start is not None:
            self.start.eval()
        return self

    def _hook_targets(self, model: nn.Module) -> list[nn.Module]:
        """Modules whose outputs are the features this penalty reads: the backbone."""
        return [_backbone_of(model, "the fine-tuned model")]

    def attach(self, model: nn.Module) -> Penalty:
        """Prepare for training ``model``: register the feature hooks (if any); returns ``self``.

        Attaching again first removes the hooks of the previous attach.
        """
        self.detach()
        _backbone_of(model, "the fine-tuned model")
        if self.uses_features:
            targets = self._hook_targets(model)
            self._captured = [None] * len(targets)
            self._handles = [m.register_forward_hook(functools.partial(self._capture, i)) for i, m in enumerate(targets)]
        return self

    def detach(self) -> None:
        """Remove the hooks registered by :meth:`attach`."""
        for handle in self._handles:
            handle.remove()
        self._handles, self._captured = [], []

    def _capture(self, index: int, module: nn.Module, inputs, output: torch.Tensor) -> None:
        # Evaluation and no-grad probes (validation, FAMO's after-step losses) must not
        # replace the training features the penalty differentiates through.
        if module.training and torch.is_grad_enabled():
            self._captured[index] = output

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The trained model's hooked outputs for the batch ``x`` it just ran on.

        Raises:
            RuntimeError: before :meth:`attach`, before any training forward, or when the
                captured batch is not ``x``'s size (the penalty was called late).
        """
        if not self._handles:
            raise RuntimeError(f"{type(self).__name__}: call attach(model) before training")
        if any(f is None for f in self._captured):
            raise RuntimeError(f"{type(self).__name__}: no training-mode forward of the model seen; call the penalty right after model(x, task)")
        if any(f.shape[0] != x.shape[0] for f in self._captured):
            raise RuntimeError(
                f"{type(self).__name__}: captured features are for a batch of {self._captured[0].shape[0]} rows, not this batch of {x.shape[0]}; "
                "call the penalty right after the model's forward on x"
            )
        maps = list(self._captured)
        # One capture serves one penalty call: a second call without a new forward would
        # silently reuse stale features (and keep their graph alive).
        self._captured = [None] * len(maps)
        return maps

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The penalty's own trainable parameters, which the optimizer must include."""
        return [p for p in self.parameters() if p.requires_grad]

    @abc.abstractmethod
    def forward(self, model: nn.Module, x: torch.Tensor, task: str, y: torch.Tensor | None = None) -> torch.Tensor:
        """Extra loss for this step; ``x`` is the batch ``model`` just ran on for ``task``."""


def _reference_of(start: nn.Module | None, name: str) -> nn.Module:
    if start is None:
        raise ConfigError(f"regularizer '{name}' needs the pretrained start model (with a `backbone`)")
    return _backbone_of(start, f"the start model of '{name}'")


def _check_reference(model: nn.Module, reference: dict[str, torch.Tensor], name: str) -> None:
    """Every pretrained parameter must exist in the model's backbone with the same shape."""
    current = dict(model.backbone.named_parameters())
    missing = [n for n in reference if n not in current]
    if missing:
        raise ConfigError(f"'{name}': the model's backbone lacks pretrained parameters {missing} (it has: {', '.join(current)})")
    wrong = [f"{n} {tuple(current[n].shape)} vs {tuple(t.shape)}" for n, t in reference.items() if current[n].shape != t.shape]
    if wrong:
        raise ConfigError(f"'{name}': backbone parameter shapes differ from the pretrained ones: {'; '.join(wrong)}")
