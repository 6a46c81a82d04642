"""Task metrics: scikit-learn's numbers, their direction and range, chosen per task."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from polytask import Study
from polytask.core.errors import PolytaskWarning
from polytask.core.metrics import METRICS, get_metric, higher_is_better, metric_names
from polytask.core.targets import encode_targets, task_score
from polytask.core.tasks import infer_task
from polytask.data import TaskData


def _case(kind: str, rng: np.random.Generator, n: int = 60):
    if kind == "classification":
        y = rng.integers(0, 3, n)
        p = rng.dirichlet(np.ones(3), n)
    elif kind == "binary":
        y = rng.integers(0, 2, n)
        p = rng.uniform(size=n)
    else:
        y = rng.normal(size=(n, 1))
        p = y + rng.normal(scale=0.5, size=(n, 1))
    return y, p


@pytest.mark.parametrize("name", METRICS.names())
def test_every_metric_is_scikit_learns_and_per_row_terms_average_to_it(name):
    metric = get_metric(name)
    rng = np.random.default_rng(0)
    for kind in metric.kinds:
        y, p = _case(kind, rng)
        value = metric.score(y, p)
        assert math.isfinite(value) and metric.low <= value <= metric.high
        if metric.rows is not None:
            assert metric.rows(y, p).mean() == pytest.approx(value, rel=1e-9)
    assert metric.higher_is_better == higher_is_better(metric.key)


def test_hand_checked_values():
    y = np.array([0, 1, 1, 0])
    p = np.array([0.2, 0.9, 0.4, 0.6])  # labels 0, 1, 0, 1: half right
    assert get_metric("accuracy").score(y, p) == 0.5
    assert get_metric("roc_auc").score(y, p) == 0.75  # pairs (1 vs 0): 0.9>0.2, 0.9>0.6, 0.4>0.2, 0.4<0.6
    assert get_metric("log_loss").score(y, p) == pytest.approx(-np.mean(np.log([0.8, 0.9, 0.4, 0.4])))
    assert get_metric("mae").score(np.array([[1.0], [3.0]]), np.array([[2.0], [1.0]])) == 1.5
    assert get_metric("rmse").score(np.array([[1.0], [3.0]]), np.array([[2.0], [1.0]])) == pytest.approx(math.sqrt(2.5))
    three = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
    assert get_metric("balanced_accuracy").score(np.array([0, 1, 2, 1]), three) == pytest.approx(skm.balanced_accuracy_score([0, 1, 2, 1], [0, 1, 2, 0]))
    assert get_metric("f1_macro").score(np.array([0, 1, 2, 1]), three) == pytest.approx(skm.f1_score([0, 1, 2, 1], [0, 1, 2, 0], average="macro"))


def test_multiclass_auc_over_the_classes_present():
    # Test rows of classes 0 and 1 from a 3-class model: one-vs-rest AUC of each class present,
    # averaged (class 2 has no positive row, so no curve); was NaN, which dropped the run.
    y = np.array([0, 1, 1, 0, 1])
    three = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1], [0.6, 0.3, 0.1]])
    by_hand = np.mean([skm.roc_auc_score(y == k, three[:, k]) for k in (0, 1)])
    assert get_metric("roc_auc").score(y, three) == pytest.approx(by_hand)
    full = np.array([0, 1, 2, 1])
    assert get_metric("roc_auc").score(full, three[:4]) == pytest.approx(skm.roc_auc_score(full, three[:4], multi_class="ovr"))


def test_directions_and_kinds():
    assert [m for m in metric_names("regression")] == ["rmse", "mae", "r2"]
    assert not get_metric("log_loss").higher_is_better and get_metric("r2").higher_is_better
    assert get_metric("mae").default_margin(2.0) == pytest.approx(0.02) and get_metric("roc_auc").default_margin(0.8) == 0.01


def test_a_task_scores_head_outputs_with_its_metric():
    task = infer_task("t", np.array([0, 1, 0, 1]), metric="roc_auc")
    out = torch.tensor([[-2.0], [1.0], [0.5], [3.0]])
    y = encode_targets(task, np.array([0, 1, 0, 1]))
    assert task.metric == "roc_auc_score"
    assert task_score(task, out, y) == skm.roc_auc_score([0, 1, 0, 1], torch.sigmoid(out[:, 0]).numpy())


def _imbalanced(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = ((x[:, 0] > 1.5) & (x[:, 1] > 0)).astype(np.int64)  # about 4% positive
    return TaskData(x[:300], y[:300], x[300:], y[300:])


def test_accuracy_on_a_dominant_class_warns_and_the_chosen_metric_drives_selection(tmp_path):
    data = {"target": _imbalanced()}
    cfg = {"name": "m", "seeds": 1, "tasks": {"target": {}}, "strategies": ["scratch"], "model": {"mlp": {"hidden": [8]}}, "train": {"max_epochs": 3}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Study(cfg, data=data).load()
    assert any(issubclass(w.category, PolytaskWarning) and "balanced_accuracy" in str(w.message) for w in caught)
    cfg["tasks"]["target"]["metric"] = "average_precision"
    with warnings.catch_warnings():
        warnings.simplefilter("error", PolytaskWarning)
        summary = Study(cfg, data=data).run(out=tmp_path, progress=False)
    assert summary["cells"][0]["metric"] == "average_precision_score"
