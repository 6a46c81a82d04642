"""Every registered weighting method honours the same contract (run over the registry)."""

from __future__ import annotations

import pytest
import torch

from polytask import weighting
from polytask.methods.weighting import Weighting, create, testing, weighting_names


@pytest.mark.parametrize("name", weighting_names())
@pytest.mark.parametrize("t", [2, 3, 8])
def test_finite_results_and_weight_convention(name, t):
    testing.check_weight_convention(name, t)


@pytest.mark.parametrize("name", weighting_names())
@pytest.mark.parametrize("check", testing.CHECKS[1:], ids=lambda c: c.__name__)
def test_contract(name, check):
    check(name)


class _Misreports(Weighting):
    """Combines with equal weights but reports other ones: breaks the weight convention."""

    def combine(self, grads, losses):
        return grads.mean(0), torch.full((len(grads),), 1.0, dtype=grads.dtype)


def test_a_users_method_is_checked_and_a_broken_one_is_named():
    testing.check_weighting(lambda n, seed: create("ew", n, seed=seed))
    with pytest.raises(AssertionError, match="combined != weights @ grads"):
        testing.check_weighting(lambda n, seed: _Misreports(n, seed=seed))


def test_unknown_name_lists_known_methods():
    with pytest.raises(Exception) as e:
        create("nope", 2)
    assert "ew" in str(e.value)


def test_unknown_hyperparameter_is_rejected():
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        create("ew", 2, bogus=1)


def test_registry_is_the_package_api():
    assert set(weighting_names()) == set(weighting.WEIGHTINGS)
