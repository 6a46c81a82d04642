"""GradDrop against the paper's sign-purity rule."""

from __future__ import annotations

import pytest
import torch

from polytask.methods.weighting import create


def test_same_sign_coordinates_are_never_dropped():
    grads = torch.tensor([[1.0, -2.0, 0.5, 0.0], [3.0, -1.0, 0.0, 0.0]], dtype=torch.float64)
    for seed in range(10):
        combined, w = create("graddrop", 2, seed=seed).combine(grads)
        assert w is None
        torch.testing.assert_close(combined, grads.sum(0))


def test_purity_by_hand_with_the_same_draws():
    # Per coordinate g1 = 1, g2 = -3: P = 0.5 (1 + (1 - 3) / (1 + 3)) = 0.25.
    # Keep the positive part (1) where U < 0.25, the negative part (-3) otherwise.
    d = 4000
    grads = torch.stack([torch.ones(d), -3 * torch.ones(d)]).double()
    combined, _ = create("graddrop", 2, seed=7).combine(grads)
    u = torch.rand(d, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    torch.testing.assert_close(combined, torch.where(u < 0.25, 1.0, -3.0).double())
    # ... so the positive sign survives in about a quarter of the coordinates.
    assert abs(float((combined > 0).double().mean()) - 0.25) < 0.03


def test_leak():
    grads = torch.tensor([[1.0], [-3.0]], dtype=torch.float64)
    full = create("graddrop", 2, leak=1.0).combine(grads)[0]
    torch.testing.assert_close(full, grads.sum(0))
    half = create("graddrop", 2, seed=0, leak=0.5).combine(grads)[0]
    pure = create("graddrop", 2, seed=0).combine(grads)[0]
    torch.testing.assert_close(half, 0.5 * grads.sum(0) + 0.5 * pure)
    per_task = create("graddrop", 2, seed=0, leak=[1.0, 0.0]).combine(grads)[0]
    torch.testing.assert_close(per_task, grads[0] + (pure if pure < 0 else 0 * pure))
    with pytest.raises(ValueError):
        create("graddrop", 2, leak=1.5)


def test_seeded_and_dtype():
    g = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    a = create("graddrop", 3, seed=2).combine(g)[0]
    torch.manual_seed(1)
    b = create("graddrop", 3, seed=2).combine(g)[0]
    assert torch.equal(a, b) and a.dtype == torch.float32
    c = create("graddrop", 3, seed=3).combine(g)[0]
    assert not torch.equal(a, c)
