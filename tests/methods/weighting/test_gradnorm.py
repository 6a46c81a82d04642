import torch

from polytask.methods.weighting import create

D = torch.float64


def test_task_with_highest_loss_ratio_gains_weight():
    m = create("gradnorm", 2, lr=0.1)
    grads = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=D)
    g, w = m.combine(grads, torch.tensor([1.0, 1.0], dtype=D))  # sets L(0); on target: no change
    torch.testing.assert_close(w, torch.ones(2, dtype=D))
    torch.testing.assert_close(m.task_weights, torch.ones(2, dtype=D))
    # task 0 trains slower (ratio 1 vs 0.5): its target norm exceeds its weighted norm
    g, w = m.combine(grads, torch.tensor([1.0, 0.5], dtype=D))
    torch.testing.assert_close(w, torch.ones(2, dtype=D))  # weights used this step
    torch.testing.assert_close(m.task_weights, torch.tensor([1.1, 0.9], dtype=D))
    g, w = m.combine(grads, torch.tensor([1.0, 0.5], dtype=D))
    torch.testing.assert_close(w, torch.tensor([1.1, 0.9], dtype=D))
    torch.testing.assert_close(g, w @ grads)


def test_gradient_of_abs_loss_and_renormalisation():
    m = create("gradnorm", 3, lr=0.01, alpha=1.5)
    grads = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=D)
    m.combine(grads, torch.tensor([1.0, 1.0, 1.0], dtype=D))
    m.task_weights = torch.tensor([1.0, 1.0, 1.0], dtype=D)
    losses = torch.tensor([0.9, 0.6, 0.3], dtype=D)
    m.combine(grads, losses)
    # by hand, with autograd on L_grad = sum |w_t ||g_t|| - target| (target constant)
    w = torch.ones(3, dtype=D, requires_grad=True)
    norms = grads.norm(dim=1)
    gw = w * norms
    r = losses / 1.0
    target = (gw.mean() * (r / r.mean()) ** 1.5).detach()
    (dw,) = torch.autograd.grad((gw - target).abs().sum(), w)
    new = 1 - 0.01 * dw
    torch.testing.assert_close(m.task_weights, new * 3 / new.sum())
    assert abs(m.task_weights.sum().item() - 3) < 1e-12


def test_zero_gradients_leave_weights_alone_and_dtype():
    m = create("gradnorm", 2)
    grads = torch.zeros(2, 3)
    for loss in ([1.0, 1.0], [2.0, 0.1]):
        g, w = m.combine(grads, torch.tensor(loss))
    assert g.dtype == torch.float32 and w.dtype == torch.float32
    torch.testing.assert_close(w, torch.ones(2))
    assert m.requires_grads and m.alpha == 1.5
