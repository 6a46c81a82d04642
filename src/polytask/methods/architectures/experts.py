"""Multi-task sharing architectures built from expert networks (mixtures of experts).

Every builder takes ``(new_backbone, input_shape, tasks, **options)``: ``new_backbone()``
returns a freshly initialized expert (the config's ``mlp``/``cnn`` or the user's module)
mapping a batch to ``(batch, out_features)``. Each model returned has

* ``forward(x, task_name)``: the task head's output,
* ``heads``: ``nn.ModuleDict({task: nn.Linear(out_features, n_outputs)})``,
* ``shared_parameters()``: the parameters more than one task's output depends on
  (what gradient-balancing methods take per-task gradients of),
* ``out_features``: the width ``d`` of the task representations fed to the heads.

Architectures:

* MMoE (Ma et al., 2018, "Modeling Task Relationships in Multi-task Learning with
  Multi-gate Mixture-of-Experts", KDD): shared experts, a softmax gate per task.
* CGC and PLE (Tang et al., 2020, "Progressive Layered Extraction (PLE): A Novel
  Multi-Task Learning (MTL) Model for Personalized Recommendations", RecSys): shared plus
  task-specific experts, stacked into ``levels`` extraction layers.
* DSelect-k (Hazimeh et al., 2021, "DSelect-k: Differentiable Selection in the Mixture
  of Experts with Applications to Multi-Task Learning", NeurIPS): MMoE whose gates
  select at most ``k`` experts through smooth binary encodings.

All gates on the input read the raw flattened input, as in the papers; gates are linear
without bias (``softmax(W x)``), as the papers write them. ``forward(x, task)`` evaluates
only what that task needs, so the cost of one call is one pass through the experts the
task's output depends on.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.tasks import Task
from polytask.methods.architectures.base import register_architecture

__all__ = [
    "CGC",
    "DSelectK",
    "DSelectKGate",
    "ExtractionLayer",
    "MMoE",
    "PLE",
    "SoftmaxGate",
    "build_cgc",
    "build_dselect_k",
    "build_mmoe",
    "build_ple",
    "smooth_step",
]


def _make_experts(new_backbone: Callable[[], nn.Module], n: int) -> nn.ModuleList:
    """``n`` fresh experts, checked to share one integer ``out_features``."""
    experts = nn.ModuleList(new_backbone() for _ in range(n))
    widths = {getattr(e, "out_features", None) for e in experts}
    if any(not isinstance(w, int) for w in widths):
        raise ConfigError("every expert needs an integer attribute 'out_features' (see polytask.methods.backbones.from_user_module)")
    if len(widths) > 1:
        raise ConfigError(f"experts must all have the same out_features, got {sorted(widths)}")
    return experts


def _width(experts: nn.ModuleList) -> int:
    return int(experts[0].out_features)


def _check_count(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or value < minimum:
        raise ConfigError(f"option '{name}' must be an integer >= {minimum}, got {value!r}")


def _mix(weights: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
    """``sum_e weights[:, e] * outputs[e]``: ``(batch, E)`` weights over ``E`` outputs ``(batch, d)``."""
    return torch.einsum("be,bed->bd", weights, torch.stack(outputs, dim=1))


class SoftmaxGate(nn.Module):
    """Softmax gate ``g(x) = softmax(W x)`` over ``n_experts`` (MMoE eq. 5, PLE eq. 3).

    Args:
        in_features: width of the (flattened) gate input.
        n_experts: number of experts the gate mixes.
    """

    def __init__(self, in_features: int, n_experts: int):
        super().__init__()
        self.linear = nn.Linear(in_features, n_experts, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Weights ``(batch, n_experts)``, non-negative, summing to 1 per sample."""
        return torch.softmax(self.linear(x.flatten(1).to(self.linear.weight.dtype)), dim=-1)


