"""Every registered weighting method honours the same contract (run over the registry)."""

from __future__ import annotations

import pytest
import torch

from polytask import weighting
from polytask.weighting import create, weighting_names


def _case(t: int, d: int = 17, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    grads = torch.randn(t, d, generator=g, dtype=torch.float64)
    losses = torch.rand(t, generator=g, dtype=torch.float64) + 0.5
    return grads, losses


def _run(method, grads, losses, steps: int = 3):
    out = None
    for k in range(steps):
        out = method.combine(grads, losses * (1.0 - 0.1 * k))
        method.after_step(losses * (1.0 - 0.1 * k - 0.05))
    method.on_epoch_end()
    return out


def _check(grads, combined, w):
    assert combined.shape == (grads.shape[1],)
    assert torch.isfinite(combined).all()
    if w is not None:
        assert w.shape == (grads.shape[0],) and torch.isfinite(w).all()
        # The one convention: effective weights on the raw task gradients.
        torch.testing.assert_close(w.to(grads.dtype) @ grads, combined, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", weighting_names())
@pytest.mark.parametrize("t", [2, 3, 8])
def test_finite_results_and_weight_convention(name, t):
    grads, losses = _case(t)
    _check(grads, *_run(create(name, t), grads, losses))


@pytest.mark.parametrize("name", weighting_names())
def test_zero_gradient_row(name):
    grads, losses = _case(3)
    grads[1] = 0
    _check(grads, *_run(create(name, 3), grads, losses))


@pytest.mark.parametrize("name", weighting_names())
def test_single_task(name):
    grads, losses = _case(1)
    combined, w = _run(create(name, 1), grads, losses)
    _check(grads, combined, w)
    # One task has nothing to balance: the update points along its own gradient.
    assert torch.nn.functional.cosine_similarity(combined, grads[0], dim=0) > 0.99


@pytest.mark.parametrize("name", weighting_names())
def test_identical_gradients_point_the_same_way(name):
    grads, losses = _case(1)
    grads = grads.repeat(4, 1)
    combined, w = _run(create(name, 4), grads, losses.repeat(4))
    _check(grads, combined, w)
    assert torch.nn.functional.cosine_similarity(combined, grads[0], dim=0) > 0.99


@pytest.mark.parametrize("name", weighting_names())
def test_same_seed_same_result_despite_global_randomness(name):
    grads, losses = _case(3)
    a = _run(create(name, 3, seed=5), grads, losses)
    torch.manual_seed(123)
    import random

    random.seed(99)
    b = _run(create(name, 3, seed=5), grads, losses)
    torch.testing.assert_close(a[0], b[0])


def test_unknown_name_lists_known_methods():
    with pytest.raises(Exception) as e:
        create("nope", 2)
    assert "ew" in str(e.value)


def test_unknown_hyperparameter_is_rejected():
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        create("ew", 2, bogus=1)


def test_registry_is_the_package_api():
    assert set(weighting_names()) == set(weighting.WEIGHTINGS)
