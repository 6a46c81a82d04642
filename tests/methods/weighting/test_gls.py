import torch

from polytask.methods.weighting import create


def test_hand_case():
    w = create("gls", 2).weights(torch.tensor([1.0, 4.0], dtype=torch.float64))
    # total = sqrt(1 * 4) = 2; w_t = total / (T L_t) = [1, 0.25]
    torch.testing.assert_close(w, torch.tensor([1.0, 0.25], dtype=torch.float64))


def test_matches_autograd_of_geometric_mean():
    losses = torch.tensor([0.3, 2.0, 5.0], dtype=torch.float64, requires_grad=True)
    total = losses.prod() ** (1 / 3)
    (grad,) = torch.autograd.grad(total, losses)
    torch.testing.assert_close(create("gls", 3).weights(losses.detach()), grad)


def test_relative_weights_scale_invariant():
    m = create("gls", 2)
    a = m.weights(torch.tensor([1.0, 2.0], dtype=torch.float64))
    b = m.weights(torch.tensor([100.0, 2.0], dtype=torch.float64))
    # scaling task 0 by 100 scales its weight by 1/10 and task 1's by 10: ratio w0/w1 * 100
    torch.testing.assert_close(b[0] / b[1], a[0] / a[1] / 100)


def test_nonpositive_losses_are_finite_and_dtype_kept():
    w = create("gls", 3).weights(torch.tensor([0.0, -1.0, 2.0]))
    assert torch.isfinite(w).all() and (w > 0).all() and w.dtype == torch.float32
