"""PCGrad against the paper's projection, worked by hand and in vector form."""

from __future__ import annotations

import random

import torch

from polytask.methods.weighting import create


def test_two_conflicting_gradients_by_hand():
    # g1 = (1, 0), g2 = (-1, 1), g1.g2 = -1 < 0:
    # g1' = g1 - (-1)/2 g2 = (0.5, 0.5);  g2' = g2 - (-1)/1 g1 = (0, 1);  sum = (0.5, 1.5).
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    combined, w = create("pcgrad", 2).combine(grads)
    torch.testing.assert_close(combined, torch.tensor([0.5, 1.5], dtype=torch.float64))
    torch.testing.assert_close(w, torch.tensor([2.0, 1.5], dtype=torch.float64))
    # Each projected gradient is orthogonal to the one it conflicted with.
    g1p, g2p = torch.tensor([0.5, 0.5], dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert float(g1p @ grads[1]) == 0.0 and float(g2p @ grads[0]) == 0.0


def test_no_conflict_is_the_plain_sum():
    grads = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    combined, w = create("pcgrad", 2).combine(grads)
    assert w.tolist() == [1.0, 1.0] and combined.tolist() == [2.0, 1.0]
    assert combined.dtype == torch.float32


def _reference(grads, seed):
    """Algorithm 1 on vectors, with the same order draws as the method."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(grads.shape[0]):
        gi = grads[i].clone()
        for j in torch.randperm(grads.shape[0], generator=gen).tolist():
            if j != i and gi @ grads[j] < 0:
                gi = gi - (gi @ grads[j]) / (grads[j] @ grads[j]) * grads[j]
        out.append(gi)
    return torch.stack(out).sum(0)


def test_matches_vector_reference_and_is_seeded():
    g = torch.Generator().manual_seed(1)
    grads = torch.randn(5, 7, generator=g, dtype=torch.float64)
    combined, w = create("pcgrad", 5, seed=3).combine(grads)
    torch.testing.assert_close(combined, _reference(grads, 3))
    torch.testing.assert_close(w @ grads, combined)
    random.seed(0)
    torch.manual_seed(0)
    again = create("pcgrad", 5, seed=3).combine(grads)[0]
    assert torch.equal(combined, again)


def test_order_matters_and_comes_from_the_seed():
    # Three mutually conflicting gradients: different orders give different results.
    grads = torch.tensor([[1.0, 0.1], [-0.8, 0.6], [-0.3, -1.0]], dtype=torch.float64)
    results = {tuple(create("pcgrad", 3, seed=s).combine(grads)[0].tolist()) for s in range(20)}
    assert len(results) > 1
