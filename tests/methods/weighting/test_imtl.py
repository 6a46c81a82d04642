"""IMTL-G against its closed form and its defining property (equal projections)."""

from __future__ import annotations

import pytest
import torch

from polytask.methods.weighting import create


def test_two_tasks_by_hand():
    # g1 = (1, 0), g2 = (0, 2): D = (1, -2), U = (1, -1), D U^T = 3, g1 U^T = 1
    # -> alpha2 = 1/3, alpha1 = 2/3, combined = (2/3, 2/3): projection 2/3 on both u_t.
    grads = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    combined, w = create("imtl", 2).combine(grads)
    torch.testing.assert_close(w, torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))
    torch.testing.assert_close(combined, torch.tensor([2 / 3, 2 / 3], dtype=torch.float64))


def _projections(grads, combined):
    u = grads / grads.norm(dim=1, keepdim=True)
    return u @ combined


@pytest.mark.parametrize("t", [2, 3, 5])
def test_equal_projections_on_every_unit_gradient(t):
    grads = torch.randn(t, 9, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
    grads = grads * torch.tensor([10.0**k for k in range(t)], dtype=torch.float64)[:, None]
    combined, w = create("imtl", t).combine(grads)
    p = _projections(grads, combined)
    torch.testing.assert_close(p, p[0].expand(t), rtol=1e-9, atol=1e-9)
    assert abs(float(w.sum()) - 1.0) < 1e-12


@pytest.mark.parametrize(
    "grads",
    [
        [[1.0, 2.0], [2.0, 4.0]],  # parallel, different norms
        [[1.0, 2.0], [1.0, 2.0]],  # identical
        [[1.0, 2.0], [1.0, 2.0], [3.0, -1.0]],  # two identical among three
        [[1.0, 2.0], [-1.0, -2.0]],  # opposite
    ],
)
def test_parallel_gradients_do_not_raise(grads):
    grads = torch.tensor(grads, dtype=torch.float64)
    combined, w = create("imtl", grads.shape[0]).combine(grads)
    assert torch.isfinite(combined).all() and torch.isfinite(w).all()
    torch.testing.assert_close(w @ grads, combined)
    p = _projections(grads, combined)
    torch.testing.assert_close(p, p[0].expand(grads.shape[0]), rtol=1e-9, atol=1e-9)


def test_zero_gradient_and_dtype():
    grads = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    combined, w = create("imtl", 3).combine(grads)
    assert combined.dtype == w.dtype == torch.float32 and torch.isfinite(w).all()
    u = grads[[0, 2]]
    assert abs(float(u[0] @ combined - u[1] @ combined)) < 1e-6
