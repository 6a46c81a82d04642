"""Stage-based multi-task sharing: cross-stitch networks and MTAN-style task attention.

Both architectures need the backbone as a sequence of stages (:func:`stages_of`) whose
composition is the backbone's forward:

- :func:`build_cross_stitch`: one backbone per task, with learned linear mixing of the task
  activations after every stage but the last (Misra et al., "Cross-stitch Networks for
  Multi-task Learning", CVPR 2016).
- :func:`build_mtan`: one shared backbone, with per-task soft attention masks after every
  stage (Liu et al., "End-to-End Multi-Task Learning with Attention", CVPR 2019).

Every model has ``forward(x, task_name)``, per-task linear ``heads``,
``shared_parameters()`` and ``out_features``, like
:class:`~polytask.methods.architectures.multitask.MultiTaskModel`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.tasks import Task
from polytask.methods.architectures.base import register_architecture
from polytask.methods.backbones.cnn import CNN
from polytask.methods.backbones.mlp import MLP

__all__ = ["CrossStitchModel", "CrossStitchUnit", "MTANModel", "TaskAttention", "build_cross_stitch", "build_mtan", "stages_of"]


def stages_of(backbone: nn.Module) -> list[nn.Module]:
    """The backbone as a list of stages whose composition equals ``backbone(x)``.

    The stages hold the backbone's own submodules (no copies), so training them trains
    the backbone.

    - polytask's :class:`~polytask.methods.backbones.base.MLP`: one stage per
      ``Linear -> ReLU -> Dropout`` block, the leading ``Flatten`` folded into the first.
    - polytask's :class:`~polytask.methods.backbones.base.CNN`: one stage per
      ``Conv -> BatchNorm -> ReLU -> Pool`` block, then ``Flatten`` + the hidden linear
      layer as the last stage.
    - any other module: its ``stages`` attribute (list, ``ModuleList`` or ``Sequential``)
      if it has one, else the children of an ``nn.Sequential``.

    Raises:
        ConfigError: for a module that is neither an ``nn.Sequential`` nor exposes ``stages``.
    """
    if type(backbone) is MLP:
        layers = list(backbone.net)
        flatten, blocks = layers[0], layers[1:]
        if not blocks:
            return [nn.Sequential(flatten)]
        stages = [nn.Sequential(*blocks[i : i + 3]) for i in range(0, len(blocks), 3)]
        stages[0] = nn.Sequential(flatten, *stages[0])
        return stages
    if type(backbone) is CNN:
        layers = list(backbone.features)
        convs, flatten = layers[:-1], layers[-1]
        stages = [nn.Sequential(*convs[i : i + 4]) for i in range(0, len(convs), 4)]
        return stages + [nn.Sequential(flatten, *backbone.head)]
    stages = getattr(backbone, "stages", None)
    if isinstance(stages, (list, tuple, nn.ModuleList, nn.Sequential)):
        stages = list(stages)
        if not stages or not all(isinstance(s, nn.Module) for s in stages):
            raise ConfigError(f"backbone {type(backbone).__name__}.stages must be a non-empty list of nn.Module stages")
        return stages
    if isinstance(backbone, nn.Sequential) and len(backbone) > 0:
        return list(backbone.children())
    raise ConfigError(
        f"stage-based architectures need a backbone that is an nn.Sequential or exposes `stages` (a list of modules); got {type(backbone).__name__}"
    )


def _stage_shapes(stages: list[nn.Module], input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Per-sample output shape of each stage, from one no-grad forward pass in eval mode."""
    modes = [s.training for s in stages]
    for s in stages:
        s.eval()  # BatchNorm statistics must not move from a dummy batch
    shapes = []
    try:
        with torch.no_grad():
            h = torch.zeros(2, *input_shape)
            for s in stages:
                h = s(h)
                shapes.append(tuple(h.shape[1:]))
    finally:
        for s, mode in zip(stages, modes):
            s.train(mode)
    return shapes


def _feature_width(shapes: list[tuple[int, ...]], backbone: nn.Module) -> int:
    """Width of the last stage's output, which must be a feature vector per sample."""
    if len(shapes[-1]) != 1:
        raise ConfigError(f"backbone {type(backbone).__name__}: last stage returns samples of shape {shapes[-1]}; expected (features,)")
    return shapes[-1][0]


