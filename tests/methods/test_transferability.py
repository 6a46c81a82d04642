"""Transferability scores against hand computations and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from polytask.core.errors import ConfigError
from polytask.methods.transferability import SCORES, h_score, kendall_tau, leep, logme, logme_evidence, nce, score_names


def closed_form_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """Log evidence of Bayesian linear regression computed directly, over all D dimensions."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    return (
        n / 2 * math.log(beta)
        + d / 2 * math.log(alpha)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * float(((f @ m - y) ** 2).sum())
        - alpha / 2 * float(m @ m)
        - np.linalg.slogdet(a)[1] / 2
    )


def test_registry_names_and_unknown_name():
    assert score_names() == ["logme", "leep", "nce", "h-score"]
    assert SCORES.get_item("logme") is logme
    with pytest.raises(ConfigError, match="known: logme, leep, nce, h-score"):
        SCORES.get_item("gbc")


@pytest.mark.parametrize("n, d", [(30, 5), (8, 20), (12, 40)])
def test_logme_is_the_closed_form_evidence_at_its_alpha_beta(n, d):
    rng = np.random.default_rng(n + d)
    f = rng.normal(size=(n, d))
    labels = np.arange(n) % 3
    targets = np.stack([f @ rng.normal(size=d) + rng.normal(size=n), *np.eye(3)[labels].T], axis=1)
    results = logme_evidence(f, targets)
    for k, (evidence, alpha, beta) in enumerate(results):
        assert evidence == pytest.approx(closed_form_evidence(f, targets[:, k], alpha, beta), rel=1e-9, abs=1e-9)
        if d > n:
            # Summing log(alpha + beta s_i) over the rank only leaves out (D - N) log(alpha) / 2:
            # far above the tolerance, so the check above catches that bug.
            assert abs((d - n) / 2 * math.log(alpha)) > 1e-2
    # Classification: mean over the one-hot columns of evidence / N.
    expected = np.mean([e for e, _, _ in results[1:]]) / n
    assert logme(f, labels) == pytest.approx(expected, rel=1e-12)
    assert logme(torch.from_numpy(f).float(), torch.from_numpy(labels)) == pytest.approx(expected, rel=1e-5)


def test_logme_regression_and_ranking():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(40, 6))
    targets = np.stack([f[:, 0], f[:, 1] - f[:, 2]], axis=1) + 0.1 * rng.normal(size=(40, 2))
    results = logme_evidence(f, targets)
    assert logme(f, targets, regression=True) == pytest.approx(np.mean([e for e, _, _ in results]) / 40, rel=1e-12)
    # Features that predict the targets beat features that do not.
    assert logme(f, targets, regression=True) > logme(rng.normal(size=(40, 6)), targets, regression=True) + 1.0
    labels = np.arange(40) % 4
    informative = rng.normal(size=(40, 6)) + 2.0 * np.eye(6)[labels]
    assert logme(informative, labels) > logme(rng.normal(size=(40, 6)), labels)


def test_leep_hand_computed():
    probs = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    labels = np.array([0, 1, 1, 0])
    # Joint P(y, z) = (1/4) sum_i theta_i,z [y_i = y]:
    #   y=0: ([1, 0] + [.5, .5]) / 4 = [.375, .125];  y=1: ([1, 0] + [0, 1]) / 4 = [.25, .25]
    # P(z) = [.625, .375];  P(y | z=0) = [.6, .4];  P(y | z=1) = [1/3, 2/3]
    # EEP per sample: .6, .4, 2/3, .5 * .6 + .5 / 3 = 7/15
    # LEEP = (ln .6 + ln .4 + ln 2/3 + ln 7/15) / 4 = -0.6486803789
    assert leep(probs, labels) == pytest.approx(-0.6486803789488017, rel=1e-12)
    # The mean probability (the wrong variant) would be 0.5417.
    assert leep(torch.tensor(probs), torch.tensor([0, 1, 1, 0])) == pytest.approx(-0.6486803789488017, rel=1e-12)
    # Label values are names: relabelling the classes changes nothing.
    assert leep(probs, labels + 7) == pytest.approx(-0.6486803789488017, rel=1e-12)


