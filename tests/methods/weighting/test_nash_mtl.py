"""Nash-MTL against its defining equations alpha_i (G G^T alpha)_i = 1."""

from __future__ import annotations

import warnings

import pytest
import torch

from polytask.methods.weighting import create


def _residual(grads, alpha):
    m = grads @ grads.T
    return (alpha * (m @ alpha) - 1.0).abs().max().item()


def _conflicting():
    # g1 . (g1 + g2 + g3) < 0: (G G^T 1)_1 < 0, the case where the
    # reference's first cvxpy solve is "unbounded" and it silently returns alpha = 1.
    return torch.tensor([[1.0, 0.0, 0.0], [-1.5, 0.1, 0.3], [0.2, 1.0, 0.0]], dtype=torch.float64)


def test_fallback_case_is_solved_exactly():
    grads = _conflicting()
    assert ((grads @ grads.T) @ torch.ones(3, dtype=torch.float64) < 0).any()
    combined, alpha = create("nash-mtl", 3).combine(grads)
    assert (alpha > 0).all()
    assert _residual(grads, alpha) < 1e-8
    assert (alpha - 1.0).abs().max() > 0.1  # not the silent alpha = 1 fallback
    torch.testing.assert_close(combined, alpha @ grads)
    # Every task improves: g_i . d = 1 / alpha_i > 0.
    torch.testing.assert_close(grads @ combined, 1.0 / alpha)


@pytest.mark.parametrize("t, d, seed", [(2, 5, 0), (3, 17, 1), (8, 17, 2), (5, 6, 3)])
def test_random_residual(t, d, seed):
    grads = torch.randn(t, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    _, alpha = create("nash-mtl", t).combine(grads)
    assert (alpha > 0).all() and _residual(grads, alpha) < 1e-8


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_orthogonal_gradients_give_inverse_norms(scale):
    grads = scale * torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 2.0]], dtype=torch.float64)
    _, alpha = create("nash-mtl", 3).combine(grads)
    torch.testing.assert_close(alpha, 1.0 / grads.norm(dim=1), rtol=1e-10, atol=0)


def test_identical_gradients():
    g = torch.tensor([[1.0, 2.0, 2.0]], dtype=torch.float64).repeat(4, 1)
    _, alpha = create("nash-mtl", 4).combine(g)
    # alpha_i ||g||^2 sum(alpha) = 1  ->  alpha_i = 1 / (||g|| sqrt(T)) = 1/6.
    torch.testing.assert_close(alpha, torch.full((4,), 1.0 / 6.0, dtype=torch.float64))


def test_zero_gradient_task_gets_zero_weight():
    grads = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    _, alpha = create("nash-mtl", 3).combine(grads)
    torch.testing.assert_close(alpha, torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64))


def test_opposite_gradients_no_positive_solution():
    grads = torch.tensor([[1.0, 0.5], [-2.0, -1.0]], dtype=torch.float64)
    m = create("nash-mtl", 2)
    with pytest.warns(RuntimeWarning, match="Pareto-stationary"):
        combined, alpha = m.combine(grads)
    assert not m.last_solve_ok
    assert alpha.tolist() == [0.0, 0.0] and combined.abs().max() == 0


def test_no_clipping_by_default_and_optional_clipping():
    grads = torch.eye(3, dtype=torch.float64)
    combined, _ = create("nash-mtl", 3).combine(grads)
    assert abs(combined.norm().item() - 3**0.5) < 1e-12  # not clipped to 1
    combined, w = create("nash-mtl", 3, max_norm=1.0).combine(grads)
    assert abs(combined.norm().item() - 1.0) < 1e-12
    torch.testing.assert_close(w @ grads, combined)


def test_update_weights_every_reuses_alpha():
    grads = _conflicting()
    m = create("nash-mtl", 3, update_weights_every=2)
    _, a1 = m.combine(grads)
    _, a2 = m.combine(2 * grads)  # reused
    _, a3 = m.combine(2 * grads)  # recomputed: alpha scales as 1 / scale
    torch.testing.assert_close(a1, a2)
    torch.testing.assert_close(a3, a1 / 2)


def test_float32_in_float32_out():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        combined, w = create("nash-mtl", 3).combine(_conflicting().float())
    assert combined.dtype == torch.float32 and w.dtype == torch.float32