class CrossStitchUnit(nn.Module):
    """Learned linear mixing of T task activations (Misra et al. 2016, Eq. 1).

    ``x̃_t = Σ_s α[t, s, c] · x_s`` where ``c`` indexes dim 1 of the activation: channels
    of a conv map (the paper's per-channel units) and units of a feature vector (per
    neuron), so the same rule covers every stage shape.

    Attributes:
        alpha: ``(T, T, C)`` mixing weights; diagonal ``init_self``, off-diagonal
            ``(1 - init_self) / (T - 1)`` so every row sums to 1 at initialization.
    """

    def __init__(self, n_tasks: int, channels: int, init_self: float = 0.9):
        super().__init__()
        if n_tasks == 1:
            init = torch.ones(1, 1)  # nothing to mix with: start as the identity, not a 0.9 rescaling
        else:
            init = torch.full((n_tasks, n_tasks), (1.0 - init_self) / (n_tasks - 1))
            init.fill_diagonal_(init_self)
        self.alpha = nn.Parameter(init.unsqueeze(-1).repeat(1, 1, channels))

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        """Mix ``xs`` of shape ``(T, N, C, ...)`` into the same shape."""
        return torch.einsum("tsc,snc...->tnc...", self.alpha, xs)


class CrossStitchModel(nn.Module):
    """Cross-stitch network (Misra et al., CVPR 2016): a backbone column per task, mixed by
    :class:`CrossStitchUnit` after every stage but the last.

    Backbones are task-specific; the cross-stitch ``alpha`` weights are the only parameters
    more than one task uses, so :meth:`shared_parameters` returns just those.

    Attributes:
        task_names: tasks in column order.
        columns: per task, the ``ModuleList`` of its backbone's stages.
        units: one cross-stitch unit per stage boundary (``n_stages - 1``).
        heads: one ``nn.Linear(out_features, n_outputs)`` per task.
        out_features: width of each column's last stage.
    """

    def __init__(self, backbones: list[nn.Module], input_shape: tuple[int, ...], tasks: list[Task], init_self: float = 0.9):
        super().__init__()
        if not tasks:
            raise ConfigError("cross-stitch needs at least one task")
        stage_lists = [stages_of(b) for b in backbones]
        shapes = [_stage_shapes(s, input_shape) for s in stage_lists]
        if any(s != shapes[0] for s in shapes):
            raise ConfigError("cross-stitch needs identical backbones per task; new_backbone() returned backbones with different stage shapes")
        self.task_names = [t.name for t in tasks]
        self.columns = nn.ModuleDict({t.name: nn.ModuleList(s) for t, s in zip(tasks, stage_lists)})
        self.units = nn.ModuleList(CrossStitchUnit(len(tasks), shape[0], init_self) for shape in shapes[0][:-1])
        self.out_features = _feature_width(shapes[0], backbones[0])
        self.heads = nn.ModuleDict({t.name: nn.Linear(self.out_features, t.n_outputs) for t in tasks})

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        """Head output of ``task``.

        The columns interact through the cross-stitch units, so every task's column is
        computed up to the last unit; only the last stage runs for ``task`` alone, since
        nothing mixes after it.
        """
        columns = [self.columns[name] for name in self.task_names]
        xs = torch.stack([col[0](x) for col in columns]) if self.units else None
        for j, unit in enumerate(self.units):
            xs = unit(xs)
            if j + 1 < len(self.units):
                xs = torch.stack([col[j + 1](xs[i]) for i, col in enumerate(columns)])
        i = self.task_names.index(task)
        h = columns[i][-1](xs[i]) if self.units else columns[i][0](x)
        return self.heads[task](h)

    def shared_parameters(self) -> list[nn.Parameter]:
        """The cross-stitch ``alpha`` weights: the only parameters several tasks use."""
        return [u.alpha for u in self.units]


@register_architecture("cross-stitch")
def build_cross_stitch(new_backbone: Callable[[], nn.Module], input_shape: tuple[int, ...], tasks: list[Task], init_self: float = 0.9) -> nn.Module:
    """Cross-stitch network over one ``new_backbone()`` per task (Misra et al., CVPR 2016).

    Args:
        new_backbone: zero-argument factory of a freshly initialized backbone.
        input_shape: shape of one input sample.
        tasks: the tasks, one backbone column and head each.
        init_self: initial weight of a task's own activation; the rest is split evenly
            over the other tasks (the paper's (0.9, 0.1) for two tasks).
    """
    return CrossStitchModel([new_backbone() for _ in tasks], tuple(input_shape), tasks, init_self)


