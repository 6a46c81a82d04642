import torch

from polytask.methods.weighting import create

D = torch.float64


def test_weights_are_softmax_of_losses_over_mu():
    losses = torch.tensor([1.0, 2.0, 0.5], dtype=D)
    w = create("stch", 3, mu=0.5).weights(losses)
    torch.testing.assert_close(w, torch.softmax(losses / 0.5, 0))
    # and they are the gradient of the scalarization
    x = losses.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(create("stch", 3, mu=0.5).total(x), x)
    torch.testing.assert_close(w, g)


def test_small_mu_gives_max_large_mu_gives_mean():
    losses = torch.tensor([1.0, 2.0, 0.5], dtype=D)
    small = create("stch", 3, mu=1e-4)
    torch.testing.assert_close(small.weights(losses), torch.tensor([0.0, 1.0, 0.0], dtype=D))
    torch.testing.assert_close(small.total(losses), torch.tensor(2.0, dtype=D), rtol=0, atol=1e-3)
    large = create("stch", 3, mu=1e4)
    torch.testing.assert_close(large.weights(losses), torch.full((3,), 1 / 3, dtype=D), rtol=0, atol=1e-4)


def test_running_min_ideal_point():
    m = create("stch", 2, ideal="running_min")
    w = m.weights(torch.tensor([3.0, 1.0], dtype=D))
    torch.testing.assert_close(w, torch.full((2,), 0.5, dtype=D))  # L - z = 0
    w = m.weights(torch.tensor([3.5, 0.5], dtype=D))  # z = [3, 0.5]: L - z = [0.5, 0]
    torch.testing.assert_close(w, torch.softmax(torch.tensor([0.5, 0.0], dtype=D), 0))
    assert m.mu == 1.0


def test_huge_losses_stable():
    w = create("stch", 2, mu=1e-3).weights(torch.tensor([1e6, 2e6]))
    assert torch.isfinite(w).all() and w.dtype == torch.float32
