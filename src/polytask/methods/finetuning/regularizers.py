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
import torch.nn.functional as F
from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.registry import Registry
from polytask.methods.architectures.stagewise import stages_of

__all__ = ["BSS", "DELTA", "L2SP", "LwF", "Penalty", "REGULARIZERS", "create_regularizer", "regularizer_names"]

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


def _stage_outputs(stage: nn.Module) -> nn.Module:
    """The innermost module whose output is ``stage``'s output.

    :func:`stages_of` may wrap a backbone's layers in new ``nn.Sequential`` containers
    that the backbone's own forward never calls, so a hook on the wrapper would never
    fire; the wrapper's last layer is called by the backbone and returns the same tensor.
    """
    while isinstance(stage, nn.Sequential) and len(stage) > 0:
        stage = stage[-1]
    return stage


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


@register_regularizer("l2-sp")
class L2SP(Penalty):
    """L2-SP (Li, Grandvalet & Davoine, "Explicit Inductive Bias for Transfer Learning with
    Convolutional Networks", ICML 2018), Eq. 3:

    ``Ω(w) = α/2 · ||w_S − w_S⁰||² + β/2 · ||w_S̄||²``

    where ``w_S`` are the backbone parameters that have a pretrained value ``w_S⁰`` (matched
    by name in ``start.backbone``) and ``w_S̄`` the rest: the new heads, and backbone
    parameters with no pretrained counterpart (e.g. adapters). Buffers (BatchNorm
    statistics) are not regularized.

    Args:
        start: the pretrained model; only ``start.backbone`` is read.
        alpha: strength of the pull towards the starting point (default 0.1).
        beta: weight decay of the new parameters (default 0.01).
    """

    def __init__(self, start: nn.Module | None, alpha: float = 0.1, beta: float = 0.01):
        _check_nonnegative(alpha=alpha, beta=beta)
        _reference_of(start, "l2-sp")
        super().__init__(start)
        self.alpha, self.beta = alpha, beta

    def attach(self, model: nn.Module) -> L2SP:
        super().attach(model)
        _check_reference(model, dict(self.start.backbone.named_parameters()), "l2-sp")
        return self

    def forward(self, model: nn.Module, x: torch.Tensor, task: str, y: torch.Tensor | None = None) -> torch.Tensor:
        reference = dict(self.start.backbone.named_parameters())
        current = dict(model.backbone.named_parameters())
        sp = 0.5 * sum((current[n] - w0).pow(2).sum() for n, w0 in reference.items())
        return self.alpha * sp + self.beta * _half_sq_norm(_new_parameters(model, reference), x)


