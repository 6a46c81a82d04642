import math

import torch

from polytask.methods.weighting import create

D = torch.float64


def test_initial_weights_proportional_to_z_over_loss():
    w = create("famo", 2).weights(torch.tensor([1.0, 2.0], dtype=D))
    # z uniform: w_t = (1/L_t) / sum_k (1/L_k) = [2/3, 1/3]
    torch.testing.assert_close(w, torch.tensor([2 / 3, 1 / 3], dtype=D))


def test_sgd_update_is_algorithm_1_and_faster_task_logit_decreases():
    m = create("famo", 2, optimizer="sgd", lr=0.5, gamma=0.0)
    before = torch.tensor([1.0, 2.0], dtype=D)
    after = torch.tensor([0.5, 1.9], dtype=D)  # task 0's log loss falls faster
    m.weights(before)
    m.after_step(after)
    delta = torch.log(before) - torch.log(after)
    z = torch.full((2,), 0.5, dtype=D)
    expected = -0.5 * z * (delta - (z * delta).sum())
    torch.testing.assert_close(m.logits, expected, rtol=1e-6, atol=1e-9)
    assert m.logits[0] < 0 < m.logits[1]
    # next weights: w ∝ z / L with the new z
    losses = torch.tensor([1.0, 1.0], dtype=D)
    w = m.weights(losses)
    z_new = torch.softmax(m.logits, 0)
    torch.testing.assert_close(w, z_new / z_new.sum())
    assert w[1] > w[0]


def test_adam_default_moves_in_the_same_direction_by_about_lr():
    m = create("famo", 2)
    assert (m.lr, m.gamma, m.optimizer) == (0.025, 0.001, "adam")
    m.weights(torch.tensor([1.0, 2.0], dtype=D))
    m.after_step(torch.tensor([0.5, 1.9], dtype=D))
    # the first Adam step is lr * sign(grad)
    torch.testing.assert_close(m.logits, torch.tensor([-0.025, 0.025], dtype=D), rtol=1e-5, atol=1e-7)


def test_weight_decay_pulls_logits_to_zero():
    m = create("famo", 2, optimizer="sgd", lr=0.1, gamma=0.5)
    m.logits = torch.tensor([1.0, -1.0], dtype=D)
    same = torch.tensor([1.0, 1.0], dtype=D)
    m.weights(same)
    m.after_step(same)  # delta = 0: only decay
    torch.testing.assert_close(m.logits, torch.tensor([0.95, -0.95], dtype=D))


def test_min_losses_and_no_update_without_after_step():
    m = create("famo", 2, min_losses=[0.5, 0.0])
    w = m.weights(torch.tensor([1.0, 1.0], dtype=D))
    # gaps [0.5, 1]: w ∝ [2, 1]
    torch.testing.assert_close(w, torch.tensor([2 / 3, 1 / 3], dtype=D))
    m.weights(torch.tensor([1.0, 1.0], dtype=D))
    torch.testing.assert_close(m.logits, torch.zeros(2, dtype=D))
    w0 = m.weights(torch.tensor([0.5, 1.0], dtype=D))  # loss at its bound: finite
    assert torch.isfinite(w0).all() and math.isclose(w0.sum().item(), 1.0)
