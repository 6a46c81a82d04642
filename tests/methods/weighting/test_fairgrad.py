"""FairGrad against its defining equations (G G^T w)_i = w_i^(-1/alpha)."""

from __future__ import annotations

import pytest
import torch

from polytask.methods.weighting import create


def _grads(t=4, d=9, seed=0):
    return torch.randn(t, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alpha_one_equals_nash_mtl(seed):
    grads = _grads(seed=seed)
    c_f, w_f = create("fairgrad", 4, alpha=1.0).combine(grads)
    c_n, w_n = create("nash-mtl", 4).combine(grads)
    torch.testing.assert_close(w_f, w_n, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(c_f, c_n, rtol=1e-10, atol=1e-12)


def test_alpha_one_equals_nash_in_the_reference_fallback_case():
    grads = torch.tensor([[1.0, 0.0, 0.0], [-1.5, 0.1, 0.3], [0.2, 1.0, 0.0]], dtype=torch.float64)
    _, w_f = create("fairgrad", 3).combine(grads)
    _, w_n = create("nash-mtl", 3).combine(grads)
    torch.testing.assert_close(w_f, w_n, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("a", [0.5, 2.0, 5.0])
def test_residual_of_the_fair_system(a):
    grads = _grads(seed=3)
    combined, w = create("fairgrad", 4, alpha=a).combine(grads)
    assert (w > 0).all()
    # g_i . d = w_i^(-1/a) for every task.
    torch.testing.assert_close(grads @ combined, w ** (-1.0 / a), rtol=1e-9, atol=0)


def test_orthogonal_closed_form():
    # ||g_i||^2 w_i = w_i^(-1/a)  ->  w_i = ||g_i||^(-2a/(a+1)).
    a = 2.0
    grads = torch.diag(torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64))
    _, w = create("fairgrad", 3, alpha=a).combine(grads)
    torch.testing.assert_close(w, grads.norm(dim=1) ** (-2 * a / (a + 1)), rtol=1e-10, atol=0)


def test_larger_alpha_is_fairer():
    # The task improvements g_i . d become more equal as a grows (towards max-min).
    grads = torch.tensor([[3.0, 0.0], [0.5, 1.0]], dtype=torch.float64)
    spread = []
    for a in (0.5, 1.0, 4.0, 16.0):
        combined, _ = create("fairgrad", 2, alpha=a).combine(grads)
        imp = grads @ combined
        spread.append((imp.max() / imp.min()).item())
    assert spread == sorted(spread, reverse=True)


def test_rejects_non_positive_alpha():
    with pytest.raises(ValueError):
        create("fairgrad", 2, alpha=0.0)
