"""UPGrad: projections onto the dual cone {x : G x >= 0}, checked by their KKT conditions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from polytask.methods.weighting import create


def _grads(t, d, seed):
    return torch.randn(t, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("t, d, seed", [(2, 3, 0), (3, 5, 1), (5, 5, 2), (8, 17, 3), (6, 3, 4)])
def test_result_conflicts_with_no_task(t, d, seed):
    g = _grads(t, d, seed)
    x, w = create("upgrad", t).combine(g)
    assert (g @ x >= -1e-12 * g.norm() ** 2).all()
    torch.testing.assert_close(w @ g, x)


def test_non_conflicting_gradients_give_their_mean():
    g = torch.tensor([[1.0, 0.2, 0.0], [0.5, 1.0, 0.0], [0.0, 0.3, 2.0]], dtype=torch.float64)
    assert ((g @ g.T) >= 0).all()
    x, w = create("upgrad", 3).combine(g)
    torch.testing.assert_close(x, g.mean(0))
    torch.testing.assert_close(w, torch.full((3,), 1 / 3, dtype=torch.float64))


def test_two_tasks_by_hand():
    # g1 = (1, 0), g2 = (-1, 1): projecting g1 onto {x: g2.x >= 0} gives (0.5, 0.5);
    # g2 onto {x: g1.x >= 0} gives (0, 1). Weights: w^(1) = (1, 0.5), w^(2) = (1, 1).
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    x, w = create("upgrad", 2).combine(g)
    torch.testing.assert_close(x, torch.tensor([0.25, 0.75], dtype=torch.float64))
    torch.testing.assert_close(w, torch.tensor([1.0, 0.75], dtype=torch.float64))


def _exact_reference(g):
    # Each projection by NNLS directly on G^T (D x T): min_{v>=0} ||G^T v + g_i||.
    gn = g.numpy()
    t = gn.shape[0]
    w = np.eye(t)
    for i in range(t):
        w[i] += nnls(gn.T, -gn[i])[0]
    return torch.from_numpy(w.mean(0))


def test_ill_conditioned_exact_and_regulariser_moves_answer():
    base = _grads(4, 6, 7)
    g = base.clone()
    g[1] = -g[0] + 1e-3 * base[1]  # nearly opposite: ill-conditioned Gram matrix
    g[3] = g[2] + 1e-3 * base[3]
    x, w = create("upgrad", 4).combine(g)
    ref = _exact_reference(g)
    torch.testing.assert_close(w, ref, rtol=1e-6, atol=1e-9)
    _, w_reg = create("upgrad", 4, reg_eps=1e-4).combine(g)
    assert (w_reg - ref).abs().max() > 1e-4  # the regulariser is not exact UPGrad


def test_pref_vector():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
    x, w = create("upgrad", 2, pref_vector=[1.0, 0.0]).combine(g)
    torch.testing.assert_close(x, torch.tensor([0.5, 0.5], dtype=torch.float64))
