"""The models of Tang et al. (2020, "Progressive Layered Extraction (PLE): A Novel Multi-Task
Learning (MTL) Model for Personalized Recommendations", RecSys): shared plus task-specific
experts in :class:`ExtractionLayer` s, stacked into :class:`PLE`; :class:`CGC` is its
single-level form.

:mod:`polytask.methods.architectures.cgc` and :mod:`polytask.methods.architectures.ple`
register them. The models live here, not in those modules, because :class:`CGC` is a
:class:`PLE` and ``cgc`` is registered before ``ple``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.tasks import Task
from polytask.methods.architectures.experts import SoftmaxGate, _check_count, _make_experts, _mix, _width

__all__ = ["CGC", "PLE", "ExtractionLayer"]


class ExtractionLayer(nn.Module):
    """One extraction layer of PLE; alone, the Customized Gate Control (CGC) module.

    Task ``t`` has ``task_experts`` own experts and a gate
    ``g_t(u_t) = softmax(W_t u_t)`` over its own experts followed by the shared ones
    (PLE eq. 2-4); with ``shared_gate``, a gate over *all* experts (every task's and the
    shared ones) gives the shared representation passed to the next layer (PLE eq. 6).

    Args:
        new_expert: returns a fresh expert.
        task_names: the tasks, in order.
        shared_experts, task_experts: expert counts.
        gate_in: width of the (flattened) gate inputs.
        shared_gate: whether to build the shared-expert gate (not needed in the last layer).
    """

    def __init__(self, new_expert: Callable[[], nn.Module], task_names: list[str], shared_experts: int, task_experts: int, gate_in: int, shared_gate: bool):
        super().__init__()
        self.task_names = list(task_names)
        self.shared = _make_experts(new_expert, shared_experts) if shared_experts else nn.ModuleList()
        self.specific = nn.ModuleDict({name: _make_experts(new_expert, task_experts) for name in task_names}) if task_experts else None
        self.gates = nn.ModuleDict({name: SoftmaxGate(gate_in, task_experts + shared_experts) for name in task_names})
        self.shared_gate = SoftmaxGate(gate_in, shared_experts + len(task_names) * task_experts) if shared_gate and shared_experts else None

    def _own(self, name: str, inp: torch.Tensor) -> list[torch.Tensor]:
        return [e(inp) for e in self.specific[name]] if self.specific is not None else []

    def forward(
        self, task_inputs: dict[str, torch.Tensor], shared_input: torch.Tensor, only: str | None = None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """Mix experts for the tasks (all, or ``only`` one) and, with a shared gate, for the shared path.

        Args:
            task_inputs: task name -> input of that task's experts and gate.
            shared_input: input of the shared experts and the shared gate.
            only: compute just this task's representation (and no shared one).

        Returns:
            ``({task: representation}, shared representation or None)``.
        """
        shared_out = [e(shared_input) for e in self.shared]
        names = [only] if only is not None else self.task_names
        own = {name: self._own(name, task_inputs[name]) for name in names}
        reps = {name: _mix(self.gates[name](task_inputs[name]), own[name] + shared_out) for name in names}
        shared_rep = None
        if only is None and self.shared_gate is not None:
            every = [o for name in self.task_names for o in own[name]] + shared_out
            shared_rep = _mix(self.shared_gate(shared_input), every)
        return reps, shared_rep


class _HigherExpert(nn.Module):
    """Expert of PLE levels above the first: ``ReLU(Linear(d, d))`` on a representation."""

    def __init__(self, d: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, d), nn.ReLU())
        self.out_features = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PLE(nn.Module):
    """Progressive Layered Extraction (Tang et al., 2020).

    ``levels`` stacked :class:`ExtractionLayer` s. Level 1's experts are backbones on the
    input and its gates read the flattened input. At level ``l > 1`` task ``t``'s
    experts and gate read ``h_t^(l-1)``, the shared experts and the shared gate read the
    shared representation ``h_s^(l-1)`` (PLE eq. 5), and experts are ``ReLU(Linear(d, d))``.
    Every level but the last has a shared gate; the last level's ``h_t^(L)`` feeds the head.

    Tasks interact only through the shared experts and the shared gates. So at
    ``levels = 1`` (CGC) task ``t`` never uses task ``s``'s experts; from ``levels = 2``
    on, lower-level task experts feed the shared gate and thus every task.

    Args:
        new_backbone: returns a freshly initialized expert with ``out_features``.
        input_shape: shape of one input sample (level-1 gates read it flattened).
        tasks: the tasks; a head each.
        shared_experts: shared experts per level.
        task_experts: task-specific experts per task and level.
        levels: number of extraction layers (1 is CGC).
    """

    def __init__(
        self,
        new_backbone: Callable[[], nn.Module],
        input_shape: tuple[int, ...],
        tasks: list[Task],
        shared_experts: int = 2,
        task_experts: int = 1,
        levels: int = 2,
    ):
        super().__init__()
        _check_count("shared_experts", shared_experts, 0)
        _check_count("task_experts", task_experts, 0)
        _check_count("levels", levels, 1)
        if shared_experts + task_experts < 1:
            raise ConfigError("need at least one expert per task: shared_experts + task_experts >= 1")
        if levels > 1 and shared_experts < 1:
            raise ConfigError("PLE with levels > 1 needs shared_experts >= 1 (the shared path between levels)")
        names = [t.name for t in tasks]
        first = ExtractionLayer(new_backbone, names, shared_experts, task_experts, math.prod(input_shape), shared_gate=levels > 1)
        experts = first.shared if shared_experts else next(iter(first.specific.values()))
        d = _width(experts)
        self.out_features = d
        layers = [first]
        for level in range(2, levels + 1):
            layers.append(ExtractionLayer(lambda: _HigherExpert(d), names, shared_experts, task_experts, d, shared_gate=level < levels))
        self.layers = nn.ModuleList(layers)
        self.heads = nn.ModuleDict({t.name: nn.Linear(d, t.n_outputs) for t in tasks})

    def representation(self, x: torch.Tensor, task: str) -> torch.Tensor:
        """``h_t^(L)``: task ``task``'s representation after the last level."""
        task_inputs = {name: x for name in self.heads}
        shared = x
        for layer in self.layers[:-1]:
            task_inputs, shared = layer(task_inputs, shared)
        reps, _ = self.layers[-1](task_inputs, shared, only=task)
        return reps[task]

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        return self.heads[task](self.representation(x, task))

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters more than one task's output depends on.

        Tasks meet through the shared experts and the shared gates, so with ``L`` levels:
        shared experts at every level; shared gates (levels ``< L``); task experts below
        the last level, as they feed the shared gate of their level; task gates below
        level ``L - 1``, as their output feeds task experts that feed a shared gate.
        Never the heads, the last level's task experts or the task gates of the last two
        levels. With ``levels = 1`` (CGC): just the shared experts.
        """
        n = len(self.layers)
        params = []
        for i, layer in enumerate(self.layers):
            params += list(layer.shared.parameters())
            if i < n - 1:
                if layer.shared_gate is not None:
                    params += list(layer.shared_gate.parameters())
                if layer.specific is not None:
                    params += list(layer.specific.parameters())
            if i < n - 2:
                params += list(layer.gates.parameters())
        return params


class CGC(PLE):
    """Customized Gate Control (Tang et al., 2020, sec. 4.2): a single-level :class:`PLE`.

    Task ``t``'s representation is ``sum_e g_te(x) e(x)`` over its own experts and the
    shared ones, with ``g_t(x) = softmax(W_t x)``; tasks share only the shared experts.
    """

    def __init__(self, new_backbone: Callable[[], nn.Module], input_shape: tuple[int, ...], tasks: list[Task], shared_experts: int = 2, task_experts: int = 1):
        super().__init__(new_backbone, input_shape, tasks, shared_experts, task_experts, levels=1)
