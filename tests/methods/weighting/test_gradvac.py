"""GradVac against the paper's adjustment rule and EMA target."""

from __future__ import annotations

import math
import random

import torch

from polytask.methods.weighting import create


def test_one_adjustment_reaches_the_target_cosine():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        grads = torch.randn(2, 6, generator=g, dtype=torch.float64)
        target = float(torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0)) + 0.3
        m = create("gradvac", 2)
        m.phi_hat[0, 1] = target
        m.phi_hat[1, 0] = -1.0  # task 1 is never adjusted, so combined - g2 = g1'
        combined, w = m.combine(grads)
        g1p = combined - grads[1]
        cos = torch.nn.functional.cosine_similarity(g1p, grads[1], dim=0)
        assert abs(float(cos) - target) < 1e-12
        torch.testing.assert_close(w @ grads, combined)


def test_by_hand():
    # g1 = (1, 0), g2 = (0, 1), phi = 0 < phi_hat = 0.5:
    # g1' = g1 + g2 * 1 * (0.5 * 1 - 0) / (1 * sqrt(0.75)) = (1, 1/sqrt(3)).
    m = create("gradvac", 2)
    m.phi_hat[0, 1], m.phi_hat[1, 0] = 0.5, -1.0
    combined, w = m.combine(torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(w, torch.tensor([1.0, 1.0 + 1 / math.sqrt(3)], dtype=torch.float64))
    # The EMA uses the cosine measured before the adjustment: 0.99 * 0.5 + 0.01 * 0.
    assert abs(float(m.phi_hat[0, 1]) - 0.495) < 1e-15


def test_first_step_with_zero_target_is_pcgrad():
    grads = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    m = create("gradvac", 2)
    combined, w = m.combine(grads)
    torch.testing.assert_close(w, torch.tensor([2.0, 1.5], dtype=torch.float64))
    torch.testing.assert_close(combined, torch.tensor([0.5, 1.5], dtype=torch.float64))
    expected = -0.01 / math.sqrt(2)  # beta * phi, phi = -1/sqrt(2), from phi_hat = 0
    assert abs(float(m.phi_hat[0, 1]) - expected) < 1e-15 and abs(float(m.phi_hat[1, 0]) - expected) < 1e-15


def test_seeded_order_and_state():
    grads = torch.randn(4, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a = create("gradvac", 4, seed=1, beta=0.5)
    b = create("gradvac", 4, seed=1, beta=0.5)
    for _ in range(3):
        ra = a.combine(grads)
        random.seed(5)
        torch.manual_seed(5)
        rb = b.combine(grads)
        assert torch.equal(ra[0], rb[0]) and torch.equal(ra[1], rb[1])
    assert torch.equal(a.phi_hat, b.phi_hat)
    assert a.phi_hat.abs().sum() > 0


def test_dtype_and_identical_gradients():
    grads = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]])
    combined, w = create("gradvac", 3).combine(grads)
    assert combined.dtype == w.dtype == torch.float32
    torch.testing.assert_close(combined, grads.sum(0))
