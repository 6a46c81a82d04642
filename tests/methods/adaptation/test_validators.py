"""Unsupervised model-selection scores: hand cases, directions and DEV's control variate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polytask.core.errors import ConfigError
from polytask.methods.adaptation.validators import (
    dev_importance_weights,
    dev_risk,
    information_maximization,
    neg_dev_risk,
    neg_mean_entropy,
    score,
    soft_neighborhood_density,
    source_val_accuracy,
    validator_names,
)


def _h(*p: float) -> float:
    """Entropy in nats of the distribution ``p``."""
    return -sum(q * math.log(q) for q in p if q > 0)


def _arrays(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "logits_source_val": rng.normal(size=(20, 3)),
        "y_source_val": rng.integers(3, size=20),
        "logits_target": rng.normal(size=(15, 3)),
        "f_source_train": rng.normal(size=(40, 4)),
        "f_target": rng.normal(size=(15, 4)) + 0.5,
        "f_source_val": rng.normal(size=(20, 4)),
        "loss_source_val": rng.random(20),
    }


@pytest.mark.parametrize("name", validator_names())
def test_every_validator_scores_from_one_dictionary(name):
    value = score(name, **_arrays())
    assert isinstance(value, float) and math.isfinite(value)


def test_score_names_missing_arrays_and_unknown_validators():
    with pytest.raises(ConfigError, match="needs f_target"):
        score("dev", f_source_train=np.zeros((3, 2)), f_source_val=np.zeros((3, 2)), loss_source_val=np.zeros(3))
    with pytest.raises(ConfigError, match="known: .*snd"):
        score("sdn", logits_target=np.zeros((3, 2)))


def test_source_val_accuracy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    assert source_val_accuracy(logits_source_val=logits, y_source_val=torch.tensor([0, 1, 1, 1])) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="labels"):
        source_val_accuracy(logits_source_val=logits, y_source_val=[0, 1])


def test_entropy_by_hand():
    logits = np.array([[0.0, 0.0], [math.log(3.0), 0.0]])  # (1/2, 1/2) and (3/4, 1/4)
    expected = -(_h(0.5, 0.5) + _h(0.75, 0.25)) / 2
    assert neg_mean_entropy(logits_target=logits) == pytest.approx(expected)


def test_im_by_hand():
    logits = np.array([[math.log(3.0), 0.0], [0.0, math.log(3.0)]])  # (3/4, 1/4) and (1/4, 3/4)
    # Mean prediction (1/2, 1/2): H = log 2; each prediction has H(3/4, 1/4).
    assert information_maximization(logits_target=logits) == pytest.approx(math.log(2) - _h(0.75, 0.25))
    # Four identical predictions: the mean prediction is each one, so IM = 0.
    same = np.tile([[math.log(3.0), 0.0]], (4, 1))
    assert information_maximization(logits_target=same) == pytest.approx(0.0, abs=1e-12)


def test_snd_by_hand():
    logits = np.array([[0.0, 0.0], [0.0, 0.0], [math.log(3.0), 0.0]])  # p: (1/2,1/2) twice, (3/4,1/4)
    # L2-normalized: a = (1,1)/sqrt2, c = (3,1)/sqrt10; a.a = 1, a.c = 2/sqrt5.
    s = 2 / math.sqrt(5)
    e0, e1 = math.exp(1 / 0.05), math.exp(s / 0.05)
    row_a = _h(e0 / (e0 + e1), e1 / (e0 + e1))  # rows 0 and 1: neighbours (a, c)
    row_c = math.log(2)  # row 2: two equal neighbours
    expected = (2 * row_a + row_c) / 3
    assert soft_neighborhood_density(logits_target=logits) == pytest.approx(expected, rel=1e-9)
    # Four identical predictions: every row uniform over its 3 neighbours.
    assert soft_neighborhood_density(logits_target=np.zeros((4, 3))) == pytest.approx(math.log(3))
    with pytest.raises(ValueError, match="at least 2"):
        soft_neighborhood_density(logits_target=np.zeros((1, 3)))


@pytest.mark.parametrize("validator", [neg_mean_entropy, information_maximization])
def test_confident_clustered_predictions_beat_uniform_ones(validator):
    rng = np.random.default_rng(0)
    y = np.arange(12) % 3
    confident = np.eye(3)[y] * 8 + rng.normal(scale=0.1, size=(12, 3))
    uniform = rng.normal(scale=0.01, size=(12, 3))
    assert validator(logits_target=confident) > validator(logits_target=uniform)


def test_validators_reject_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        neg_mean_entropy(logits_target=np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        information_maximization(logits_target=np.array([[0.0, np.nan]]))


# --------------------------------------------------------------------------- DEV


def test_dev_risk_constant_weights_is_weighted_mean():
    losses = np.array([0.5, 1.0, 2.0, 4.0])
    assert dev_risk(np.ones(4), losses) == pytest.approx(losses.mean())
    assert dev_risk(np.full(4, 1.5), losses) == pytest.approx(1.5 * losses.mean())


def test_dev_risk_by_hand():
    w, losses = np.array([0.5, 1.5, 1.0]), np.array([1.0, 2.0, 3.0])
    wl = w * losses  # 0.5, 3, 3 -> mean 13/6
    mw, mwl = w.mean(), wl.mean()
    cov = sum((a - mwl) * (b - mw) for a, b in zip(wl, w)) / 2
    var = sum((b - mw) ** 2 for b in w) / 2  # 0.25
    eta = -cov / var
    assert dev_risk(w, losses) == pytest.approx(mwl + eta * mw - eta)
    # Here mean(w) = 1, so the control variate leaves the estimate at mean(wl).
    assert dev_risk(w, losses) == pytest.approx(13 / 6)
    # mean(w) != 1: the correction moves the estimate toward the regression of wl on w at w = 1.
    w2 = np.array([1.0, 2.0, 3.0])
    slope = np.polyfit(w2, w2 * losses, 1)
    assert dev_risk(w2, losses) == pytest.approx(np.polyval(slope, 1.0))


def test_dev_importance_weights_follow_the_domain_shift():
    rng = np.random.default_rng(0)
    f_source = rng.normal(size=(400, 2))
    f_target = rng.normal(size=(200, 2)) + [1.5, 0.0]
    f_val = rng.normal(size=(200, 2))
    w = dev_importance_weights(f_source, f_target, f_val)
    assert w.std() > 0.5  # non-uniform
    assert np.corrcoef(np.log(w), f_val[:, 0])[0, 1] > 0.95  # larger toward the target
    assert 0.6 < w.mean() < 1.6  # E_source[w] = 1 (with n_s / n_t undoing the 2:1 class prior)
    # The true ratio is exp(1.5 x0 - 1.125); the logistic model is well specified here.
    true = np.exp(1.5 * f_val[:, 0] - 1.125)
    assert np.corrcoef(np.log(w), np.log(true))[0, 1] > 0.99


def test_dev_shift_weights_losses_near_the_target_more():
    rng = np.random.default_rng(1)
    f_source = rng.normal(size=(400, 2))
    f_target = rng.normal(size=(200, 2)) + [1.5, 0.0]
    f_val = rng.normal(size=(300, 2))
    # The model fails toward the target side: the target risk exceeds the source risk.
    losses = (f_val[:, 0] > 0.5).astype(float)
    dev = neg_dev_risk(f_source_train=f_source, f_target=f_target, f_source_val=f_val, loss_source_val=losses)
    assert -dev > losses.mean() + 0.2


def test_dev_without_shift_is_the_source_risk():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(600, 3))
    losses = rng.random(200)
    dev = neg_dev_risk(f_source_train=f[:300], f_target=f[300:400], f_source_val=f[400:], loss_source_val=losses)
    assert -dev == pytest.approx(losses.mean(), abs=0.05)
