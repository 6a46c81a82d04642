"""Fine-tuning regularizers: hand-computed values, gradient routing, hooks, validation."""

from __future__ import annotations

import copy
import math
from functools import partial

import pytest
import torch
from torch import nn

from polytask.core.targets import task_loss
from polytask.core.tasks import Task
from polytask.methods.architectures.multitask import MultiTaskModel
from polytask.methods.backbones.mlp import MLP
from polytask.methods.finetuning.regularizers import BSS, DELTA, L2SP, REGULARIZERS, LwF, create_regularizer, regularizer_names


def linear_backbone(weight: list[list[float]]) -> nn.Sequential:
    """``x -> W x`` (no bias) as a one-stage Sequential backbone."""
    w = torch.tensor(weight)
    layer = nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(w)
    net = nn.Sequential(layer)
    net.out_features = w.shape[0]
    return net


def model_on(backbone: nn.Module, task: Task, head_weight: list[list[float]] | None = None) -> MultiTaskModel:
    model = MultiTaskModel(backbone, [task])
    if head_weight is not None:
        with torch.no_grad():
            model.heads[task.name].weight.copy_(torch.tensor(head_weight))
            model.heads[task.name].bias.zero_()
    return model


REG = Task("t", "regression", 1)


def test_registry_lists_names_and_rejects_unknown():
    assert regularizer_names() == ["l2-sp", "delta", "bss", "lwf"]
    with pytest.raises(ValueError, match=r"unknown fine-tuning regularizer 'l3'.*l2-sp, delta, bss, lwf"):
        create_regularizer("l3")


def test_l2sp_two_parameters_by_hand():
    start = model_on(linear_backbone([[1.0]]), REG)
    model = copy.deepcopy(start)
    with torch.no_grad():
        model.backbone[0].weight.fill_(3.0)
        model.heads["t"].weight.fill_(2.0)
        model.heads["t"].bias.zero_()
    penalty = create_regularizer("l2-sp", start).attach(model)
    loss = penalty(model, torch.zeros(2, 1), "t")
    # alpha/2 (w - w0)^2 + beta/2 v^2 = 0.1/2 * (3-1)^2 + 0.01/2 * 2^2 = 0.2 + 0.02
    assert loss.item() == pytest.approx(0.22)
    loss.backward()
    # d/dw = alpha (w - w0) = 0.2 ; d/dv = beta v = 0.02 ; the start copy gets nothing
    assert model.backbone[0].weight.grad.item() == pytest.approx(0.2)
    assert model.heads["t"].weight.grad.item() == pytest.approx(0.02)
    assert all(p.grad is None for p in penalty.start.parameters())
    assert penalty.trainable_parameters() == []


def test_l2sp_is_zero_at_the_start_with_zero_head():
    start = model_on(linear_backbone([[1.0, 2.0]]), REG, [[0.0]])
    penalty = L2SP(start, alpha=1.0, beta=1.0).attach(start)
    assert penalty(start, torch.zeros(1, 2), "t").item() == 0.0


def test_l2sp_rejects_a_model_without_the_pretrained_parameters():
    start = model_on(linear_backbone([[1.0]]), REG)
    other = model_on(linear_backbone([[1.0, 1.0]]), REG)
    with pytest.raises(ValueError, match="shapes differ"):
        L2SP(start).attach(other)


def delta_pair():
    """Start: identity backbone, head [1, 2]; trained model: backbone diag(2, 1)."""
    start = model_on(linear_backbone([[1.0, 0.0], [0.0, 1.0]]), REG, [[1.0, 2.0]])
    model = model_on(linear_backbone([[2.0, 0.0], [0.0, 1.0]]), REG, [[1.0, 1.0]])
    return start, model, torch.tensor([[1.0, 2.0], [3.0, 4.0]])


def test_delta_uniform_weights_by_hand():
    start, model, x = delta_pair()
    penalty = DELTA(start, attention=False).attach(model.train())
    model(x, "t")
    loss = penalty(model, x, "t")
    # FM - FM0 = (W - I) x: rows [1, 0] and [3, 0]; mean over the batch of the channel sums
    # = (1 + 9) / 2 = 5; alpha * 5 = 0.05; head term beta/2 * (1 + 1) = 0.01
    assert loss.item() == pytest.approx(0.06)


