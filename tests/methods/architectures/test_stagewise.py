"""Stage-based sharing: stages_of, cross-stitch networks, MTAN-style task attention."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polytask.config import ModelConfig
from polytask.core.errors import ConfigError
from polytask.core.tasks import Task
from polytask.methods.architectures.stagewise import build_cross_stitch, build_mtan, stages_of
from polytask.methods.backbones import create_backbone
from polytask.study.resolve import backbone_options

TASKS = [Task("a", "classification", 3), Task("b", "regression", 1)]
SMALL = ModelConfig(mlp={"hidden": [6, 4]}, cnn={"channels": [3, 5], "hidden": 7})
CASES = [("mlp", (5,)), ("cnn", (1, 8, 8))]


def _factory(name, shape):
    return lambda: create_backbone(name, shape, **backbone_options(SMALL, name))


def _compose(stages, x):
    for s in stages:
        x = s(x)
    return x


@pytest.mark.parametrize("name,shape", CASES)
def test_stages_compose_to_the_backbone_forward(name, shape):
    torch.manual_seed(0)
    net = create_backbone(name, shape, **backbone_options(SMALL, name)).eval()  # eval: dropout and BN are deterministic
    x = torch.randn(4, *shape)
    stages = stages_of(net)
    assert len(stages) == (2 if name == "mlp" else 3)
    torch.testing.assert_close(_compose(stages, x), net(x))


def test_stages_of_user_sequential_and_stages_attribute():
    seq = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2))
    x = torch.randn(3, 5)
    assert len(stages_of(seq)) == 3
    torch.testing.assert_close(_compose(stages_of(seq), x), seq(x))

    class Staged(nn.Module):
        def __init__(self):
            super().__init__()
            self.stages = nn.ModuleList([nn.Linear(5, 4), nn.Linear(4, 2)])

        def forward(self, x):
            return self.stages[1](self.stages[0](x))

    net = Staged()
    torch.testing.assert_close(_compose(stages_of(net), x), net(x))


def test_stages_of_rejects_an_opaque_module_naming_its_class():
    class Opaque(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ConfigError, match="Opaque") as e:
        stages_of(Opaque())
    assert "nn.Sequential" in str(e.value) and "stages" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name,shape", CASES)
def test_output_shapes_and_finite_gradients(name, shape):
    torch.manual_seed(0)
    x = torch.randn(4, *shape)
    for model in (build_cross_stitch(_factory(name, shape), shape, TASKS), build_mtan(_factory(name, shape), shape, TASKS)):
        assert model.out_features == (4 if name == "mlp" else 7)
        assert set(model.heads) == {"a", "b"}
        outs = {t.name: model(x, t.name) for t in TASKS}
        assert outs["a"].shape == (4, 3) and outs["b"].shape == (4, 1)
        (outs["a"].sum() + outs["b"].sum()).backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert all(p.grad is not None for p in model.shared_parameters())


@pytest.mark.parametrize("name,shape", CASES)
def test_cross_stitch_with_identity_alpha_isolates_tasks(name, shape):
    torch.manual_seed(0)
    model = build_cross_stitch(_factory(name, shape), shape, TASKS).eval()
    with torch.no_grad():
        for unit in model.units:
            unit.alpha.copy_(torch.eye(2).unsqueeze(-1).expand_as(unit.alpha))
    x = torch.randn(4, *shape)
    before = model(x, "a")
    with torch.no_grad():
        for p in model.columns["b"].parameters():
            p.add_(torch.randn_like(p))
    torch.testing.assert_close(model(x, "a"), before)


@pytest.mark.parametrize("name,shape", CASES)
def test_cross_stitch_initial_mixing_matches_the_hand_computed_combination(name, shape):
    torch.manual_seed(0)
    model = build_cross_stitch(_factory(name, shape), shape, TASKS, init_self=0.9).eval()
    x = torch.randn(4, *shape)
    ya, yb = model.columns["a"][0](x), model.columns["b"][0](x)
    mixed = model.units[0](torch.stack([ya, yb]))
    torch.testing.assert_close(mixed[0], 0.9 * ya + 0.1 * yb)
    torch.testing.assert_close(mixed[1], 0.1 * ya + 0.9 * yb)
    # per channel (dim 1): one 2x2 matrix per channel / unit
    assert model.units[0].alpha.shape == (2, 2, ya.shape[1])


def test_cross_stitch_three_tasks_split_the_off_diagonal_evenly():
    tasks = [Task(n, "regression", 1) for n in "abc"]
    model = build_cross_stitch(_factory("mlp", (5,)), (5,), tasks, init_self=0.8)
    expected = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    torch.testing.assert_close(model.units[0].alpha[..., 0], expected)


def test_shared_parameters_are_alpha_for_cross_stitch_and_the_backbone_for_mtan():
    cs = build_cross_stitch(_factory("cnn", (1, 8, 8)), (1, 8, 8), TASKS)
    assert {id(p) for p in cs.shared_parameters()} == {id(u.alpha) for u in cs.units}
    assert len(cs.units) == 2  # 3 stages -> 2 boundaries

    mt = build_mtan(_factory("cnn", (1, 8, 8)), (1, 8, 8), TASKS)
    shared = {id(p) for p in mt.shared_parameters()}
    assert shared == {id(p) for p in mt.stages.parameters()}
    per_task = {id(p) for p in mt.attention.parameters()} | {id(p) for p in mt.heads.parameters()}
    assert shared and not shared & per_task
    assert shared | per_task == {id(p) for p in mt.parameters()}


@pytest.mark.parametrize("name,shape", CASES)
def test_mtan_masks_lie_in_the_open_unit_interval(name, shape):
    torch.manual_seed(0)
    model = build_mtan(_factory(name, shape), shape, TASKS)
    _, masks = model.attend(torch.randn(4, *shape), "a")
    assert len(masks) == len(model.stages)
    assert all(((m > 0) & (m < 1)).all() for m in masks)


@pytest.mark.parametrize("name,shape", CASES)
def test_mtan_with_masks_forced_open_returns_the_shared_feature(name, shape):
    torch.manual_seed(0)
    model = build_mtan(_factory(name, shape), shape, TASKS).eval()
    with torch.no_grad():
        for att in model.attention["b"]:
            att.mask.weight.zero_()
            att.mask.bias.fill_(100.0)  # sigmoid(100) == 1 in float32
    x = torch.randn(4, *shape)
    feature, masks = model.attend(x, "b")
    assert all((m == 1).all() for m in masks)
    torch.testing.assert_close(feature, _compose(model.stages, x))
    torch.testing.assert_close(model(x, "b"), model.heads["b"](_compose(model.stages, x)))
