"""No test row of a target is a training row of another task; splits follow content, not paths."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import FAST_TRAIN

from polytask import ConfigError, Study
from polytask.data import TaskData
from polytask.data.loaders import load_data
from polytask.study.resolve import validate


def _csv(path, n=200, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, 4)), columns=["f1", "f2", "f3", "f4"])
    df["a"] = (df.f1 + df.f2 > 0).astype(int) + (df.f3 > 1).astype(int)
    df["b"] = (df.f2 - df.f4 > 0).astype(int)
    df.to_csv(path, index=False)
    return path


def _task(csv, target, **extra):
    return {"data": {"csv": str(csv), "target": target, "features": ["f1", "f2", "f3", "f4"], **extra}}


def _study(tasks, **extra):
    return Study(
        {"name": "leak", "seeds": 1, "tasks": tasks, "strategies": ["scratch", "mtl"], "model": {"mlp": {"hidden": [8]}}, "train": FAST_TRAIN, **extra}
    )


def test_tasks_read_from_one_csv_share_one_test_split(tmp_path):
    csv = _csv(tmp_path / "rows.csv")
    raw, _ = _study({"a": _task(csv, "a"), "b": {**_task(csv, "b"), "role": "source"}}).load()
    np.testing.assert_array_equal(raw["a"].x_test, raw["b"].x_test)
    np.testing.assert_array_equal(raw["a"].x_train, raw["b"].x_train)


def test_two_copies_of_one_file_get_the_same_test_rows_and_caps(tmp_path):
    one = _csv(tmp_path / "one.csv")
    (tmp_path / "elsewhere").mkdir()
    two = shutil.copy(one, tmp_path / "elsewhere" / "two.csv")
    for extra in ({}, {"max_train": 50, "max_test": 20}):
        a = load_data(validate({"tasks": {"t": _task(one, "a", **extra)}, "strategies": ["scratch"]}).tasks["t"].data)
        b = load_data(validate({"tasks": {"t": _task(two, "a", **extra)}, "strategies": ["scratch"]}).tasks["t"].data)
        np.testing.assert_array_equal(a.x_test, b.x_test)
        np.testing.assert_array_equal(a.x_train, b.x_train)


def _arrays(x, y, test):
    train = np.setdiff1d(np.arange(len(x)), test)
    return TaskData(x[train], y[train], x[test], y[test])


def test_a_targets_test_rows_in_another_tasks_training_rows_stop_the_study(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    data = {"a": _arrays(x, y, np.arange(150, 200)), "b": _arrays(x, 1 - y, np.arange(0, 50))}
    tasks = {"a": {}, "b": {"role": "source"}}
    with pytest.raises(ConfigError, match=r"'a'.*'b'|'b'.*'a'") as e:
        Study({"name": "leak", "tasks": tasks, "strategies": ["scratch", "mtl"]}, data=data).load()
    assert "50 of 50" in str(e.value) and "allow_overlap" in str(e.value)
    # Knowingly: proceeds.
    Study({"name": "leak", "tasks": tasks, "strategies": ["scratch", "mtl"], "allow_overlap": True}, data=data).load()
    # The check runs before anything is written.
    with pytest.raises(ConfigError):
        Study({"name": "leak", "tasks": tasks, "strategies": ["scratch", "mtl"]}, data=data).run(out=tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_leaked_rows_are_counted_as_rows_even_when_the_test_set_repeats_them():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    x[190:] = x[180:190]  # the test rows 180..199 hold each of ten values twice
    y = (x[:, 0] > 0).astype(np.int64)
    data = {"a": _arrays(x, y, np.arange(150, 200)), "b": TaskData(x[150:200], y[150:200], x[:20], y[:20])}
    with pytest.raises(ConfigError) as e:
        Study({"name": "leak", "tasks": {"a": {}, "b": {"role": "source"}}, "strategies": ["scratch", "mtl"]}, data=data).load()
    assert "50 of 50" in str(e.value)


def test_rows_the_target_repeats_between_its_own_train_and_test_are_no_leak():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 3)).astype(np.float32)
    x[110:] = x[:10]  # the target's data repeats ten rows between its train and test
    y = (x[:, 0] > 0).astype(np.int64)
    target = _arrays(x, y, np.arange(100, 120))
    other = TaskData(x[:60], y[:60], rng.normal(size=(20, 3)).astype(np.float32), y[:20])  # holds those ten rows in training
    Study({"name": "dup", "tasks": {"a": {}, "b": {"role": "source"}}, "strategies": ["scratch", "mtl"]}, data={"a": target, "b": other}).load()


def test_stratify_is_refused_for_a_file_that_several_tasks_read(tmp_path):
    csv = _csv(tmp_path / "rows.csv")
    with pytest.raises(ConfigError, match="stratify"):
        _study({"a": _task(csv, "a", stratify=True), "b": {**_task(csv, "b"), "role": "source"}}).load()
    raw, _ = _study({"a": _task(csv, "a", stratify=True)}, strategies=["scratch"]).load()
    assert set(np.unique(raw["a"].y_test)) == set(np.unique(raw["a"].y_train))


def test_tasks_sharing_inputs_keep_the_same_shrunken_validation_rows(shared_family):
    import torch

    study = Study(
        {"name": "v", "seeds": 1, "tasks": {"target": {}, "aux": {"role": "source"}}, "strategies": ["scratch", "mtl"], "train": FAST_TRAIN},
        data=shared_family,
    )
    for fraction in (0.1, 0.5):
        a, b = study.prepare("target", 0, fraction), study.prepare("aux", 0, fraction)
        assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.x, b.train.x)
        assert len(a.val) < len(study.prepare("target", 0, 1.0).val)
