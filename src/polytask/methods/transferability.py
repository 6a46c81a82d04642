"""Transferability scores: rank pretrained models for a target task without fine-tuning.

Each score looks at a frozen source model once on the target training data and says how
well it should transfer. Higher is better for all four, so a report can sort by any of
them without a lookup table.

========== ====================================== ==========================================
name       inputs                                 reference
========== ====================================== ==========================================
logme      features ``[N, D]`` + target labels    You et al., "LogME: Practical Assessment
           (or regression targets)                of Pre-trained Models for Transfer
                                                  Learning", ICML 2021
leep       source softmax probabilities           Nguyen et al., "LEEP: A New Measure to
           ``[N, Z]`` + target labels             Evaluate Transferability of Learned
                                                  Representations", ICML 2020
nce        source labels ``[N]`` (the source      Tran et al., "Transferability and Hardness
           model's hard predictions) + target     of Supervised Classification Tasks",
           labels                                 ICCV 2019
h-score    features ``[N, D]`` + target labels    Bao et al., "An Information-Theoretic
                                                  Approach to Transferability in Task
                                                  Transfer Learning", ICIP 2019; shrinkage
                                                  variant: Ibrahim et al., "Newer is not
                                                  always better", ICLR 2023
========== ====================================== ==========================================

Scales differ: LogME is a per-sample log evidence, LEEP and NCE are mean log
probabilities (``<= 0``), H-score is at most ``C - 1``. Compare models within one score.
:func:`kendall_tau` measures how well a score's ranking agrees with measured fine-tuning
results.

Inputs may be numpy arrays or torch tensors; everything is computed in float64 numpy.
Bad inputs raise :class:`polytask.core.errors.ConfigError` (a ``ValueError``) naming the
argument.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy import stats
from sklearn.covariance import LedoitWolf

from polytask.core.errors import ConfigError
from polytask.core.registry import Registry

SCORES: Registry[Callable[..., float]] = Registry("transferability score")


def register_score(name: str):
    """Decorator registering a transferability score under ``name``; a duplicate name raises."""
    return SCORES.register(name)


# Floor for the denominators of the LogME updates: a target that F fits exactly (or
# a zero target) would otherwise divide by zero.
_TINY = 1e-12
# LogME also stops when the per-sample log evidence moves by less than tol times this:
# far below the differences between candidate models.
_EVIDENCE_TOL = 1e-3
# LEEP's rows come from a softmax, often in float32: allow its rounding, not more.
_PROB_ATOL = 1e-4


def score_names() -> list[str]:
    """Registered score names."""
    return SCORES.names()


def _array(x) -> np.ndarray:
    """``x`` as a numpy array, keeping its dtype (so integer labels can be recognised)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _features(x, name: str) -> np.ndarray:
    f = _array(x)
    if f.ndim != 2:
        raise ConfigError(f"{name} must have shape [N, D], got {f.shape}")
    if f.shape[0] < 2:
        raise ConfigError(f"{name}: need at least 2 samples, got N={f.shape[0]}")
    f = f.astype(np.float64)
    if not np.isfinite(f).all():
        raise ConfigError(f"{name} contains NaN or infinite values")
    return f


