"""MGDA against Sener & Koltun's closed form and a brute-force min-norm QP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from polytask.methods.weighting import create


def _gamma(g1, g2):
    return np.clip(g2 @ (g2 - g1) / ((g1 - g2) @ (g1 - g2)), 0.0, 1.0)


def test_two_tasks_closed_form_by_hand():
    # g1 = (1, 0), g2 = (0, 2): gamma = g2.(g2-g1)/||g1-g2||^2 = 4/5.
    grads = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    combined, w = create("mgda", 2).combine(grads)
    torch.testing.assert_close(w, torch.tensor([0.8, 0.2], dtype=torch.float64))
    torch.testing.assert_close(combined, torch.tensor([0.8, 0.4], dtype=torch.float64))
    # The min-norm point is orthogonal to g1 - g2.
    assert abs(float(combined @ (grads[0] - grads[1]))) < 1e-12


@pytest.mark.parametrize(
    "grads, expected",
    [
        ([[1.0, 0.0], [2.0, 0.0]], [1.0, 0.0]),  # g1 is the shorter end: vertex 1
        ([[3.0, 1.0], [1.0, 0.0]], [0.0, 1.0]),  # gamma = 1.(1-3)/5 < 0: vertex 0
    ],
)
def test_exact_vertices(grads, expected):
    combined, w = create("mgda", 2).combine(torch.tensor(grads, dtype=torch.float64))
    assert w.tolist() == expected  # exactly 1/0, not 0.999/0.001


@pytest.mark.parametrize("scale", [1e6, 1e-6])
def test_huge_and_tiny_norms(scale):
    g = np.array([[1.0, 0.3, -0.2], [-0.5, 1.0, 0.4]]) * scale
    combined, w = create("mgda", 2).combine(torch.tensor(g))
    gam = _gamma(g[0], g[1])
    np.testing.assert_allclose(w.numpy(), [gam, 1 - gam], rtol=1e-12)
    vertex = create("mgda", 2).combine(torch.tensor([[1e6, 0.0], [1e6, 1e6]]))[1]
    assert vertex.tolist() == [1.0, 0.0]


def _qp(g):
    t = g.shape[0]
    gram = g @ g.T
    best = None
    for start in np.eye(t).tolist() + [np.full(t, 1 / t).tolist()]:
        res = minimize(
            lambda a: a @ gram @ a,
            np.array(start),
            jac=lambda a: 2 * gram @ a,
            method="SLSQP",
            bounds=[(0, 1)] * t,
            constraints=[{"type": "eq", "fun": lambda a: a.sum() - 1}],
            options={"ftol": 1e-15, "maxiter": 1000},
        )
        if best is None or res.fun < best.fun:
            best = res
    return best.x, best.fun


@pytest.mark.parametrize("seed", range(5))
def test_three_or_more_tasks_match_the_qp(seed):
    rng = np.random.default_rng(seed)
    t = 3 + seed % 3
    g = rng.normal(size=(t, 4)) + 0.3
    combined, w = create("mgda", t).combine(torch.tensor(g))
    _, best = _qp(g)
    w = w.numpy()
    assert (w >= 0).all() and abs(w.sum() - 1) < 1e-12
    assert float(combined @ combined) <= best + 1e-10
    assert float(combined @ combined) >= best - 1e-8  # sanity of the reference


def test_three_tasks_brute_force_grid():
    g = np.array([[1.0, 0.2], [-0.6, 0.9], [0.1, -1.0]])
    _, w = create("mgda", 3).combine(torch.tensor(g))
    grid = np.linspace(0, 1, 401)
    a, b = np.meshgrid(grid, grid)
    ok = a + b <= 1
    pts = np.stack([a[ok], b[ok], 1 - a[ok] - b[ok]], 1)
    best = ((pts @ g) ** 2).sum(1).min()
    val = float(((w.numpy() @ g) ** 2).sum())
    assert val <= best + 1e-12


def test_three_task_vertex_is_exact():
    # g1 is tiny and points into the others' half-space: the min-norm point is g1 itself.
    g = torch.tensor([[0.1, 0.1], [1.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    assert create("mgda", 3).combine(g)[1].tolist() == [1.0, 0.0, 0.0]


def test_l2_normalization_applies_weights_to_raw_gradients():
    g = torch.tensor([[2.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    combined, w = create("mgda", 2, normalization="l2").combine(g, torch.ones(2, dtype=torch.float64))
    # Normalised gradients e1, e2 -> gamma = 1/2, applied to the raw gradients.
    torch.testing.assert_close(w, torch.tensor([0.5, 0.5], dtype=torch.float64))
    torch.testing.assert_close(combined, torch.tensor([1.0, 5.0], dtype=torch.float64))


def test_loss_normalizations():
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    losses = torch.tensor([1.0, 3.0], dtype=torch.float64)
    # loss: g~ = (1,0), (0,1/3): gamma = (1/9)/(1 + 1/9) = 0.1.
    _, w = create("mgda", 2, normalization="loss").combine(g, losses)
    torch.testing.assert_close(w, torch.tensor([0.1, 0.9], dtype=torch.float64))
    _, w = create("mgda", 2, normalization="loss+").combine(2 * g, losses)
    torch.testing.assert_close(w, torch.tensor([0.1, 0.9], dtype=torch.float64))
    with pytest.raises(ValueError):
        create("mgda", 2, normalization="loss").combine(g)
    with pytest.raises(ValueError):
        create("mgda", 2, normalization="bogus")


def test_dtype_and_zero_gradient():
    g = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]], dtype=torch.float32)
    combined, w = create("mgda", 3, normalization="l2").combine(g, torch.ones(3))
    assert combined.dtype == w.dtype == torch.float32
    assert w.tolist() == [0.0, 1.0, 0.0] and combined.abs().max() == 0