def test_delta_attention_by_hand():
    start, model, x = delta_pair()
    y = torch.tensor([[5.0], [11.0]])  # the start predicts x @ [1, 2] = [5, 11]: loss 0
    penalty = DELTA(start, beta=0.0).fit_attention(x, y, partial(task_loss, REG), "t")
    # zero channel 0: predictions [4, 8], MSE (1 + 9)/2 = 5; zero channel 1: [1, 3], MSE (16 + 64)/2 = 40
    # standardized increases [-1, 1]; W = 2 * softmax([-0.2, 0.2])
    w0 = 2 / (1 + math.exp(0.4))
    torch.testing.assert_close(penalty.channel_weights_[0], torch.tensor([w0, 2 - w0]))
    penalty.attach(model.train())
    model(x, "t")
    # only channel 0 moved: alpha * W_0 * 5
    assert penalty(model, x, "t").item() == pytest.approx(0.01 * w0 * 5)


def test_delta_needs_attention_before_training():
    start, model, x = delta_pair()
    penalty = DELTA(start).attach(model.train())
    model(x, "t")
    with pytest.raises(RuntimeError, match="fit_attention"):
        penalty(model, x, "t")


def test_delta_per_stage_hooks_match_stagewise_maps():
    torch.manual_seed(0)
    backbone = MLP(3, [4, 2], dropout=0.0)
    start = MultiTaskModel(backbone, [REG])
    model = copy.deepcopy(start).train()
    with torch.no_grad():
        model.backbone.net[1].weight.add_(0.5)  # first stage's Linear
    x = torch.randn(5, 3)
    penalty = DELTA(start, alpha=1.0, beta=0.0, attention=False).attach(model)
    model(x, "t")
    loss = penalty(model, x, "t")
    h1 = torch.relu(model.backbone.net[1](x))
    h2 = torch.relu(model.backbone.net[4](h1))
    r1 = torch.relu(start.backbone.net[1](x))
    r2 = torch.relu(start.backbone.net[4](r1))
    expected = (h1 - r1).pow(2).sum(1).mean() + (h2 - r2).pow(2).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert model.backbone.net[1].weight.grad.abs().sum() > 0
    assert not model.heads["t"].weight.grad.any()  # beta = 0 and the maps do not involve the head


def test_bss_smallest_singular_values_by_hand():
    model = model_on(linear_backbone([[3.0, 0.0], [0.0, 1.0]]), REG)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # features [[3,0],[0,1],[0,0]]: sigma = 3, 1
    p1 = BSS().attach(model.train())
    model(x, "t")
    assert p1(model, x, "t").item() == pytest.approx(0.001 * 1.0)
    p2 = BSS(eta=1.0, k=2).attach(model)
    model(x, "t")
    assert p2(model, x, "t").item() == pytest.approx(9.0 + 1.0)


def test_bss_matches_svdvals_and_routes_gradients():
    torch.manual_seed(1)
    model = MultiTaskModel(MLP(4, [3], dropout=0.0), [REG]).train()
    x = torch.randn(6, 4)
    penalty = BSS(eta=0.5, k=2).attach(model)
    model(x, "t")
    loss = penalty(model, x, "t")
    sigma = torch.linalg.svdvals(model.backbone(x).detach())
    assert loss.item() == pytest.approx(0.5 * (sigma[-1] ** 2 + sigma[-2] ** 2).item(), rel=1e-5)
    loss.backward()
    assert model.backbone.net[1].weight.grad is not None
    assert model.heads["t"].weight.grad is None


def test_bss_k_larger_than_the_spectrum_raises():
    model = model_on(linear_backbone([[1.0, 0.0], [0.0, 1.0]]), REG)
    penalty = BSS(k=3).attach(model.train())
    x = torch.ones(4, 2)
    model(x, "t")
    with pytest.raises(ValueError, match="k=3 exceeds the 2 singular values"):
        penalty(model, x, "t")


def lwf_pair():
    """Old model: identity backbone and a 2-class old head (identity); trained backbone W."""
    old = Task("old", "classification", 2)
    start = model_on(linear_backbone([[1.0, 0.0], [0.0, 1.0]]), old, [[1.0, 0.0], [0.0, 1.0]])
    model = model_on(linear_backbone([[0.0, 0.0], [2.0, 0.0]]), REG)
    return start, model, torch.tensor([[1.0, 0.0]])


