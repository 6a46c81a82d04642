"""Partial labels: NaN (any task) or -1 (class tasks) mark a missing label, masked out of
the loss and the metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import tiny_config

from polytask import Study, TaskData
from polytask.core.errors import PolytaskWarning
from polytask.core.targets import encode_targets, task_loss, task_score
from polytask.core.tasks import infer_task, labelled


def test_labelled_mask_by_kind():
    y = np.array([0, 1, -1, np.nan])
    assert labelled(y, "binary").tolist() == [True, True, False, False]
    assert labelled(y, "regression").tolist() == [True, True, True, False]


def test_kind_inference_ignores_missing_labels():
    assert infer_task("t", np.array([0, 1, -1, 1, np.nan])).kind == "binary"
    task = infer_task("t", np.array([0, 2, -1, 1, 1]))
    assert task.kind == "classification" and task.n_outputs == 3
    reg = infer_task("t", np.array([1.5, np.nan, 3.5]))
    assert reg.kind == "regression" and reg.y_shift == pytest.approx(2.5)


@pytest.mark.parametrize("kind, labels", [("classification", [2, -1, 0, -1]), ("binary", [1, np.nan, 0, -1]), ("regression", [0.5, np.nan, -2.0, np.nan])])
def test_loss_and_metric_use_only_labelled_rows(kind, labels):
    task = infer_task("t", np.array([0, 1, 2, 0.5]) if kind == "regression" else np.array([0, 1, 2]) if kind == "classification" else np.array([0, 1]), kind)
    y = encode_targets(task, np.array(labels, dtype=float))
    out = torch.randn(4, task.n_outputs, requires_grad=True)
    keep = [0, 2]
    full = task_loss(task, out, y)
    torch.testing.assert_close(full, task_loss(task, out[keep], y[keep]))
    assert task_score(task, out.detach(), y) == pytest.approx(task_score(task, out.detach()[keep], y[keep]))
    full.backward()
    assert out.grad[[1, 3]].abs().sum() == 0  # missing rows get no gradient


def test_batch_without_labels_gives_zero_loss_with_a_graph():
    task = infer_task("t", np.array([0, 1, 2]))
    out = torch.randn(3, 3, requires_grad=True)
    loss = task_loss(task, out, encode_targets(task, np.array([-1, -1, -1])))
    assert loss.item() == 0.0 and loss.requires_grad
    assert math.isnan(task_score(task, out.detach(), encode_targets(task, np.array([-1.0, np.nan, -1]))))


def test_study_on_one_dataset_with_partly_missing_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    a = (x[:, 0] + x[:, 1] > 0).astype(float)
    b = np.argmax(x[:, 2:5], axis=1).astype(float)
    a[rng.random(400) < 0.3] = np.nan  # 30% of task a unlabelled
    b[rng.random(400) < 0.5] = -1  # half of task b unlabelled
    data = {"a": TaskData(x[:300], a[:300], x[300:], a[300:]), "b": TaskData(x[:300], b[:300], x[300:], b[300:])}
    cfg = {**tiny_config(data, seeds=1, fractions=[0.5, 1.0], strategies=["scratch", "mtl", "mtl:pcgrad"]), "tasks": {"a": {}, "b": {}}}
    with pytest.warns(PolytaskWarning, match=r"task 'b': \d+ label\(s\) of -1 are read as missing"):
        summary = Study(cfg, data=data).run(out=tmp_path, progress=False)
    assert summary["runs"]["failed"] == 0
    assert all(math.isfinite(c["mean"]) and 0 <= c["mean"] <= 1 for c in summary["cells"])
