"""Fine-tuning recipes: trainable stages, layer-wise rates, gradual unfreezing, BN, LP-FT."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polytask.core.tasks import Task
from polytask.methods.architectures.multitask import MultiTaskModel
from polytask.methods.architectures.stagewise import stages_of
from polytask.methods.backbones.cnn import CNN
from polytask.methods.backbones.mlp import MLP
from polytask.methods.finetuning.recipes import GradualUnfreeze, freeze_batchnorm, layerwise_lr_groups, lp_ft_phases, select_trainable, trainable_names

REG = Task("t", "regression", 1)


def mlp_model(hidden=(4, 4, 4)) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(MLP(3, list(hidden), dropout=0.0), [REG])


def stage_trainable(backbone: nn.Module) -> list[bool]:
    return [all(p.requires_grad for p in s.parameters()) for s in stages_of(backbone)]


def test_select_trainable_last_k_stages():
    model = mlp_model()
    chosen = select_trainable(model.backbone, 2)
    assert stage_trainable(model.backbone) == [False, True, True]
    assert [list(s.parameters())[0] is list(t.parameters())[0] for s, t in zip(chosen, stages_of(model.backbone)[1:])] == [True, True]
    assert all(p.requires_grad for p in model.heads.parameters())  # heads untouched
    select_trainable(model.backbone, 0)
    assert stage_trainable(model.backbone) == [False, False, False]
    assert len(select_trainable(model.backbone, "all")) == 3
    assert stage_trainable(model.backbone) == [True, True, True]


@pytest.mark.parametrize(("layers", "message"), [(4, r"layers=4 but backbone MLP has 3 stages; use 0..3"), (-1, "layers=-1"), ("some", "layers must be 'all'")])
def test_select_trainable_rejects_bad_layers(layers, message):
    with pytest.raises(ValueError, match=message):
        select_trainable(mlp_model().backbone, layers)


def test_layerwise_lr_groups_exact_rates():
    model = mlp_model()
    groups = layerwise_lr_groups(model, base_lr=1.0, decay=0.5)
    # 3 stages: stage0 = 1 * 0.5^3, stage1 = 0.5^2, stage2 = 0.5^1; heads at base_lr
    assert [(g["name"], g["lr"]) for g in groups] == [("stage0", 0.125), ("stage1", 0.25), ("stage2", 0.5), ("heads", 1.0)]
    assert groups[0]["params"][0] is model.backbone.net[1].weight
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert layerwise_lr_groups(model, base_lr=0.1, decay=1.0, head_lr=0.3)[-1]["lr"] == 0.3
    torch.optim.AdamW(groups)  # valid optimizer groups


def test_layerwise_lr_groups_validates():
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\]"):
        layerwise_lr_groups(mlp_model(), 1.0, 1.5)
    with pytest.raises(ValueError, match="backbone"):
        layerwise_lr_groups(nn.Linear(2, 2), 1.0, 0.5)


def test_gradual_unfreeze_schedule():
    model = mlp_model()
    cb = GradualUnfreeze(model.backbone, every=2)
    assert stage_trainable(model.backbone) == [False, False, False]  # epoch 1 trains only the head
    expected = {
        1: [False, False, False],
        2: [False, False, True],
        3: [False, False, True],
        4: [False, True, True],
        6: [True, True, True],
        9: [True, True, True],
    }
    for epoch in range(1, 10):
        cb.on_epoch_end(epoch, 9, {})
        if epoch in expected:
            assert stage_trainable(model.backbone) == expected[epoch], epoch
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        GradualUnfreeze(model.backbone, every=0)


def test_gradual_unfreeze_with_an_optimizer_built_up_front():
    model = mlp_model(hidden=(4, 4))
    cb = GradualUnfreeze(model.backbone)
    opt = torch.optim.AdamW(layerwise_lr_groups(model, 0.1, 0.5), weight_decay=0.1)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    first, last = model.backbone.net[1].weight, model.backbone.net[4].weight

    def epoch():
        opt.zero_grad(set_to_none=True)
        nn.functional.mse_loss(model(x, "t"), y).backward()
        opt.step()

    before = (first.detach().clone(), last.detach().clone())
    epoch()
    # frozen stages: no gradient, so AdamW neither steps nor decays them
    assert torch.equal(first, before[0]) and torch.equal(last, before[1])
    cb.on_epoch_end(1, 3, {})
    epoch()
    assert torch.equal(first, before[0]) and not torch.equal(last, before[1])
    cb.on_epoch_end(2, 3, {})
    epoch()
    assert not torch.equal(first, before[0])


def test_freeze_batchnorm_keeps_running_stats_through_train():
    torch.manual_seed(0)
    cnn = CNN((1, 4, 4), [2], hidden=3, dropout=0.0)
    bns = freeze_batchnorm(cnn, affine=True)
    assert len(bns) == 1
    bn = bns[0]
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    cnn.train()
    out = cnn(torch.randn(6, 1, 4, 4) * 5 + 3)
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    assert bn.num_batches_tracked.item() == 0
    assert not bn.weight.requires_grad and not bn.bias.requires_grad
    out.sum().backward()
    assert cnn.features[0].weight.grad is not None  # the conv still trains
    freeze_batchnorm(cnn)  # idempotent: one hook
    assert len(bn._forward_pre_hooks) == 1


def test_freeze_batchnorm_affine_stays_trainable_by_default():
    bn = nn.BatchNorm1d(3)
    freeze_batchnorm(bn)
    bn.train()
    bn(torch.randn(4, 3) + 10)
    assert torch.equal(bn.running_mean, torch.zeros(3))
    assert bn.weight.requires_grad


def test_lp_ft_phases():
    model = mlp_model(hidden=(4,))
    probe, tune = lp_ft_phases(model, lp_epochs=2, ft_epochs=3, lp_lr=0.1, ft_lr=0.01, backbone_lr_ratio=0.5)
    assert (probe.name, probe.epochs, tune.name, tune.epochs) == ("linear-probe", 2, "fine-tune", 3)
    x, y = torch.randn(8, 3), torch.randn(8, 1)

    def train(phase, steps=3):
        phase.enter()
        opt = torch.optim.AdamW(phase.param_groups)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            nn.functional.mse_loss(model(x, "t"), y).backward()
            opt.step()

    backbone0 = model.backbone.net[1].weight.detach().clone()
    head0 = model.heads["t"].weight.detach().clone()
    train(probe)
    assert trainable_names(model) == ["heads.t.weight", "heads.t.bias"]
    assert torch.equal(model.backbone.net[1].weight, backbone0)  # phase 1: only the head moves
    assert not torch.equal(model.heads["t"].weight, head0)
    probed = model.heads["t"].weight.detach().clone()
    tune.enter()
    assert torch.equal(model.heads["t"].weight, probed)  # phase 2 starts from the probed head
    assert [g["lr"] for g in tune.param_groups] == [0.005, 0.01]
    train(tune)
    assert not torch.equal(model.backbone.net[1].weight, backbone0)
    with pytest.raises(ValueError, match="lp_epochs must be an integer >= 1"):
        lp_ft_phases(model, 0, 1, 0.1, 0.1)