class MMoE(nn.Module):
    """Multi-gate Mixture-of-Experts (Ma et al., 2018).

    ``E`` experts ``f_e`` are shared by all tasks; task ``t`` has its own gate
    ``g_t(x) = softmax(W_t x)`` over the experts on the flattened input ``x``, and its
    representation is ``h_t(x) = sum_e g_te(x) f_e(x)``, fed to the task's linear head.

    Args:
        new_backbone: returns a freshly initialized expert with ``out_features``.
        input_shape: shape of one input sample (the gates read it flattened).
        tasks: the tasks; one gate and one head each.
        experts: number of shared experts ``E``.
    """

    def __init__(self, new_backbone: Callable[[], nn.Module], input_shape: tuple[int, ...], tasks: list[Task], experts: int = 4):
        super().__init__()
        _check_count("experts", experts, 1)
        self.experts = _make_experts(new_backbone, experts)
        self.out_features = _width(self.experts)
        self.gates = nn.ModuleDict({t.name: self._new_gate(math.prod(input_shape), experts) for t in tasks})
        self.heads = nn.ModuleDict({t.name: nn.Linear(self.out_features, t.n_outputs) for t in tasks})

    def _new_gate(self, in_features: int, n_experts: int) -> nn.Module:
        return SoftmaxGate(in_features, n_experts)

    def gate(self, x: torch.Tensor, task: str) -> torch.Tensor:
        """Task ``task``'s expert weights ``(batch, E)`` for input ``x``."""
        return self.gates[task](x).expand(x.shape[0], len(self.experts))

    def representation(self, x: torch.Tensor, task: str) -> torch.Tensor:
        """``h_t(x) = sum_e g_te(x) f_e(x)``, shape ``(batch, out_features)``."""
        return _mix(self.gate(x, task), [e(x) for e in self.experts])

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        return self.heads[task](self.representation(x, task))

    def shared_parameters(self) -> list[nn.Parameter]:
        """The experts' parameters: every task mixes every expert (gates and heads are per task)."""
        return list(self.experts.parameters())