def test_lwf_two_class_loss_by_hand():
    start, model, x = lwf_pair()
    penalty = LwF(start).attach(model.train())
    model(x, "t")
    loss = penalty(model, x, "t")
    # z_old = [1, 0] -> y' = softmax([0.5, 0]); z_new = W x = [0, 2] -> log softmax([0, 1])
    p = 1 / (1 + math.exp(-0.5))
    log_q0, log_q1 = -math.log(1 + math.e), 1 - math.log(1 + math.e)
    assert loss.item() == pytest.approx(-(p * log_q0 + (1 - p) * log_q1))
    loss.backward()
    assert model.backbone[0].weight.grad.abs().sum() > 0
    assert penalty.old_heads["old"].weight.grad.abs().sum() > 0  # old heads train jointly
    assert all(p.grad is None for p in penalty.start.parameters())
    assert model.heads["t"].weight.grad is None
    assert {id(q) for q in penalty.trainable_parameters()} == {id(q) for q in penalty.old_heads.parameters()}


def test_lwf_binary_head_reads_two_logits_and_frozen_heads_option():
    start = model_on(linear_backbone([[1.0]]), Task("old", "binary", 1), [[1.0]])
    model = model_on(linear_backbone([[0.0]]), REG)
    x = torch.tensor([[2.0]])
    penalty = LwF(start, lam=2.0, train_old_heads=False).attach(model.train())
    model(x, "t")
    # z_old = 2 -> y' = [1 - s, s] with s = sigmoid(2 / 2); z_new = 0 -> log q = log 1/2 each
    assert penalty(model, x, "t").item() == pytest.approx(2.0 * math.log(2))
    assert penalty.trainable_parameters() == []


def test_lwf_rejects_unknown_old_tasks():
    start, _, _ = lwf_pair()
    with pytest.raises(ValueError, match=r"not old tasks of the start model \(heads: old\)"):
        LwF(start, tasks=["new"])


@pytest.mark.parametrize(
    ("name", "hparams", "message"),
    [
        ("l2-sp", {"alpha": -1.0}, "alpha must be a finite number >= 0"),
        ("delta", {"temperature": 0.0}, "temperature must be a finite number > 0"),
        ("bss", {"k": 0}, "k must be an integer >= 1"),
        ("lwf", {"lam": float("nan")}, "lam must be a finite number >= 0"),
    ],
)
def test_bad_hyperparameters_raise(name, hparams, message):
    start, _, _ = lwf_pair()
    with pytest.raises(ValueError, match=message):
        create_regularizer(name, start, **hparams)


def test_penalties_that_need_a_start_say_so():
    with pytest.raises(ValueError, match="'l2-sp' needs the pretrained start model"):
        create_regularizer("l2-sp")


@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_every_regularizer_runs_one_step(name):
    torch.manual_seed(0)
    old = Task("old", "classification", 3)
    start = MultiTaskModel(MLP(4, [5, 3], dropout=0.0), [old])
    model = MultiTaskModel(copy.deepcopy(start.backbone), [REG]).train()
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(0.1)
    penalty = create_regularizer(name, start, **({"attention": False} if name == "delta" else {})).attach(model)
    x = torch.randn(8, 4)
    model(x, "t")
    loss = penalty(model, x, "t")
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert any(p.grad is not None for p in model.backbone.parameters())
    assert all(p.grad is None for p in penalty.parameters() if not p.requires_grad)


def test_hooks_ignore_eval_forwards_and_captures_are_used_once():
    model = model_on(linear_backbone([[1.0, 0.0], [0.0, 1.0]]), REG)
    penalty = BSS().attach(model.train())
    x = torch.ones(3, 2)
    model(x, "t")
    model.eval()
    model(torch.ones(5, 2), "t")  # validation forward: not captured
    penalty(model, x, "t")
    with pytest.raises(RuntimeError, match="no training-mode forward"):
        penalty(model, x, "t")
    penalty.detach()
    with pytest.raises(RuntimeError, match="call attach"):
        penalty(model, x, "t")


def test_wrong_batch_is_detected():
    model = model_on(linear_backbone([[1.0, 0.0], [0.0, 1.0]]), REG)
    penalty = BSS().attach(model.train())
    model(torch.ones(3, 2), "t")
    with pytest.raises(RuntimeError, match="batch of 3 rows, not this batch of 4"):
        penalty(model, torch.ones(4, 2), "t")


def test_start_copy_stays_frozen_and_in_eval_mode():
    start, model, _ = delta_pair()
    penalty = DELTA(start).train()
    assert not penalty.start.training
    assert all(not p.requires_grad for p in penalty.start.parameters())
    assert start.backbone[0].weight.requires_grad  # the caller's module is untouched