def _channel_layer(shape: tuple[int, ...], in_channels: int, out_channels: int) -> nn.Module:
    """A per-position layer over dim 1: ``Linear`` for vectors, a 1x1 conv for 1-3-D maps."""
    if len(shape) == 1:
        return nn.Linear(in_channels, out_channels)
    conv = {2: nn.Conv1d, 3: nn.Conv2d, 4: nn.Conv3d}.get(len(shape))
    if conv is None:
        raise ConfigError(f"MTAN attention supports stage outputs of 1 to 4 dims per sample; got {shape}")
    return conv(in_channels, out_channels, 1)


class TaskAttention(nn.Module):
    """One task's attention module after one stage (after Liu et al. 2019, Fig. 2).

    ``mask = sigmoid(h([shared, project(previous)]))`` and the output is ``mask ⊙ shared``,
    where ``h`` is a 1x1 conv (maps) or ``Linear`` (vectors). The previous level's attended
    feature is projected to this stage's shape when that is well defined:

    - map -> map of the same rank: 1x1 conv to this stage's channels, then adaptive average
      pooling to its spatial size (the paper downsamples with pooling too);
    - anything -> vector: global average over spatial dims, then ``Linear``.

    Otherwise (first stage, or vector -> map) the mask conditions only on the shared feature.
    """

    def __init__(self, shape: tuple[int, ...], prev_shape: tuple[int, ...] | None):
        super().__init__()
        channels = shape[0]
        self.project: nn.Module | None = None
        if prev_shape is not None and (len(shape) == 1 or len(prev_shape) == len(shape)):
            self.project = _channel_layer(shape if len(shape) == 1 else prev_shape, prev_shape[0], channels)
        self.size = shape[1:]
        self.mask = _channel_layer(shape, channels * (2 if self.project is not None else 1), channels)

    def _projected(self, prev: torch.Tensor) -> torch.Tensor:
        if len(self.size) == 0:
            return self.project(prev.flatten(2).mean(2) if prev.ndim > 2 else prev)
        pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[len(self.size)]
        return pool(self.project(prev), self.size)

    def forward(self, shared: torch.Tensor, prev: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mask ⊙ shared, mask)``."""
        g = shared if self.project is None or prev is None else torch.cat([shared, self._projected(prev)], dim=1)
        mask = torch.sigmoid(self.mask(g))
        return mask * shared, mask


class MTANModel(nn.Module):
    """Shared backbone with per-task attention after every stage (Liu et al., CVPR 2019).

    The shared stages run once, unchanged by the tasks; each task's attention chain reads
    the shared feature of every stage and feeds its attended output to its next level. The
    task representation is the attended last-stage feature.

    Attributes:
        stages: the shared backbone's stages.
        attention: per task, a ``ModuleList`` of :class:`TaskAttention`, one per stage.
        heads: one ``nn.Linear(out_features, n_outputs)`` per task.
        out_features: width of the last stage.
    """

    def __init__(self, backbone: nn.Module, input_shape: tuple[int, ...], tasks: list[Task]):
        super().__init__()
        stages = stages_of(backbone)
        shapes = _stage_shapes(stages, input_shape)
        self.stages = nn.ModuleList(stages)
        self.out_features = _feature_width(shapes, backbone)
        prev_shapes = [None, *shapes[:-1]]
        self.attention = nn.ModuleDict({t.name: nn.ModuleList(TaskAttention(s, p) for s, p in zip(shapes, prev_shapes)) for t in tasks})
        self.heads = nn.ModuleDict({t.name: nn.Linear(self.out_features, t.n_outputs) for t in tasks})

    def attend(self, x: torch.Tensor, task: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``task``'s attended last-stage feature and its attention mask at every stage."""
        h, a, masks = x, None, []
        for stage, att in zip(self.stages, self.attention[task]):
            h = stage(h)
            a, mask = att(h, a)
            masks.append(mask)
        return a, masks

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        """Head output of ``task``; only that task's attention chain is computed."""
        return self.heads[task](self.attend(x, task)[0])

    def shared_parameters(self) -> list[nn.Parameter]:
        """The shared backbone's parameters (attention modules and heads are per task)."""
        return list(self.stages.parameters())


@register_architecture("mtan")
def build_mtan(new_backbone: Callable[[], nn.Module], input_shape: tuple[int, ...], tasks: list[Task]) -> nn.Module:
    """MTAN-style task attention over one shared ``new_backbone()`` (Liu et al., CVPR 2019).

    Args:
        new_backbone: zero-argument factory of a freshly initialized backbone.
        input_shape: shape of one input sample.
        tasks: the tasks, one attention chain and head each.
    """
    return MTANModel(new_backbone(), tuple(input_shape), tasks)
