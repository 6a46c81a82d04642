"""Batched per-task gradients equal the one-pass-per-task gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polytask.training.taskgrads import assign_gradient, task_gradients


def _setup():
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 4))
    heads = nn.ModuleList([nn.Linear(4, 1) for _ in range(3)])
    x = torch.randn(16, 5)
    z = trunk(x)
    losses = [(h(z) ** 2).mean() for h in heads]
    return trunk, losses


@pytest.mark.parametrize("batched", [False, True])
def test_rows_match_separate_backward_passes(batched):
    trunk, losses = _setup()
    params = list(trunk.parameters())
    g = task_gradients(losses, params, batched=batched)
    assert g.shape == (3, sum(p.numel() for p in params))
    for t, loss in enumerate(losses):
        ref = torch.cat([q.reshape(-1) for q in torch.autograd.grad(loss, params, retain_graph=True)])
        torch.testing.assert_close(g[t], ref)


def test_assign_gradient_round_trip():
    trunk, losses = _setup()
    params = list(trunk.parameters())
    g = task_gradients(losses, params)
    assign_gradient(params, g.sum(0))
    total = torch.autograd.grad(sum(losses), params)
    for p, ref in zip(params, total):
        torch.testing.assert_close(p.grad, ref)


@pytest.mark.parametrize("batched", [False, True])
def test_unused_parameter_gives_zero_row_entries(batched):
    a = nn.Parameter(torch.tensor([1.0, 2.0]))
    b = nn.Parameter(torch.tensor([3.0]))
    g = task_gradients([(a**2).sum(), (a * 0).sum() + 0 * b.sum()], [a, b], batched=batched)
    torch.testing.assert_close(g, torch.tensor([[2.0, 4.0, 0.0], [0.0, 0.0, 0.0]]))
