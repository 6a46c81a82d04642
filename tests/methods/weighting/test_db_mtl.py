import torch

from polytask.methods.weighting import create

D = torch.float64
GRADS = torch.tensor([[3.0, 0.0], [0.0, 1.0]], dtype=D)
LOSSES = torch.tensor([1.0, 0.5], dtype=D)


def test_paper_direction_hand_case():
    m = create("db-mtl", 2)
    g, w = m.combine(GRADS, LOSSES)
    # h = g / L = [[3,0],[0,2]]; EMA from 0 with beta 0.9: 0.1 h, norms [0.3, 0.2]
    # M = 0.3; combined = M * sum h_t / ||h_t|| = [0.3, 0.3]
    assert w is None
    torch.testing.assert_close(g, torch.tensor([0.3, 0.3], dtype=D))
    torch.testing.assert_close(m.last_scales, torch.tensor([1.0, 1.5], dtype=D), rtol=1e-6, atol=0)
    # second step, same input: EMA = 0.19 h, combined = 0.57 * [1, 1]
    g, _ = m.combine(GRADS, LOSSES)
    torch.testing.assert_close(g, torch.tensor([0.57, 0.57], dtype=D))


def test_current_direction_weights_are_max_ema_norm_over_grad_norm():
    m = create("db-mtl", 2, direction="current")
    g, w = m.combine(GRADS, LOSSES)
    # w_t = M / ||g_t|| = [0.3 / 3, 0.3 / 1]
    torch.testing.assert_close(w, torch.tensor([0.1, 0.3], dtype=D), rtol=1e-6, atol=0)
    torch.testing.assert_close(g, w @ GRADS)
    scaled = w[:, None] * GRADS
    torch.testing.assert_close(scaled.norm(dim=1), torch.full((2,), 0.3, dtype=D), rtol=1e-6, atol=0)


def test_log_transform_loss_scale_sets_magnitude():
    # doubling every loss halves the log-gradients and so the combined step
    a = create("db-mtl", 2).combine(GRADS, LOSSES)[0]
    b = create("db-mtl", 2).combine(GRADS, 2 * LOSSES)[0]
    torch.testing.assert_close(b, a / 2)


def test_beta_sigma_schedule_and_zero_rows():
    m = create("db-mtl", 2, beta=0.9, beta_sigma=1.0)
    grads = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    m.combine(grads, torch.tensor([1.0, 1.0]))  # beta_1 = 0.9
    g, _ = m.combine(grads, torch.tensor([1.0, 1.0]))  # beta_2 = 0.45: EMA = 0.45*0.1 + 0.55
    assert g.dtype == torch.float32 and torch.isfinite(g).all()
    torch.testing.assert_close(g, torch.tensor([0.595, 0.0]))