def smooth_step(t: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Cubic smooth-step of DSelect-k (Hazimeh et al., 2021, eq. 3).

    ``S(t) = 0`` for ``t <= -gamma/2``, ``1`` for ``t >= gamma/2``, otherwise
    ``-2/gamma^3 t^3 + 3/(2 gamma) t + 1/2``. It is continuously differentiable and,
    unlike a sigmoid, reaches exactly 0 and 1, so a selector can make an exact choice.
    """
    cubic = -2.0 / gamma**3 * t**3 + 3.0 / (2.0 * gamma) * t + 0.5
    return torch.where(t <= -gamma / 2, torch.zeros_like(t), torch.where(t >= gamma / 2, torch.ones_like(t), cubic))


class DSelectKGate(nn.Module):
    """Static DSelect-k gate: a distribution over ``n_experts`` with at most ``k`` non-zeros at convergence.

    Each of the ``k`` single-expert selectors has ``m = ceil(log2 E)`` logits ``z`` and
    puts mass ``r(z)_i = prod_j (bit_j(i) ? S(z_j) : 1 - S(z_j))`` on expert code ``i``
    (a distribution over ``2^m`` codes; one-hot once every ``S(z_j)`` is 0 or 1). The gate
    is ``q = sum_k softmax(w)_k r(z^(k))`` (Hazimeh et al., 2021, eq. 5 and 6).

    This is the static (input-independent) variant of the paper: ``z`` and ``w`` are
    parameters, so the gate returns the same weights for every sample.

    When ``E`` is not a power of two, codes ``i >= E`` are folded onto expert ``i - E``:
    the gate then stays an exact distribution over the ``E`` experts and a saturated
    selector still picks a single expert. (The reference implementation instead drops
    those codes, so its weights can sum to less than 1.)

    Args:
        n_experts: number of experts ``E``.
        k: number of selectors (at most ``k`` experts selected).
        gamma: width of the smooth-step's transition region.
    """

    def __init__(self, n_experts: int, k: int, gamma: float):
        super().__init__()
        self.n_experts, self.k, self.gamma = n_experts, k, gamma
        # At least one bit, so a one-expert gate still has a (harmless) parameter shape.
        m = max(1, math.ceil(math.log2(n_experts)))
        codes = torch.arange(2**m)
        self.register_buffer("bits", ((codes[:, None] >> torch.arange(m)) & 1).bool(), persistent=False)
        self.register_buffer("fold", codes % n_experts, persistent=False)
        # The paper's initialisation: small uniform logits, so every S(z) starts near 1/2
        # (all experts weighted, gradients flowing) rather than saturated.
        self.z = nn.Parameter(torch.empty(k, m).uniform_(-gamma / 100, gamma / 100))
        self.w = nn.Parameter(torch.empty(k).uniform_(-gamma / 100, gamma / 100))

    def selector_distributions(self) -> torch.Tensor:
        """``r(z^(k))`` for every selector over the ``2^m`` codes, shape ``(k, 2^m)``."""
        s = smooth_step(self.z, self.gamma)[:, None, :]  # (k, 1, m)
        return torch.where(self.bits[None], s, 1 - s).prod(dim=-1)

    def weights(self) -> torch.Tensor:
        """The gate ``q``: ``(E,)``, non-negative, summing to 1."""
        r = self.selector_distributions()
        per_expert = torch.zeros(self.k, self.n_experts, dtype=r.dtype, device=r.device).index_add(1, self.fold, r)
        return (torch.softmax(self.w, dim=0)[:, None] * per_expert).sum(dim=0)

    def entropy(self) -> torch.Tensor:
        """``sum_k H(r(z^(k)))``: the paper's optional regulariser pushing selectors to binary choices."""
        r = self.selector_distributions()
        # Clamp inside the log only: at r = 0 the term is 0 and its gradient stays finite.
        return -(r * torch.log(r.clamp_min(1e-12))).sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same weights for every sample of ``x``: ``(batch, E)``."""
        return self.weights()[None].expand(x.shape[0], self.n_experts)


class DSelectK(MMoE):
    """MMoE with static DSelect-k gates (Hazimeh et al., 2021).

    Task ``t``'s representation is ``h_t(x) = sum_e q_te f_e(x)`` with ``q_t`` a
    :class:`DSelectKGate`; at convergence at most ``k`` experts have non-zero weight, so
    each task ends up using a sparse, learned subset of the shared experts.

    The entropy regulariser of the paper is not added to any loss here; call
    :meth:`entropy_regularization` and add ``lambda * value`` to a loss to use it.

    Args:
        new_backbone: returns a freshly initialized expert with ``out_features``.
        input_shape: shape of one input sample (unused by the static gates).
        tasks: the tasks; one gate and one head each.
        experts: number of shared experts ``E``.
        k: selectors per gate (at most ``k`` experts per task), ``1 <= k <= E``.
        gamma: smooth-step transition width.
    """

    def __init__(
        self, new_backbone: Callable[[], nn.Module], input_shape: tuple[int, ...], tasks: list[Task], experts: int = 4, k: int = 2, gamma: float = 1.0
    ):
        _check_count("k", k, 1)
        if k > experts:
            raise ConfigError(f"DSelect-k needs k <= experts, got k={k} experts={experts}")
        if not gamma > 0:
            raise ConfigError(f"option 'gamma' must be > 0, got {gamma!r}")
        self.k, self.gamma = k, float(gamma)
        super().__init__(new_backbone, input_shape, tasks, experts)

    def _new_gate(self, in_features: int, n_experts: int) -> nn.Module:
        return DSelectKGate(n_experts, self.k, self.gamma)

    def entropy_regularization(self) -> torch.Tensor:
        """``sum_t sum_k H(r(z^(t,k)))`` over all tasks' selectors (0 once all are binary)."""
        return torch.stack([g.entropy() for g in self.gates.values()]).sum()


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


@register_architecture("mmoe")
def build_mmoe(new_backbone: Callable[[], nn.Module], input_shape: tuple[int, ...], tasks: list[Task], experts: int = 4) -> nn.Module:
    """Multi-gate Mixture-of-Experts (Ma et al., 2018): see :class:`MMoE`."""
    return MMoE(new_backbone, tuple(input_shape), tasks, experts)


@register_architecture("cgc")
def build_cgc(
    new_backbone: Callable[[], nn.Module], input_shape: tuple[int, ...], tasks: list[Task], shared_experts: int = 2, task_experts: int = 1
) -> nn.Module:
    """Customized Gate Control (Tang et al., 2020): see :class:`CGC`."""
    return CGC(new_backbone, tuple(input_shape), tasks, shared_experts, task_experts)


@register_architecture("ple")
def build_ple(
    new_backbone: Callable[[], nn.Module], input_shape: tuple[int, ...], tasks: list[Task], shared_experts: int = 2, task_experts: int = 1, levels: int = 2
) -> nn.Module:
    """Progressive Layered Extraction (Tang et al., 2020): see :class:`PLE`."""
    return PLE(new_backbone, tuple(input_shape), tasks, shared_experts, task_experts, levels)


@register_architecture("dselect-k")
def build_dselect_k(
    new_backbone: Callable[[], nn.Module], input_shape: tuple[int, ...], tasks: list[Task], experts: int = 4, k: int = 2, gamma: float = 1.0
) -> nn.Module:
    """MMoE with static DSelect-k gates (Hazimeh et al., 2021): see :class:`DSelectK`."""
    return DSelectK(new_backbone, tuple(input_shape), tasks, experts, k, gamma)