@register_regularizer("delta")
class DELTA(Penalty):
    """DELTA (Li et al., "DELTA: Deep Learning Transfer using Feature Map with Attention for
    Convolutional Networks", ICLR 2019), Eqs. 3-5:

    ``Ω = α · Σ_l Σ_j W_lj · mean_n ||FM_lj(x_n; w) − FM_lj(x_n; w⁰)||² + β/2 · ||w_new||²``

    - ``FM_lj``: channel ``j`` (dim 1) of feature map ``l``, the output of each backbone
      stage (:func:`~polytask.methods.architectures.stagewise.stages_of`) with ``per_stage``, else of the
      whole backbone; ``||·||²`` sums over the map's positions (a vector feature has one),
      and the batch mean makes the penalty independent of batch size. ``w⁰`` is the frozen
      start, run in eval mode; the trained model's maps come from the attach hooks.
    - ``W_lj``: channel attention. With ``attention`` it comes from :meth:`fit_attention`:
      ``Δ_lj = L(start with channel j of map l zeroed) − L(start)`` on a sample batch, then
      ``W_l = C_l · softmax(standardize(Δ_l) / temperature)`` over the ``C_l`` channels of
      map ``l``. Standardizing and the temperature 5 follow the reference implementation
      (TLlib); the factor ``C_l`` makes the weights average 1, so ``attention=False``
      (every ``W_lj = 1``) is the same penalty with uniform weights.
    - ``w_new``: parameters without a pretrained value (the heads), as in :class:`L2SP`.

    Zeroing a channel of the stage output stands in for the paper's zeroing of a filter's
    weights: it removes the channel's contribution even when BatchNorm follows the conv.

    Args:
        start: the pretrained model, with ``heads`` holding a head for the task
            :meth:`fit_attention` is given (the paper first trains that head on frozen
            features, e.g. the linear-probe phase of :func:`~polytask.methods.finetuning.recipes.lp_ft_phases`).
        alpha: strength of the feature-map term (default 0.01, as TLlib).
        beta: weight decay of the new parameters (default 0.01, as TLlib).
        attention: weight channels by :meth:`fit_attention` (True, the paper) or uniformly.
        per_stage: regularize every stage's output (True, the paper's several layers) or
            only the backbone's output.
        temperature: softmax temperature of the attention (default 5).
    """

    uses_features = True

    def __init__(
        self,
        start: nn.Module | None,
        alpha: float = 0.01,
        beta: float = 0.01,
        attention: bool = True,
        per_stage: bool = True,
        temperature: float = 5.0,
    ):
        _check_nonnegative(alpha=alpha, beta=beta)
        _check_positive(temperature=temperature)
        if not isinstance(attention, bool) or not isinstance(per_stage, bool):
            raise ConfigError(f"attention and per_stage must be booleans; got attention={attention!r}, per_stage={per_stage!r}")
        _reference_of(start, "delta")
        super().__init__(start)
        self.alpha, self.beta, self.attention, self.per_stage, self.temperature = alpha, beta, attention, per_stage, temperature
        self._start_stages = stages_of(self.start.backbone) if per_stage else [self.start.backbone]
        self.channel_weights_: list[torch.Tensor] | None = None

    def _hook_targets(self, model: nn.Module) -> list[nn.Module]:
        backbone = _backbone_of(model, "the fine-tuned model")
        if not self.per_stage:
            return [backbone]
        stages = stages_of(backbone)
        if len(stages) != len(self._start_stages):
            raise ConfigError(f"'delta': the model's backbone has {len(stages)} stages but the start's has {len(self._start_stages)}")
        return [_stage_outputs(s) for s in stages]

    def attach(self, model: nn.Module) -> DELTA:
        super().attach(model)
        _check_reference(model, dict(self.start.backbone.named_parameters()), "delta")
        return self

    @torch.no_grad()
    def start_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The start's feature maps on ``x`` (one per stage with ``per_stage``)."""
        maps, h = [], x
        for stage in self._start_stages:
            h = stage(h)
            maps.append(h)
        return maps

    @torch.no_grad()
    def fit_attention(self, x: torch.Tensor, y: torch.Tensor, loss_fn, task: str) -> DELTA:
        """Compute the channel weights ``W`` on a sample batch ``(x, y)``; returns ``self``.

        Args:
            x, y: a sample batch of the target task (inputs, encoded targets).
            loss_fn: ``loss_fn(output, y) -> scalar``, e.g. ``Task.loss``.
            task: key of the target head in ``start.heads``.
        """
        heads = getattr(self.start, "heads", None)
        if heads is None or task not in heads:
            known = ", ".join(heads) if heads is not None else "none"
            raise ConfigError(f"'delta' attention needs a head for task '{task}' in the start model (heads: {known})")
        head = heads[task]
        maps = self.start_features(x)
        base = float(loss_fn(head(maps[-1]), y))
        weights = []
        for level, fmap in enumerate(maps):
            increases = torch.empty(fmap.shape[1], dtype=torch.float64)
            for j in range(fmap.shape[1]):
                h = fmap.clone()
                h[:, j] = 0.0
                for stage in self._start_stages[level + 1 :]:
                    h = stage(h)
                increases[j] = float(loss_fn(head(h), y)) - base
            std = increases.std(unbiased=False)
            z = (increases - increases.mean()) / std if std > 0 else torch.zeros_like(increases)
            weights.append((len(z) * torch.softmax(z / self.temperature, dim=0)).to(fmap.dtype))
        self.channel_weights_ = weights
        return self

    def _weights(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        if not self.attention:
            return [m.new_ones(m.shape[1]) for m in maps]
        if self.channel_weights_ is None:
            raise RuntimeError("DELTA(attention=True) needs fit_attention(x, y, loss_fn, task) before training")
        return [w.to(m.device) for w, m in zip(self.channel_weights_, maps)]

    def forward(self, model: nn.Module, x: torch.Tensor, task: str, y: torch.Tensor | None = None) -> torch.Tensor:
        maps = self.features(x)
        targets = self.start_features(x)
        behaviour = x.new_zeros(())
        for fmap, target, w in zip(maps, targets, self._weights(maps)):
            sq = (fmap - target).pow(2)
            per_channel = sq.flatten(2).sum(2) if sq.ndim > 2 else sq  # (batch, channels)
            behaviour = behaviour + (per_channel * w).sum(1).mean()
        reference = dict(self.start.backbone.named_parameters())
        return self.alpha * behaviour + self.beta * _half_sq_norm(_new_parameters(model, reference), x)


@register_regularizer("bss")
class BSS(Penalty):
    """Batch Spectral Shrinkage (Chen et al., "Catastrophic Forgetting Meets Negative
    Transfer: Batch Spectral Shrinkage for Safe Transfer Learning", NeurIPS 2019), Eq. 5:

    ``L_bss = η · Σ_{i=1..k} σ_{-i}²``

    the squares of the ``k`` smallest singular values of the batch feature matrix ``F``
    (backbone output, one flattened row per sample; ``min(batch, features)`` singular
    values), which shrinks the feature directions the small target set cannot support.

    Args:
        start: ignored (BSS needs no pretrained reference); accepted for the uniform
            constructor.
        eta: strength (default 0.001).
        k: how many of the smallest singular values to shrink (default 1).
    """

    uses_features = True

    def __init__(self, start: nn.Module | None = None, eta: float = 0.001, k: int = 1):
        _check_nonnegative(eta=eta)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"k must be an integer >= 1; got {k!r}")
        super().__init__(None)
        self.eta, self.k = eta, k

    def forward(self, model: nn.Module, x: torch.Tensor, task: str, y: torch.Tensor | None = None) -> torch.Tensor:
        f = self.features(x)[-1].flatten(1)
        sigma = torch.linalg.svdvals(f)  # descending
        if self.k > len(sigma):
            raise ValueError(f"bss: k={self.k} exceeds the {len(sigma)} singular values of a {tuple(f.shape)} feature batch")
        return self.eta * sigma[-self.k :].pow(2).sum()


