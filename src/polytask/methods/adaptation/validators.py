"""Model selection for unsupervised domain adaptation: scores that need no target labels.

Every validator is a function of keyword-only arrays (NumPy arrays or CPU tensors) that
returns a float where HIGHER IS BETTER, so a strategy picks the checkpoint or
hyperparameters with the largest score whichever validator it uses. Where the paper's
quantity is lower-better (entropy, DEV risk) the function returns its negative, and its
name says so.

The arrays, by name:

* ``logits_source_val`` ``[n, C]`` and ``y_source_val`` ``[n]``: the model's logits on the
  labelled source validation split and its labels;
* ``logits_target`` ``[m, C]``: logits on (unlabelled) target data;
* ``f_source_train`` ``[n_tr, d]``, ``f_target`` ``[m, d]``, ``f_source_val`` ``[n, d]``:
  backbone features of the source training split, the target data and the source
  validation split;
* ``loss_source_val`` ``[n]``: per-sample loss of the model on the source validation split.

:func:`score` computes any validator from one dictionary holding the arrays of all.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import log_softmax, softmax
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from polytask.core.errors import ConfigError
from polytask.core.registry import Registry

VALIDATORS: Registry[Callable[..., float]] = Registry("validator")


def register_validator(name: str):
    """Decorator registering a validator function as ``name``."""
    return VALIDATORS.register(name)


def validator_names() -> list[str]:
    """Registered validator names."""
    return VALIDATORS.names()


def score(name: str, **arrays: Any) -> float:
    """The validator ``name`` on the arrays it takes, picked by name from ``arrays``.

    Extra arrays are ignored, so one dictionary can serve every validator; a missing one
    raises, naming it.
    """
    fn = VALIDATORS.get_item(name)
    params = inspect.signature(fn).parameters
    needed = [p for p, spec in params.items() if spec.default is inspect.Parameter.empty]
    missing = [p for p in needed if p not in arrays]
    if missing:
        raise ConfigError(f"validator '{name}' needs {', '.join(missing)}")
    return fn(**{p: arrays[p] for p in params if p in arrays})


def _array(x: Any, name: str, ndim: int) -> np.ndarray:
    """``x`` as a finite float64 array with ``ndim`` dimensions (tensors are detached)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != ndim or len(a) == 0:
        raise ValueError(f"{name} must be a non-empty {ndim}-D array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has non-finite values")
    return a


def _entropy(logp: np.ndarray) -> np.ndarray:
    """Entropy in nats of each row of the log-probabilities ``logp``."""
    return -(np.exp(logp) * logp).sum(1)


@register_validator("source-val")
def source_val_accuracy(*, logits_source_val: Any, y_source_val: Any) -> float:
    """Accuracy on the source validation split: ``mean(argmax logits == y)`` (higher is better)."""
    logits = _array(logits_source_val, "logits_source_val", 2)
    y = np.asarray(y_source_val.detach().cpu() if hasattr(y_source_val, "detach") else y_source_val).ravel()
    if len(y) != len(logits):
        raise ValueError(f"y_source_val has {len(y)} labels for {len(logits)} rows of logits_source_val")
    return float((logits.argmax(1) == y).mean())


@register_validator("entropy")
def neg_mean_entropy(*, logits_target: Any) -> float:
    """Minus the mean prediction entropy on target, ``-mean_i H(p_i)`` in nats.

    Low entropy (confident target predictions) is better, so the sign is flipped.
    """
    logits = _array(logits_target, "logits_target", 2)
    return float(-_entropy(log_softmax(logits, axis=1)).mean())


@register_validator("im")
def information_maximization(*, logits_target: Any) -> float:
    """Information maximization (Shi & Sha 2012; SHOT): ``H(mean_i p_i) - mean_i H(p_i)``.

    The mutual information between inputs and predicted classes: high when each prediction
    is confident and the classes are used evenly (higher is better).
    """
    logp = log_softmax(_array(logits_target, "logits_target", 2), axis=1)
    mean_p = np.exp(logp).mean(0)
    marginal = -(mean_p * np.log(np.clip(mean_p, 1e-300, None))).sum()
    return float(marginal - _entropy(logp).mean())


