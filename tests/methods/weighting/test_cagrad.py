"""CAGrad against its dual objective: closed form (2 tasks), grids, and the c = 0 limit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polytask.methods.weighting import create
from polytask.methods.weighting.cagrad import cagrad_dual, cagrad_dual_two_tasks


def _dual(g, w, c):
    """Dual objective at one weight vector ``w [T]`` or many ``w [N, T]``."""
    g0 = g.mean(0)
    gw = w @ g
    return gw @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(gw, axis=-1)


def _two_task_cases():
    rng = np.random.default_rng(0)
    cases = [np.array([[1.0, 0.0], [-0.5, 1.0]]), np.array([[1.0, 0.0], [0.0, 2.0]]),
             np.array([[2.0, 1.0], [-1.0, 0.2]]), np.array([[1.0, 1.0], [1.0, 1.0]])]
    for _ in range(6):
        g = rng.normal(size=(2, 5))
        g[1] = -0.7 * g[0] + 0.4 * rng.normal(size=5)  # conflicting
        cases.append(g)
    return cases


@pytest.mark.parametrize("g", _two_task_cases())
@pytest.mark.parametrize("c", [0.1, 0.5, 2.0])
def test_two_task_closed_form_matches_fine_grid(g, c):
    gram = g @ g.T
    x = cagrad_dual_two_tasks(gram, c * np.linalg.norm(g.mean(0)))
    xs = np.linspace(0.0, 1.0, 100001)
    vals = _dual(g, np.stack([xs, 1.0 - xs], 1), c)
    best = vals.min()
    assert _dual(g, np.array([x, 1.0 - x]), c) <= best + 1e-12
    if np.ptp(vals) > 1e-9:  # unique minimiser: the closed form is within the grid step
        assert abs(x - xs[int(np.argmin(vals))]) <= 2e-5


def test_two_task_update_by_hand():
    # g1 = (1, 0), g2 = (-0.5, 1), c = 0.5, rescale = 0: d = g0 + (c||g0||/||g_w||) g_w.
    g = torch.tensor([[1.0, 0.0], [-0.5, 1.0]], dtype=torch.float64)
    combined, w = create("cagrad", 2, c=0.5, rescale=0).combine(g)
    gn = g.numpy()
    x = cagrad_dual_two_tasks(gn @ gn.T, 0.5 * np.linalg.norm(gn.mean(0)))
    gw = x * gn[0] + (1 - x) * gn[1]
    g0 = gn.mean(0)
    expected = g0 + 0.5 * np.linalg.norm(g0) / np.linalg.norm(gw) * gw
    np.testing.assert_allclose(combined.numpy(), expected, rtol=1e-12)
    torch.testing.assert_close(w @ g, combined)
    # The update lies in the ball ||d - g0|| <= c ||g0|| (on its boundary).
    assert abs(np.linalg.norm(expected - g0) - 0.5 * np.linalg.norm(g0)) < 1e-12


@pytest.mark.parametrize("t", [1, 2, 3, 6])
def test_c_zero_is_the_mean_gradient(t):
    g = torch.randn(t, 7, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
    for rescale in (0, 1, 2):
        combined, w = create("cagrad", t, c=0.0, rescale=rescale).combine(g)
        torch.testing.assert_close(combined, g.mean(0))
        torch.testing.assert_close(w, torch.full((t,), 1.0 / t, dtype=torch.float64))


def test_three_tasks_beats_dense_simplex_grid():
    rng = np.random.default_rng(4)
    g = rng.normal(size=(3, 6))
    g[2] = -0.6 * g[0] + 0.3 * rng.normal(size=6)
    c = 0.5
    w = cagrad_dual(g @ g.T, c * np.linalg.norm(g.mean(0)))
    n = 400
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    ok = i + j <= n
    grid = np.stack([i[ok] / n, j[ok] / n, 1 - (i[ok] + j[ok]) / n], 1)
    best = _dual(g, grid, c).min()
    assert _dual(g, w, c) <= best + 1e-9


def test_rescale_and_weights_convention():
    g = torch.randn(4, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    d0, w0 = create("cagrad", 4, c=0.5, rescale=0).combine(g)
    d1, w1 = create("cagrad", 4, c=0.5).combine(g)  # default rescale = 1
    d2, _ = create("cagrad", 4, c=0.5, rescale=2).combine(g)
    torch.testing.assert_close(d1, d0 / 1.25)
    torch.testing.assert_close(d2, d0 / 1.5)
    torch.testing.assert_close(w0 @ g, d0)
    torch.testing.assert_close(w1 @ g, d1)


def test_worst_task_improves_over_mean():
    # CAGrad maximises min_i g_i . d in the ball around g0: at least as good as g0 itself.
    g = torch.tensor([[1.0, 0.0, 0.0], [-0.9, 0.3, 0.0], [0.0, 0.1, 1.0]], dtype=torch.float64)
    d, _ = create("cagrad", 3, c=0.5, rescale=0).combine(g)
    assert (g @ d).min() >= (g @ g.mean(0)).min() - 1e-12


def test_opposite_gradients_do_not_blow_up():
    g = torch.tensor([[1.0, 2.0], [-1.0, -2.0], [1.0, 0.0]], dtype=torch.float64)
    d, w = create("cagrad", 3).combine(g)
    assert torch.isfinite(d).all() and torch.isfinite(w).all()
    torch.testing.assert_close(w @ g, d)