def _labels(x, name: str, n: int | None = None) -> np.ndarray:
    """Integer class labels ``[N]`` re-indexed to ``0..C-1`` (in sorted order of the values)."""
    y = _array(x)
    if y.ndim != 1:
        raise ConfigError(f"{name} must have shape [N], got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f"{name} must be integer class labels, got dtype {y.dtype}")
    if n is None and y.shape[0] < 2:
        raise ConfigError(f"{name}: need at least 2 samples, got N={y.shape[0]}")
    if n is not None and y.shape[0] != n:
        raise ConfigError(f"{name} has {y.shape[0]} samples but the first argument has {n}")
    return np.unique(y, return_inverse=True)[1].reshape(-1)


def _one_hot(y: np.ndarray) -> np.ndarray:
    out = np.zeros((y.shape[0], int(y.max()) + 1))
    out[np.arange(y.shape[0]), y] = 1.0
    return out


# ---------------------------------------------------------------------------- LogME


def logme_evidence(features, targets, max_iter: int = 100, tol: float = 1e-3) -> list[tuple[float, float, float]]:
    """Maximised log evidence of Bayesian linear regression, one target column at a time.

    The model is ``y = F m + noise`` with prior ``m ~ N(0, I / alpha)`` and noise
    precision ``beta``. ``alpha`` and ``beta`` come from the fixed-point updates of
    You et al. (Algorithm 2), run on the SVD of ``F``, from ``alpha = beta = 1`` until
    ``alpha / beta`` changes by less than ``tol`` (relative), the per-sample log evidence
    by less than ``tol * 1e-3``, or ``max_iter`` updates have run. When ``D >= N`` the
    maximum can lie at ``alpha`` or ``beta -> infinity``: the updates then drift without
    converging while the evidence settles, so stopping at ``max_iter`` is not an error
    (the reference code stops after 11 updates); the value returned is always the exact
    evidence at the returned ``alpha, beta``, a lower bound on the maximum.

    Args:
        features: ``[N, D]`` features ``F``.
        targets: ``[N]`` or ``[N, K]`` float targets.
        max_iter: most fixed-point updates per column.
        tol: relative change of ``alpha / beta`` that counts as converged (and, times
            1e-3, change of the per-sample log evidence).

    Returns:
        One ``(log_evidence, alpha, beta)`` per target column. ``log_evidence`` is the
        total (not per-sample) log evidence, evaluated exactly at the returned
        ``alpha, beta``: ``N/2 log beta + D/2 log alpha - N/2 log 2pi - beta/2 |F m - y|^2
        - alpha/2 m^T m - 1/2 log det(alpha I_D + beta F^T F)`` with
        ``m = beta (alpha I + beta F^T F)^{-1} F^T y``.
    """
    f = _features(features, "features")
    y = _array(targets).astype(np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != f.shape[0]:
        raise ConfigError(f"targets must have shape [{f.shape[0]}] or [{f.shape[0]}, K], got {y.shape}")
    if not np.isfinite(y).all():
        raise ConfigError("targets contain NaN or infinite values")
    if max_iter < 1:
        raise ConfigError(f"max_iter must be at least 1, got {max_iter}")
    n, d = f.shape
    u, sigma, _ = np.linalg.svd(f, full_matrices=False)
    # The determinant is over all D dimensions: directions F does not span have
    # eigenvalue 0 in F^T F and still contribute log(alpha). The reference code sums over
    # the rank only, which is wrong when D > N (see PITFALLS.md).
    s = np.zeros(d)
    s[: sigma.shape[0]] = sigma**2
    sigma = np.concatenate([sigma, np.zeros(d - sigma.shape[0])])
    z = np.zeros((d, y.shape[1]))
    z[: u.shape[1]] = u.T @ y  # coordinates of y in the left singular basis
    perp = ((y - u @ z[: u.shape[1]]) ** 2).sum(axis=0)  # the part of y no m can fit
    return [_evidence_one(z[:, k], float(perp[k]), sigma, s, n, d, max_iter, tol) for k in range(y.shape[1])]


def _evidence_one(z, perp, sigma, s, n, d, max_iter, tol) -> tuple[float, float, float]:
    def fit(alpha, beta):
        # m = V diag(beta sigma / (alpha + beta s)) z, so |m|^2 and the residual need no V.
        eig = alpha + beta * s  # eigenvalues of alpha I + beta F^T F, all D of them
        m2 = float(((beta * sigma * z / eig) ** 2).sum())
        res = float(((alpha * z / eig) ** 2).sum() + perp)
        gamma = float((beta * s / eig).sum())
        log_det = float(np.log(eig).sum())
        evidence = n / 2 * math.log(beta) + d / 2 * math.log(alpha) - n / 2 * math.log(2 * math.pi) - beta / 2 * res - alpha / 2 * m2 - log_det / 2
        return evidence, m2, res, gamma

    alpha, beta = 1.0, 1.0
    evidence, m2, res, gamma = fit(alpha, beta)
    for _ in range(max_iter):
        new_alpha, new_beta = gamma / max(m2, _TINY), (n - gamma) / max(res, _TINY)
        # gamma = 0 (a zero target) would drive alpha to 0; stop at the last valid point.
        if new_alpha <= 0.0 or new_beta <= 0.0:
            break
        lam_change = abs(new_alpha / new_beta - alpha / beta) / (alpha / beta)
        alpha, beta = new_alpha, new_beta
        old, (evidence, m2, res, gamma) = evidence, fit(alpha, beta)
        # When y lies in the span of F (typical for D >= N) the maximum can be approached
        # as alpha or beta -> infinity: alpha / beta keeps moving while the evidence has settled, so
        # a settled per-sample evidence also counts as converged.
        if lam_change <= tol or abs(evidence - old) / n <= tol * _EVIDENCE_TOL:
            break
    # The evidence is evaluated at the final alpha, beta with m recomputed there (the
    # reference reuses m from before the last update): the closed form at the returned values.
    return evidence, alpha, beta


@register_score("logme")
def logme(features, labels, regression: bool = False, max_iter: int = 100, tol: float = 1e-3) -> float:
    """LogME: mean per-sample log evidence of a linear model on frozen features.

    Args:
        features: ``[N, D]`` features of the target inputs from the frozen source model.
        labels: ``[N]`` integer class labels, or with ``regression=True`` ``[N]`` or
            ``[N, K]`` float targets.
        regression: treat ``labels`` as real-valued targets.
        max_iter: most fixed-point updates per target column.
        tol: relative change of ``alpha / beta`` that counts as converged.

    Returns:
        The mean over target columns (one-hot columns, one per class present, for
        classification) of ``log_evidence / N``. Higher is better.
    """
    f = _features(features, "features")
    if regression:
        targets = _array(labels)
    else:
        targets = _one_hot(_labels(labels, "labels", n=f.shape[0]))
    evidences = logme_evidence(f, targets, max_iter=max_iter, tol=tol)
    return float(np.mean([e for e, _, _ in evidences]) / f.shape[0])


# ---------------------------------------------------------------------------- LEEP


@register_score("leep")
def leep(source_probs, labels) -> float:
    """LEEP: log expected empirical prediction of the source classifier's outputs.

    With the empirical joint ``P(y, z) = 1/N sum_i theta(x_i)_z [y_i = y]`` and
    ``P(y | z) = P(y, z) / P(z)``, LEEP is ``1/N sum_i log(sum_z P(y_i | z) theta(x_i)_z)``:
    a mean log probability (some implementations drop the log; this one does not).

    Args:
        source_probs: ``[N, Z]`` softmax outputs of the source model on the target inputs
            (non-negative rows summing to 1).
        labels: ``[N]`` integer target labels.

    Returns:
        LEEP, ``<= 0``. Higher is better.
    """
    theta = _features(source_probs, "source_probs")
    if (theta < 0).any():
        raise ConfigError("source_probs must be non-negative (softmax outputs, not logits)")
    row_sums = theta.sum(axis=1)
    if not np.allclose(row_sums, 1.0, atol=_PROB_ATOL, rtol=0.0):
        worst = int(np.argmax(np.abs(row_sums - 1.0)))
        raise ConfigError(f"source_probs rows must sum to 1 (softmax outputs), row {worst} sums to {row_sums[worst]:.6g}")
    y = _labels(labels, "labels", n=theta.shape[0])
    joint = _one_hot(y).T @ theta / theta.shape[0]  # [C, Z]
    p_z = joint.sum(axis=0)
    # A source class with P(z) = 0 has theta_z = 0 on every sample: its column never counts.
    cond = np.divide(joint, p_z, out=np.zeros_like(joint), where=p_z > 0)
    eep = (theta * cond[y]).sum(axis=1)
    return float(np.log(eep).mean())


# ---------------------------------------------------------------------------- NCE


@register_score("nce")
def nce(source_labels, target_labels) -> float:
    """Negative conditional entropy ``-H(Y | Z)`` of target labels given source labels.

    ``NCE = sum_{y, z} P(y, z) log P(y | z)`` on the empirical joint of the source model's
    hard predictions ``z`` and the target labels ``y`` of the same samples.

    Args:
        source_labels: ``[N]`` integer source-class predictions.
        target_labels: ``[N]`` integer target labels.

    Returns:
        NCE, ``<= 0``; ``0`` when the target label is a function of the source label.
        Higher is better.
    """
    z = _labels(source_labels, "source_labels")
    y = _labels(target_labels, "target_labels", n=z.shape[0])
    joint = _one_hot(y).T @ _one_hot(z) / z.shape[0]  # [C, Z]
    p_z = joint.sum(axis=0)
    mask = joint > 0  # 0 log 0 = 0
    return float((joint[mask] * np.log((joint / p_z)[mask])).sum())


# ---------------------------------------------------------------------------- H-score


@register_score("h-score")
def h_score(features, labels, shrinkage: bool | None = None) -> float:
    """H-score ``tr(cov(f)^+ cov(E[f | y]))``, plain or with a Ledoit-Wolf shrunk covariance.

    The plain score (Bao et al.) uses the sample covariances and the pseudo-inverse. It
    saturates at ``C - 1`` whenever the features can separate the ``N`` samples, which is
    always the case when ``D >= N``: every model then gets the same score. The shrinkage
    score (Ibrahim et al.) is ``tr(cov_a(f)^{-1} (1 - a) cov(E[f | y]))`` with ``cov_a``
    the Ledoit-Wolf estimate and ``a`` its shrinkage; both covariances divide by ``N``.

    Args:
        features: ``[N, D]`` features of the target inputs from the frozen source model.
        labels: ``[N]`` integer target labels (``C`` classes).
        shrinkage: ``True`` for the shrinkage score, ``False`` for the plain one. ``None``
            (the default) means ``True``: switching on ``D >= N`` would score candidate
            models of different widths with different estimators in one ranking, and the
            Ledoit-Wolf shrinkage goes to 0 by itself when ``N >> D``.

    Returns:
        H-score, between 0 and ``C - 1``. Higher is better.
    """
    f = _features(features, "features")
    y = _labels(labels, "labels", n=f.shape[0])
    f = f - f.mean(axis=0)
    # Every sample replaced by its class mean: the features' conditional expectation E[f | y].
    counts = np.bincount(y)
    g = ((_one_hot(y).T @ f) / counts[:, None])[y]
    cov_g = g.T @ g / f.shape[0]
    if shrinkage is None or shrinkage:
        estimator = LedoitWolf(assume_centered=True).fit(f)
        # pinv, not solve: with no shrinkage (D = 1) a constant feature leaves cov_a singular.
        return float(np.trace(np.linalg.pinv(estimator.covariance_, hermitian=True) @ ((1.0 - estimator.shrinkage_) * cov_g)))
    cov_f = f.T @ f / f.shape[0]
    return float(np.trace(np.linalg.pinv(cov_f, hermitian=True) @ cov_g))


# ---------------------------------------------------------------------------- ranking


def kendall_tau(scores: Sequence[float], results: Sequence[float]) -> float:
    """Kendall's tau-b between a transferability ranking and measured results.

    Args:
        scores: one transferability score per candidate model.
        results: the measured fine-tuning result of the same candidates (higher is better).

    Returns:
        ``scipy.stats.kendalltau``'s statistic in ``[-1, 1]``; NaN with fewer than 2 items.
    """
    a, b = np.asarray(scores, dtype=np.float64).reshape(-1), np.asarray(results, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ConfigError(f"scores and results must have the same length, got {a.shape[0]} and {b.shape[0]}")
    if a.shape[0] < 2:
        return float("nan")
    return float(stats.kendalltau(a, b).statistic)
