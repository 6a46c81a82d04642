"""Conversion that does not depend on the run (resizing images, tokenizing texts) is done
once per study and task; every run then takes its rows, and the tensors are the ones
converting the run's own rows would give."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polytask import Study
from polytask.core.tasks import infer_task
from polytask.data import TaskData, prepare_task
from polytask.data import prepare as prepare_module
from polytask.data.prepare import model_inputs
from polytask.methods.backbones.text import HashTokenizer

WORDS = "a fine film dull plot great cast weak ending superb acting not bad at all really".split()


def _images(n=90, side=12, seed=0, val=False):
    rng = np.random.default_rng(seed)
    x = rng.random((n + 40, side, side)).astype(np.float32)
    y = rng.integers(0, 3, n + 40)
    extra = {"x_val": x[n : n + 20], "y_val": y[n : n + 20]} if val else {}
    return TaskData(x[:n], y[:n], x[n + 20 :], y[n + 20 :], **extra)


def _texts(n=90, seed=0):
    rng = np.random.default_rng(seed)
    texts = np.array([" ".join(rng.choice(WORDS, size=rng.integers(1, 12))) for _ in range(n + 30)], dtype=object)
    y = rng.integers(0, 2, n + 30)
    return TaskData(texts[:n], y[:n], texts[n:], y[n:])


@pytest.mark.parametrize("kind", ["images", "images-with-val", "text"])
@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize(("fraction", "hide"), [(1.0, False), (0.3, False), (0.3, True)])
def test_rows_of_inputs_converted_once_equal_converting_the_runs_rows(kind, seed, fraction, hide):
    data = _texts() if kind == "text" else _images(val=kind == "images-with-val")
    task = infer_task("t", data.y_train)
    encode = HashTokenizer(64, 8) if kind == "text" else None
    size = None if kind == "text" else 20
    once = model_inputs(data, size, encode)
    a = prepare_task(data, task, seed, fraction, size, hide_labels=hide, encode=encode)
    b = prepare_task(data, task, seed, fraction, size, hide_labels=hide, encode=encode, inputs=once)
    for split in ("train", "val", "test"):
        x, y = getattr(a, split), getattr(b, split)
        assert x.x.shape == y.x.shape and torch.equal(x.x, y.x)
        torch.testing.assert_close(x.y, y.y, rtol=0, atol=0, equal_nan=True)


def test_a_study_converts_each_task_once_not_once_per_run(tmp_path, monkeypatch):
    calls = []
    real = prepare_module.as_model_input
    monkeypatch.setattr(prepare_module, "as_model_input", lambda x, *a, **k: calls.append(len(x)) or real(x, *a, **k))
    data = {"target": _images(seed=1), "source": _images(seed=2)}
    cfg = {
        "name": "once",
        "seeds": 2,
        "fractions": [0.5, 1.0],
        "tasks": {"target": {}, "source": {"role": "source"}},
        "model": {"backbone": "cnn", "cnn": {"channels": [4], "hidden": 8}, "image_size": 16},
        "strategies": ["scratch", "fine-tune", "mtl"],
        "train": {"max_epochs": 1, "batch_size": 32, "patience": 1, "min_steps_per_epoch": 1},
    }
    study = Study(cfg, data=data)
    study.run(out=tmp_path / "out", progress=False)
    # Shapes are read from one row; beyond that, each task's three splits are converted once
    # for the whole grid (2 seeds x 2 fractions x 3 strategies, plus pretraining).
    whole = [n for n in calls if n > 1]
    assert sorted(whole) == [20, 20, 90, 90]  # train and test of each task; no validation file


def test_workers_fork_after_the_inputs_are_converted(tmp_path, monkeypatch):
    # The driver converts every task's inputs before the pool forks, so the workers inherit
    # them (copy-on-write) instead of each converting them again.
    data = {"target": _images(seed=1), "source": _images(seed=2)}
    cfg = {
        "name": "fork",
        "seeds": 2,
        "fractions": [1.0],
        "tasks": {"target": {}, "source": {"role": "source"}},
        "model": {"backbone": "cnn", "cnn": {"channels": [4], "hidden": 8}, "image_size": 16},
        "strategies": ["scratch"],
        "train": {"max_epochs": 1, "batch_size": 32, "patience": 1, "min_steps_per_epoch": 1},
    }
    study = Study(cfg, data=data)
    study.run(out=tmp_path / "out", workers=2, progress=False)
    assert set(study._model_inputs) == {("target", None), ("source", None)}
