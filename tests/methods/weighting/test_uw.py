import math

import pytest
import torch

from polytask.methods.weighting import create


def test_weights_start_at_one_and_follow_one_descent_step():
    m = create("uw", 2, lr=0.1)
    losses = torch.tensor([2.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(m.weights(losses), torch.ones(2, dtype=torch.float64))
    # s_t <- 0 - lr * (1 - exp(0) L_t) = [0.1, -0.05]; weights exp(-s_t).
    w = m.weights(losses)
    expected = torch.tensor([math.exp(-0.1), math.exp(0.05)], dtype=torch.float64)
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(m.log_vars, torch.tensor([0.1 - 0.1 * (1 - math.exp(-0.1) * 2), -0.05 - 0.1 * (1 - math.exp(0.05) * 0.5)], dtype=torch.float64))


def test_converges_to_inverse_loss_weights():
    m = create("uw", 2, lr=0.1)
    losses = torch.tensor([4.0, 0.25])
    for _ in range(2000):
        w = m.weights(losses)
    torch.testing.assert_close(w, 1 / losses, rtol=1e-4, atol=1e-4)


def test_combine_and_dtype():
    m = create("uw", 2)
    grads = torch.randn(2, 5)
    g, w = m.combine(grads, torch.tensor([1.0, 2.0]))
    assert g.dtype == torch.float32 and w.dtype == torch.float32
    torch.testing.assert_close(g, w @ grads)
    assert not m.requires_grads


def test_default_lr_documented():
    assert create("uw", 3).lr == pytest.approx(1e-3)