@register_regularizer("lwf")
class LwF(Penalty):
    """Learning without Forgetting (Li & Hoiem, TPAMI 2017), Eqs. 2-3:

    ``L_old = λ · Σ_t mean_n [ −Σ_i y'_ti · log ŷ'_ti ]``,
    ``y' = softmax(z_old / T)``, ``ŷ' = softmax(z_new / T)``

    — the paper's modified cross-entropy (``y_i^{1/T} / Σ_j y_j^{1/T}`` of softmax outputs
    is ``softmax(z / T)``). It equals ``KL(y' || ŷ')`` plus the targets' entropy, a
    constant, so the gradients are those of the KL form.

    - ``z_old``: the old task ``t``'s head in the frozen start model on the current batch
      (the paper records these before training; the start is frozen and in eval mode, so
      computing them on the fly gives the same values).
    - ``z_new``: a copy of that old head applied to the trained backbone's features
      (captured by the attach hook). The fine-tuned model has no old heads, so the penalty
      owns them (``self.old_heads``); as in the paper they train jointly with the new task
      unless ``train_old_heads`` is False. Add :meth:`trainable_parameters` to the
      optimizer.
    - A one-output head is a binary logit ``z``, read as the two logits ``[0, z]``
      (``softmax([0, z] / T)`` is ``[1 − σ(z/T), σ(z/T)]``). Regression heads have no
      class distribution: leave them out with ``tasks``.

    Args:
        start: the pretrained model with ``backbone`` and ``heads`` of the old tasks,
            callable as ``start.heads[t](start.backbone(x))``.
        lam: weight λ_o of the old-task loss (default 1).
        temperature: T (default 2).
        tasks: old tasks to preserve (default: every head of ``start``).
        train_old_heads: train the copied old heads (True, the paper) or keep them fixed.
    """

    uses_features = True

    def __init__(
        self,
        start: nn.Module | None,
        lam: float = 1.0,
        temperature: float = 2.0,
        tasks: Sequence[str] | None = None,
        train_old_heads: bool = True,
    ):
        _check_nonnegative(lam=lam)
        _check_positive(temperature=temperature)
        _reference_of(start, "lwf")
        heads = getattr(start, "heads", None)
        if not isinstance(heads, nn.ModuleDict) or len(heads) == 0:
            raise ConfigError("'lwf' needs the start model's old-task `heads` (a non-empty nn.ModuleDict)")
        tasks = list(heads) if tasks is None else list(tasks)
        unknown = [t for t in tasks if t not in heads]
        if not tasks or unknown:
            raise ConfigError(f"'lwf': tasks {unknown or tasks} are not old tasks of the start model (heads: {', '.join(heads)})")
        super().__init__(start)
        self.lam, self.temperature, self.tasks, self.train_old_heads = lam, temperature, tasks, train_old_heads
        self.old_heads = nn.ModuleDict({t: copy.deepcopy(heads[t]) for t in tasks})
        self.old_heads.requires_grad_(bool(train_old_heads))

    @staticmethod
    def _logits(z: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(z), z], dim=1) if z.shape[1] == 1 else z

    def forward(self, model: nn.Module, x: torch.Tensor, task: str, y: torch.Tensor | None = None) -> torch.Tensor:
        features = self.features(x)[-1]
        with torch.no_grad():
            start_features = self.start.backbone(x)
        total = x.new_zeros(())
        for t in self.tasks:
            z_old = self._logits(self.start.heads[t](start_features))
            z_new = self._logits(self.old_heads[t](features))
            soft_targets = F.softmax(z_old / self.temperature, dim=1)
            total = total - (soft_targets * F.log_softmax(z_new / self.temperature, dim=1)).sum(1).mean()
        return self.lam * total
