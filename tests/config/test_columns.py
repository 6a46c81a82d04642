"""One task per label column of a CSV (multilabel-style data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polytask import Study
from polytask.config import load_config, tasks_from_columns
from polytask.core.errors import ConfigError
from polytask.study.resolve import validate


@pytest.fixture
def multilabel_csv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 4))
    df = pd.DataFrame(x, columns=["f1", "f2", "f3", "f4"])
    df["a"] = (x[:, 0] + x[:, 1] > 0).astype(int)
    df["b"] = (x[:, 0] - x[:, 2] > 0).astype(int)
    df["c"] = (x[:, 3] > 0.5).astype(int)
    path = tmp_path / "labels.csv"
    df.to_csv(path, index=False)
    return path


def test_yaml_expands_one_task_per_column_with_shared_test_rows(multilabel_csv, tmp_path):
    cfg_file = tmp_path / "study.yaml"
    cfg_file.write_text(
        "tasks_from_columns:\n  - {csv: labels.csv, targets: [a, b, c]}\n"
        "model: {mlp: {hidden: [8]}}\nstrategies: [scratch, mtl]\nseeds: 1\n"
        "train: {max_epochs: 2, patience: 1, min_steps_per_epoch: 1}\n"
    )
    cfg = load_config(cfg_file)
    assert list(cfg.tasks) == ["a", "b", "c"] and cfg.targets == ["a", "b", "c"]
    raw, tasks = Study(cfg).load()
    assert {t.kind for t in tasks.values()} == {"binary"}
    # Inputs are the feature columns only: the other labels are not inputs.
    assert raw["a"].x_train.shape[1] == 4
    np.testing.assert_array_equal(raw["a"].x_test, raw["c"].x_test)
    summary = Study(cfg).run(out=tmp_path / "out", progress=False)
    assert {c["task"] for c in summary["cells"]} == {"a", "b", "c"}


def test_python_helper_and_errors(multilabel_csv):
    entries = tasks_from_columns(multilabel_csv, ["a", "b"], features=["f1", "f2"], role="source")
    assert entries["a"]["data"]["features"] == ["f1", "f2"] and entries["b"]["role"] == "source"
    base = {"strategies": ["scratch"]}
    with pytest.raises(ConfigError, match=r"tasks_from_columns\[0\]: unknown key 'colums'"):
        validate({**base, "tasks_from_columns": [{"csv": str(multilabel_csv), "targets": ["a"], "colums": 1}]})
    with pytest.raises(ConfigError, match="task 'a' is already defined"):
        validate({**base, "tasks": {"a": {"data": {"builtin": "digits"}}}, "tasks_from_columns": [{"csv": "x.csv", "targets": ["a"]}]})