@register_validator("snd")
def soft_neighborhood_density(*, logits_target: Any, temperature: float = 0.05) -> float:
    """Soft neighbourhood density (Saito et al., ICCV 2021), higher is better.

    The target softmax outputs ``p_i`` are L2-normalized; ``s_ij = p_i . p_j`` for ``j != i``
    (the diagonal is removed, leaving ``m - 1`` neighbours per row);
    ``P_ij = softmax_j(s_ij / temperature)``; the score is ``mean_i H(P_i)`` in nats. It is high
    when each sample has many close neighbours (dense, well-clustered predictions).
    """
    logits = _array(logits_target, "logits_target", 2)
    m = len(logits)
    if m < 2:
        raise ValueError(f"snd needs at least 2 target samples, got {m}")
    p = softmax(logits, axis=1)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    sim = (p @ p.T)[~np.eye(m, dtype=bool)].reshape(m, m - 1)
    return float(_entropy(log_softmax(sim / temperature, axis=1)).mean())


def dev_importance_weights(f_source_train: Any, f_target: Any, f_query: Any) -> np.ndarray:
    """DEV's density ratios ``w(x) = p_T(x) / p_S(x)`` at ``f_query`` (You et al. 2019, step 2).

    A logistic regression (on standardized features) learns target (1) vs source (0) from
    ``f_source_train`` and ``f_target``; then ``w = (n_s / n_t) * p(target|x) / p(source|x)``,
    the factor undoing the class prior of unequal sample counts. The log-odds are clipped at
    ``±30`` so a separable pair of domains gives large, finite weights.
    """
    fs = _array(f_source_train, "f_source_train", 2)
    ft = _array(f_target, "f_target", 2)
    fq = _array(f_query, "f_query", 2)
    x = np.concatenate([fs, ft])
    d = np.concatenate([np.zeros(len(fs)), np.ones(len(ft))])
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, d)
    log_odds = np.clip(clf.decision_function(fq), -30.0, 30.0)
    return len(fs) / len(ft) * np.exp(log_odds)


def dev_risk(weights: Any, losses: Any) -> float:
    """DEV's control-variate estimate of the target risk (You et al. 2019, Algorithm 1, step 3).

    With ``W`` the importance weights and ``L`` the per-sample losses on source validation,
    ``WL = W * L``, ``eta = -Cov(WL, W) / Var(W)`` (both with ``n - 1``) and

        ``risk = mean(WL) + eta * mean(W) - eta``.

    ``E[W] = 1`` under the source distribution, so the control variate adds no bias and
    removes the part of ``WL``'s variance explained by ``W``. Constant weights have
    ``Var(W) = 0``: then ``eta = 0`` and the risk is the plain weighted mean ``mean(WL)``.
    Lower is better.
    """
    w = _array(weights, "weights", 1)
    loss = _array(losses, "losses", 1)
    if len(w) != len(loss):
        raise ValueError(f"weights and losses differ in length ({len(w)} vs {len(loss)})")
    wl = w * loss
    var = w.var(ddof=1) if len(w) > 1 else 0.0
    # Relative test: weights equal up to rounding count as constant.
    if var <= (1e-12 * max(w.mean(), 1.0)) ** 2:
        return float(wl.mean())
    eta = -np.cov(wl, w, ddof=1)[0, 1] / var
    return float(wl.mean() + eta * w.mean() - eta)


@register_validator("dev")
def neg_dev_risk(*, f_source_train: Any, f_target: Any, f_source_val: Any, loss_source_val: Any) -> float:
    """Minus the deep embedded validation risk (You et al., ICML 2019), higher is better.

    Fits the domain classifier on source-training vs target features, weights the
    source-validation losses by the density ratio at the source-validation features
    (:func:`dev_importance_weights`) and returns ``-dev_risk(weights, loss_source_val)``.
    """
    w = dev_importance_weights(f_source_train, f_target, f_source_val)
    return -dev_risk(w, loss_source_val)
