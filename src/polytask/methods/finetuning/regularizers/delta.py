"""``delta``: DELTA (Li et al., ICLR 2019), attention-weighted distance between the trained
model's feature maps and the pretrained start's."""

from __future__ import annotations

import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.methods.architectures.stagewise import stages_of
from polytask.methods.finetuning.regularizers.base import (
    Penalty,
    _backbone_of,
    _check_nonnegative,
    _check_positive,
    _check_reference,
    _half_sq_norm,
    _new_parameters,
    _reference_of,
    register_regularizer,
)

__all__ = ["DELTA"]


def _stage_outputs(stage: nn.Module) -> nn.Module:
    """The innermost module whose output is ``stage``'s output.

    :func:`stages_of` may wrap a backbone's layers in new ``nn.Sequential`` containers
    that the backbone's own forward never calls, so a hook on the wrapper would never
    fire; the wrapper's last layer is called by the backbone and returns the same tensor.
    """
    while isinstance(stage, nn.Sequential) and len(stage) > 0:
        stage = stage[-1]
    return stage


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
            loss_fn: ``loss_fn(output, y) -> scalar``, e.g. ``functools.partial(task_loss, task)``.
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
