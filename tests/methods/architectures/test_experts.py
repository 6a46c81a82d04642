"""Expert-based sharing architectures: MMoE, CGC, PLE, DSelect-k."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.tasks import Task
from polytask.methods.architectures.cgc import build_cgc
from polytask.methods.architectures.dselect_k import build_dselect_k, smooth_step
from polytask.methods.architectures.mmoe import build_mmoe
from polytask.methods.architectures.ple import build_ple
from polytask.methods.backbones import create_backbone, from_user_module

TASKS = [Task("a", "classification", 3), Task("b", "regression", 1), Task("c", "binary", 1)]
BUILDERS = {
    "mmoe": lambda nb, shape: build_mmoe(nb, shape, TASKS, experts=3),
    "cgc": lambda nb, shape: build_cgc(nb, shape, TASKS, shared_experts=2, task_experts=1),
    "ple": lambda nb, shape: build_ple(nb, shape, TASKS, shared_experts=2, task_experts=1, levels=2),
    "ple3": lambda nb, shape: build_ple(nb, shape, TASKS, shared_experts=1, task_experts=2, levels=3),
    "dselect_k": lambda nb, shape: build_dselect_k(nb, shape, TASKS, experts=5, k=2),
}


def mlp(shape=(5,)):
    return lambda: create_backbone("mlp", shape, hidden=[8])


def cnn(shape=(1, 8, 8)):
    return lambda: create_backbone("cnn", shape, channels=[4], hidden=6)


class Lin(nn.Module):
    """A linear expert with ``out_features`` (for hand-computed cases)."""

    def __init__(self, i: int = 2, o: int = 2):
        super().__init__()
        self.lin = nn.Linear(i, o, bias=False)
        self.out_features = o

    def forward(self, x):
        return self.lin(x)


def ids(params) -> set[int]:
    return {id(p) for p in params}


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("backbone,shape", [(mlp, (5,)), (cnn, (1, 8, 8))])
def test_output_shapes(name, backbone, shape):
    model = BUILDERS[name](backbone(shape), shape).eval()
    x = torch.randn(4, *shape)
    assert isinstance(model.out_features, int)
    assert set(model.heads) == {"a", "b", "c"}
    for t in TASKS:
        assert model(x, t.name).shape == (4, t.n_outputs)
        assert model.heads[t.name].in_features == model.out_features


@pytest.mark.parametrize("name", list(BUILDERS))
def test_shared_parameters_are_exactly_those_used_by_several_tasks(name):
    model = BUILDERS[name](mlp(), (5,)).eval()
    x = torch.randn(3, 5)
    params = list(model.parameters())
    users = [0] * len(params)
    for t in TASKS:
        grads = torch.autograd.grad(model(x, t.name).sum(), params, allow_unused=True)
        users = [u + (g is not None) for u, g in zip(users, grads)]
    expected = {id(p) for p, u in zip(params, users) if u > 1}
    assert ids(model.shared_parameters()) == expected
    assert len(model.shared_parameters()) == len(ids(model.shared_parameters()))  # no duplicates


def test_shared_parameters_mmoe_and_cgc_by_identity():
    mmoe = build_mmoe(mlp(), (5,), TASKS, experts=2)
    shared = ids(mmoe.shared_parameters())
    assert ids(mmoe.experts.parameters()) == shared
    assert not shared & ids(mmoe.gates.parameters()) and not shared & ids(mmoe.heads.parameters())

    cgc = build_cgc(mlp(), (5,), TASKS, shared_experts=2, task_experts=1)
    shared = ids(cgc.shared_parameters())
    layer = cgc.layers[0]
    assert ids(layer.shared.parameters()) == shared
    for other in (layer.specific, layer.gates, cgc.heads):
        assert not shared & ids(other.parameters())


def test_mmoe_gate_and_hand_computed_mixture():
    torch.manual_seed(0)
    model = build_mmoe(Lin, (2,), TASKS[:2], experts=2)
    with torch.no_grad():
        model.experts[0].lin.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        model.experts[1].lin.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, -1.0]]))
        model.gates["a"].linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    x = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    g = model.gate(x, "a")
    assert torch.allclose(g.sum(1), torch.ones(2)) and (g >= 0).all()
    # softmax([x1, x2]) mixes expert outputs x (identity) and [2 x1, -x2].
    w0 = torch.exp(x[:, 0]) / (torch.exp(x[:, 0]) + torch.exp(x[:, 1]))
    e0, e1 = x, torch.stack([2 * x[:, 0], -x[:, 1]], 1)
    expected = w0[:, None] * e0 + (1 - w0)[:, None] * e1
    assert torch.allclose(model.representation(x, "a"), expected)
    assert torch.allclose(model(x, "a"), model.heads["a"](expected))


def test_cgc_task_output_ignores_other_tasks_experts():
    torch.manual_seed(0)
    model = build_cgc(mlp(), (5,), TASKS, shared_experts=2, task_experts=1).eval()
    x = torch.randn(4, 5)
    before_a, before_b = model(x, "a"), model(x, "b")
    with torch.no_grad():
        for p in model.layers[0].specific["b"].parameters():
            p.add_(torch.randn_like(p))
    assert torch.equal(model(x, "a"), before_a)
    assert not torch.allclose(model(x, "b"), before_b)


def test_ple_with_one_level_is_cgc():
    torch.manual_seed(0)
    cgc = build_cgc(mlp(), (5,), TASKS, shared_experts=2, task_experts=2).eval()
    torch.manual_seed(1)
    ple = build_ple(mlp(), (5,), TASKS, shared_experts=2, task_experts=2, levels=1).eval()
    assert cgc.state_dict().keys() == ple.state_dict().keys()
    ple.load_state_dict(cgc.state_dict())
    x = torch.randn(4, 5)
    for t in TASKS:
        assert torch.equal(ple(x, t.name), cgc(x, t.name))
    assert cgc.layers[0].shared_gate is None


def test_ple_structure():
    model = build_ple(mlp(), (5,), TASKS, shared_experts=2, task_experts=1, levels=3)
    d = model.out_features
    first, middle, last = model.layers
    assert first.shared_gate is not None and middle.shared_gate is not None and last.shared_gate is None
    # Level-1 gates read the flattened input, higher ones a d-wide representation.
    assert first.gates["a"].linear.weight.shape == (3, 5)
    assert middle.gates["a"].linear.weight.shape == (3, d)
    assert middle.shared_gate.linear.weight.shape == (2 + 3 * 1, d)
    lin = middle.shared[0].net[0]
    assert isinstance(lin, nn.Linear) and lin.weight.shape == (d, d)


def test_smooth_step_values():
    for gamma in (1.0, 0.3):
        t = torch.tensor([-gamma, -gamma / 2, 0.0, gamma / 2, gamma])
        assert torch.allclose(smooth_step(t, gamma), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))
    t = torch.linspace(-1, 1, 101)
    assert (smooth_step(t).diff() >= 0).all()


@pytest.mark.parametrize("experts", [1, 4, 5, 8])
def test_dselect_k_gate_is_distribution(experts):
    model = build_dselect_k(mlp(), (5,), TASKS, experts=experts, k=1 if experts == 1 else 2)
    for gate in model.gates.values():
        with torch.no_grad():
            gate.z.normal_(0, 0.5)
            gate.w.normal_()
        q = gate.weights()
        assert q.shape == (experts,) and (q >= 0).all()
        assert torch.allclose(q.sum(), torch.tensor(1.0))
    assert model.gate(torch.randn(3, 5), "a").shape == (3, experts)


@pytest.mark.parametrize("experts,k", [(4, 2), (5, 2), (8, 3), (5, 1)])
def test_dselect_k_saturated_selects_at_most_k_and_trains_them(experts, k):
    torch.manual_seed(0)
    model = build_dselect_k(mlp(), (5,), TASKS, experts=experts, k=k, gamma=1.0).eval()
    gate = model.gates["a"]
    with torch.no_grad():
        gate.z.copy_(torch.randn_like(gate.z).sign() * 2.0)  # |z| > gamma/2: binary selectors
    q = gate.weights()
    selected = (q > 0).nonzero().flatten().tolist()
    assert 1 <= len(selected) <= k
    assert torch.allclose(q.sum(), torch.tensor(1.0))
    assert gate.entropy().item() == pytest.approx(0.0, abs=1e-9)
    model(torch.randn(4, 5), "a").sum().backward()
    for e in selected:
        for p in model.experts[e].parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0
    for e in set(range(experts)) - set(selected):
        assert all(p.grad is None or not p.grad.any() for p in model.experts[e].parameters())
    assert gate.w.grad is not None


def test_dselect_k_trains_gate_at_initialisation():
    model = build_dselect_k(mlp(), (5,), TASKS, experts=4, k=2).eval()
    assert model.entropy_regularization().item() > 0
    model(torch.randn(4, 5), "b").sum().backward()
    gate = model.gates["b"]
    assert gate.z.grad.abs().sum() > 0 and gate.w.grad is not None
    assert all(p.grad is not None for p in model.experts.parameters())


class UserNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(5, 7), nn.Tanh())

    def forward(self, x):
        return self.body(x)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_user_module_backbone(name):
    model = BUILDERS[name](lambda: from_user_module(UserNet(), (5,)), (5,))
    assert model.out_features == 7
    assert model(torch.randn(2, 5), "a").shape == (2, 3)


def test_bad_options():
    with pytest.raises(ConfigError):
        build_mmoe(mlp(), (5,), TASKS, experts=0)
    with pytest.raises(ConfigError):
        build_dselect_k(mlp(), (5,), TASKS, experts=2, k=3)
    with pytest.raises(ConfigError):
        build_dselect_k(mlp(), (5,), TASKS, gamma=0.0)
    with pytest.raises(ConfigError):
        build_cgc(mlp(), (5,), TASKS, shared_experts=0, task_experts=0)
    with pytest.raises(ConfigError):
        build_ple(mlp(), (5,), TASKS, shared_experts=0, levels=2)
    with pytest.raises(ConfigError):
        build_mmoe(lambda: nn.Sequential(nn.Linear(5, 3)), (5,), TASKS)  # no out_features
