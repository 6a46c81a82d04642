"""Aligned-MTL: the aligned task gradients are orthogonal with equal norms sqrt(lambda_min)."""

from __future__ import annotations

import pytest
import torch

from polytask.methods.weighting import create
from polytask.methods.weighting.aligned_mtl import alignment_matrix


def _grads(t, d, seed):
    return torch.randn(t, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("t, d, seed", [(2, 5, 0), (3, 17, 1), (8, 17, 2)])
def test_aligned_system_has_condition_number_one(t, d, seed):
    g = _grads(t, d, seed)
    m = g @ g.T
    b = alignment_matrix(m)
    aligned = b @ g  # row j: the aligned gradient of task j (B symmetric)
    lam_min = torch.linalg.eigvalsh(m).min()
    # Orthogonal, equal norms sqrt(lambda_min): Gram = lambda_min I, condition number 1.
    torch.testing.assert_close(aligned @ aligned.T, lam_min * torch.eye(t, dtype=torch.float64))
    sv = torch.linalg.svdvals(aligned)
    assert (sv.max() / sv.min()).item() == pytest.approx(1.0, abs=1e-9)


def test_combined_is_sum_of_aligned_gradients():
    g = _grads(3, 6, 5)
    combined, w = create("aligned-mtl", 3).combine(g)
    aligned = alignment_matrix(g @ g.T) @ g
    torch.testing.assert_close(combined, aligned.sum(0))
    torch.testing.assert_close(w @ g, combined)


def test_orthogonal_gradients_by_hand():
    # M = diag(1, 4, 9): B = diag(1/1, 1/2, 1/3); aligned gradients all have norm 1.
    g = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    combined, w = create("aligned-mtl", 3).combine(g)
    torch.testing.assert_close(w, torch.tensor([1.0, 0.5, 1 / 3], dtype=torch.float64))
    torch.testing.assert_close(combined, torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("mode, s", [("min", 1.0), ("median", 2.0), ("rmse", (14 / 3) ** 0.5)])
def test_scale_modes(mode, s):
    g = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    combined, _ = create("aligned-mtl", 3, scale_mode=mode).combine(g)
    torch.testing.assert_close(combined, torch.full((3,), s, dtype=torch.float64))


def test_rank_deficient():
    g = _grads(2, 5, 3)
    grads = torch.stack([g[0], g[0], torch.zeros(5, dtype=torch.float64), g[1]])
    combined, w = create("aligned-mtl", 4).combine(grads)
    assert torch.isfinite(combined).all() and torch.isfinite(w).all()
    torch.testing.assert_close(w @ grads, combined)
    # On the span of the gradients the aligned system is still orthogonal with equal norms.
    aligned = alignment_matrix(grads @ grads.T) @ grads
    sv = torch.linalg.svdvals(aligned)
    nz = sv[sv > 1e-8 * sv.max()]
    assert nz.numel() == 2 and (nz.max() / nz.min()).item() == pytest.approx(1.0, abs=1e-9)


def test_identical_gradients():
    g = torch.tensor([[1.0, 2.0, 2.0]], dtype=torch.float64).repeat(3, 1)
    combined, w = create("aligned-mtl", 3).combine(g)
    torch.testing.assert_close(w, torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(combined, 3 * g[0])


def test_task_weights():
    g = torch.diag(torch.tensor([1.0, 2.0], dtype=torch.float64))
    combined, _ = create("aligned-mtl", 2, task_weights=[2.0, 0.0]).combine(g)
    torch.testing.assert_close(combined, torch.tensor([2.0, 0.0], dtype=torch.float64))


def test_all_zero():
    combined, w = create("aligned-mtl", 2).combine(torch.zeros(2, 4))
    assert combined.abs().max() == 0 and w.abs().max() == 0
