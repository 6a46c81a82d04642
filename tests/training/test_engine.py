"""The training loop: learning, determinism, best-state restore, divergence, budgets."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from conftest import regression_data

from polytask.config import TrainConfig
from polytask.core.errors import DivergedError, UndefinedMetricError
from polytask.core.tasks import infer_task
from polytask.data import TaskData, make_task_family, prepare_task
from polytask.methods.architectures import MultiTaskModel
from polytask.methods.backbones import create_backbone
from polytask.training.engine import evaluate, fit


def _prepared(data: TaskData, name="t"):
    return prepare_task(data, infer_task(name, data.y_train), seed=0)


def _model(p, hidden=(32,)):
    torch.manual_seed(0)
    return MultiTaskModel(create_backbone("mlp", p.input_shape, hidden=list(hidden)), [p.task])


def test_fit_learns_regression_and_reports_rmse_in_original_units():
    p = _prepared(regression_data(n=300))
    model = _model(p)
    before, _ = evaluate(model, p, p.test)
    result = fit(model, {"t": p}, TrainConfig(max_epochs=60, lr=0.01, patience=60, batch_size=32), seed=0, select="t")
    after, _ = evaluate(model, p, p.test)
    assert after < 0.35 * before  # RMSE in y's units (y spread ~5)
    assert result.best_val["t"] == pytest.approx(min(h["val_t"] for h in result.history))


def test_same_seed_same_numbers_different_seed_different():
    p = _prepared(make_task_family(n_tasks=1, n_target=200, seed=0)["target"])
    cfg = TrainConfig(max_epochs=3, patience=3, batch_size=32)
    runs = []
    for seed in (0, 0, 1):
        m = _model(p)
        r = fit(m, {"t": p}, cfg, seed=seed, select="t")
        runs.append([h["train_loss"] for h in r.history])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_best_state_is_restored_and_early_stopping_counts_patience():
    p = _prepared(make_task_family(n_tasks=1, n_target=200, seed=0)["target"])
    m = _model(p)
    r = fit(m, {"t": p}, TrainConfig(max_epochs=50, patience=3, lr=0.05, batch_size=16), seed=0, select="t")
    assert r.epochs == r.best_epoch + 3 or r.epochs == 50
    val_now, _ = evaluate(m, p, p.val)
    assert val_now == pytest.approx(r.best_val["t"])


def test_divergence_raises():
    p = _prepared(regression_data())
    exploding = type(p)(p.task, type(p.train)(p.train.x * 1e30, p.train.y * 1e30), p.val, p.test)
    with pytest.raises(DivergedError, match="training loss became"):
        fit(_model(exploding), {"t": exploding}, TrainConfig(max_epochs=2, lr=10.0), seed=0, select="t")


def test_multi_task_epoch_cycles_small_task_and_min_steps():
    fam = make_task_family(n_tasks=2, n_target=20, n_source=640, seed=0)
    data = {n: prepare_task(d, infer_task(n, d.y_train), seed=0) for n, d in fam.items()}
    torch.manual_seed(0)
    model = MultiTaskModel(create_backbone("mlp", data["target"].input_shape), [d.task for d in data.values()])
    calls = {"target": 0, "source1": 0}
    orig = model.forward

    def counting(x, task):
        if model.training:
            calls[task] += 1
        return orig(x, task)

    model.forward = counting
    fit(model, data, TrainConfig(max_epochs=1, batch_size=32, min_steps_per_epoch=1), seed=0)
    steps = math.ceil(len(data["source1"].train) / 32)
    assert calls == {"target": steps, "source1": steps}  # the 16-row target is cycled, not starved

    calls.update(target=0, source1=0)
    single = {"target": data["target"]}
    fit(model, single, TrainConfig(max_epochs=1, batch_size=32, min_steps_per_epoch=7), seed=0, select="target")
    assert calls["target"] == 7


def test_param_groups_learning_rates_are_used():
    p = _prepared(make_task_family(n_tasks=1, n_target=100, seed=0)["target"])
    m = _model(p)
    frozen_before = [q.detach().clone() for q in m.backbone.parameters()]
    groups = [{"params": list(m.backbone.parameters()), "lr": 0.0}, {"params": list(m.heads.parameters()), "lr": 0.01}]
    fit(m, {"t": p}, TrainConfig(max_epochs=2, weight_decay=0.0), seed=0, select="t", param_groups=groups)
    assert all(torch.equal(a, b) for a, b in zip(frozen_before, m.backbone.parameters()))


def test_binary_task_trains_with_logistic_loss():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    p = _prepared(TaskData(x[:300], y[:300], x[300:], y[300:]))
    assert p.task.kind == "binary"
    m = _model(p)
    fit(m, {"t": p}, TrainConfig(max_epochs=30, lr=0.01, patience=30), seed=0, select="t")
    assert evaluate(m, p, p.test)[0] > 0.9


def test_a_validation_metric_never_defined_fails_the_run_with_its_reason():
    # AUC on validation rows of one class is undefined at every epoch: no epoch can be
    # chosen, and the run says why instead of failing on a missing key later.
    data = make_task_family(n_tasks=1, n_target=200, seed=0)["target"]
    y = (data.y_train > np.median(data.y_train)).astype(np.int64)
    d = TaskData(data.x_train, y, data.x_test, (data.y_test > 0).astype(np.int64), x_val=data.x_train[:20], y_val=np.ones(20, dtype=np.int64))
    task = dataclasses.replace(infer_task("t", y), metric_name="roc_auc")
    p = prepare_task(d, task, seed=0)
    with pytest.raises(UndefinedMetricError, match="task 't'.*roc_auc"):
        fit(_model(p), {"t": p}, TrainConfig(max_epochs=2, patience=2), seed=0, select="t")
