import torch

from polytask.methods.weighting import create


def test_ones_until_two_epochs_then_paper_formula():
    m = create("dwa", 2)
    ones = torch.ones(2, dtype=torch.float64)
    # epoch 1: average [1, 2]
    for loss in ([0.5, 1.0], [1.5, 3.0]):
        torch.testing.assert_close(m.weights(torch.tensor(loss, dtype=torch.float64)), ones)
    m.on_epoch_end()
    # epoch 2: average [0.5, 1.5]
    for loss in ([0.5, 1.0], [0.5, 2.0]):
        torch.testing.assert_close(m.weights(torch.tensor(loss, dtype=torch.float64)), ones)
    m.on_epoch_end()
    w = m.weights(torch.tensor([9.0, 9.0], dtype=torch.float64))
    r = torch.tensor([0.5 / 1.0, 1.5 / 2.0], dtype=torch.float64)
    e = torch.exp(r / 2)
    torch.testing.assert_close(w, 2 * e / e.sum())
    assert w.sum().item() == torch.tensor(2.0, dtype=torch.float64).item()
    # the slower-decreasing task (ratio 0.75) gets the larger weight
    assert w[1] > w[0]


def test_temperature_and_rolling_window():
    m = create("dwa", 2, temp=1.0)
    for avg in ([1.0, 1.0], [2.0, 1.0], [2.0, 2.0]):
        m.weights(torch.tensor(avg))
        m.on_epoch_end()
    # the window holds epochs 2 and 3: ratios [1, 2]
    w = m.weights(torch.tensor([1.0, 1.0]))
    e = torch.exp(torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(w, 2 * e / e.sum())


def test_empty_epoch_is_ignored_and_zero_loss_is_finite():
    m = create("dwa", 2)
    m.weights(torch.tensor([0.0, 1.0]))
    m.on_epoch_end()
    m.on_epoch_end()
    m.weights(torch.tensor([0.0, 1.0]))
    m.on_epoch_end()
    w = m.weights(torch.tensor([1.0, 1.0]))
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w, torch.ones(2))