def test_nce_hand_computed():
    # z=0: y in {0, 1} half and half -> P(y|z) = .5;  z=1: y always 1 -> P(y|z) = 1
    # NCE = (1/5) ln .5 + (1/5) ln .5 + (3/5) ln 1 = -0.4 ln 2 = -0.2772588722
    assert nce([0, 0, 1, 1, 1], [0, 1, 1, 1, 1]) == pytest.approx(-0.4 * math.log(2), rel=1e-12)
    # Target a function of the source (two source classes map to one target class): NCE = 0.
    assert nce(np.array([5, 3, 9, 3, 5]), np.array([1, 0, 1, 0, 1])) == 0.0
    # Source predictions independent of two balanced target classes: NCE = -ln 2.
    assert nce([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-math.log(2), rel=1e-12)


def test_h_score_hand_computed():
    f = np.array([[0.0, 1.0], [2.0, -1.0], [4.0, -1.0], [6.0, 1.0]])
    labels = np.array([0, 0, 1, 1])
    # Centred: column 0 = [-3, -1, 1, 3], column 1 = [1, -1, -1, 1] (uncorrelated, class means 0).
    # cov(f) = diag(20, 4) / 4 = diag(5, 1); E[f|y] column 0 = [-2, -2, 2, 2] -> cov(g) = diag(4, 0).
    # Plain H = 4 / 5 = 0.8.
    assert h_score(f, labels, shrinkage=False) == pytest.approx(0.8, rel=1e-12)
    # Invariant under invertible linear maps of the features.
    mix = np.array([[2.0, 1.0], [-1.0, 3.0]])
    assert h_score(f @ mix, labels, shrinkage=False) == pytest.approx(0.8, rel=1e-12)
    # Ledoit-Wolf (sklearn's formula): mu = tr(S) / D = 3; delta = (|X^T X|^2 / N^2 - 2 mu tr(S) + D mu^2) / D
    # = (26 - 36 + 18) / 2 = 4; b = (sum((X^2)^T X^2) / N - |X^T X|^2 / N^2) / (N D) = (52 - 26) / 8 = 3.25;
    # a = b / delta = 0.8125, cov_a = (1 - a) diag(5, 1) + a mu I = diag(3.375, 2.625).
    # H_a = (1 - a) * 4 / 3.375 = 0.75 / 3.375 = 2 / 9.
    assert h_score(f, labels, shrinkage=True) == pytest.approx(2 / 9, rel=1e-12)
    assert h_score(f, labels) == pytest.approx(2 / 9, rel=1e-12)  # default: shrinkage
    # One feature: Ledoit-Wolf does not shrink, both variants agree.
    assert h_score(f[:, :1], labels) == pytest.approx(0.8, rel=1e-12)


def test_h_score_saturates_when_d_exceeds_n_and_shrinkage_does_not():
    rng = np.random.default_rng(0)
    n, d, c = 30, 60, 3
    labels = np.arange(n) % c
    random = rng.normal(size=(n, d))
    informative = random + 1.5 * rng.normal(size=(c, d))[labels]
    # Plain: C - 1 = 2 for both, so it cannot tell them apart.
    assert h_score(random, labels, shrinkage=False) == pytest.approx(c - 1, abs=1e-6)
    assert h_score(informative, labels, shrinkage=False) == pytest.approx(c - 1, abs=1e-6)
    shrunk_random, shrunk_informative = h_score(random, labels), h_score(informative, labels)
    assert shrunk_informative < c - 1 - 1e-3
    assert shrunk_random < 0.5 < 1.5 < shrunk_informative


def test_kendall_tau():
    assert kendall_tau([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]) == pytest.approx(1.0)
    assert kendall_tau([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    # 6 pairs, one discordant (the middle two): (5 - 1) / 6.
    assert kendall_tau([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]) == pytest.approx(2 / 3)
    assert math.isnan(kendall_tau([1.0], [2.0]))
    with pytest.raises(ValueError, match="same length"):
        kendall_tau([1.0, 2.0], [1.0, 2.0, 3.0])


F4 = np.arange(8.0).reshape(4, 2)
P4 = np.full((4, 2), 0.5)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: logme(F4, np.array([0, 1, 0])), "labels has 3 samples but the first argument has 4"),
        (lambda: logme(F4[:1], np.array([0])), "need at least 2 samples"),
        (lambda: logme(F4, np.array([0.0, 1.0, 0.0, 1.0])), "integer class labels"),
        (lambda: logme(F4, np.ones((3, 2)), regression=True), r"targets must have shape \[4\] or \[4, K\]"),
        (lambda: logme(F4[:, 0], np.array([0, 1, 0, 1])), r"features must have shape \[N, D\]"),
        (lambda: logme(np.full((4, 2), np.nan), np.array([0, 1, 0, 1])), "NaN"),
        (lambda: leep(np.full((4, 2), 0.6), np.array([0, 1, 0, 1])), "rows must sum to 1"),
        (lambda: leep(np.array([[1.5, -0.5]] * 4), np.array([0, 1, 0, 1])), "non-negative"),
        (lambda: leep(P4, np.array([[0, 1, 0, 1]])), r"labels must have shape \[N\]"),
        (lambda: nce([0], [0]), "need at least 2 samples"),
        (lambda: nce([0, 1, 1], [0, 1]), "target_labels has 2 samples"),
        (lambda: h_score(F4, np.array([0.5, 1.0, 0.0, 1.0])), "integer class labels"),
    ],
)
def test_bad_inputs_raise_one_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
