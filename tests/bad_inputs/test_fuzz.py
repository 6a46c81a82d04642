"""Fuzzing the config loader and the data loaders (Hypothesis): whatever they are given,
they return a config or data, or raise polytask's own one-line error; nothing else escapes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from polytask import Study
from polytask.config import DataConfig
from polytask.core.errors import ConfigError
from polytask.data.loaders import load_data
from polytask.study.resolve import load_config, validate

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=True) | st.text(max_size=12)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)

VALID = {
    "name": "fuzz",
    "seeds": 2,
    "fractions": [0.5, 1.0],
    "tasks": {"a": {"data": {"builtin": "digits"}}},
    "model": {"backbone": "mlp", "mlp": {"hidden": [8]}},
    "strategies": ["scratch", "fine-tune"],
    "train": {"max_epochs": 1, "batch_size": 16},
}


def _one_line(e: ConfigError) -> None:
    assert str(e) and "\n" not in str(e), repr(str(e))


@FUZZ
@given(raw=values)
def test_any_yaml_value_is_a_config_or_one_line(raw):
    try:
        validate(raw)
    except ConfigError as e:
        _one_line(e)


@FUZZ
@given(
    path=st.lists(
        st.sampled_from(["name", "seeds", "fractions", "tasks", "a", "data", "model", "backbone", "strategies", "train", "lr", "tune", "analysis"]),
        min_size=1,
        max_size=3,
    ),
    value=values,
)
def test_a_valid_config_with_any_field_replaced_is_a_config_or_one_line(path, value):
    raw = yaml.safe_load(yaml.safe_dump(VALID))
    node = raw
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict):
        node[path[-1]] = value
    try:
        validate(raw)
    except ConfigError as e:
        _one_line(e)


@FUZZ
@given(text=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_config_file_is_a_config_or_one_line(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "study.yaml"
        path.write_bytes(text)
        try:
            load_config(path)
        except ConfigError as e:
            _one_line(e)


cells = st.sampled_from(["", "1", "-2.5", "nan", "inf", "x", "é", "1e400", "NA", '"a,b"', "0", "?", " "])


@FUZZ
@given(
    header=st.lists(st.sampled_from(["a", "b", "label", "text", "", "a"]), min_size=1, max_size=4),
    rows=st.lists(st.lists(cells, min_size=0, max_size=5), max_size=25),
    raw=st.binary(max_size=40),
)
def test_any_csv_loads_as_a_study_task_or_is_one_line(header, rows, raw):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_bytes((",".join(header) + "\n" + "\n".join(",".join(r) for r in rows) + "\n").encode() + raw)
        cfg = {**VALID, "tasks": {"a": {"data": {"csv": str(path), "target": "label", "impute": "median"}}}, "strategies": ["scratch"]}
        try:
            Study(cfg).load()
        except ConfigError as e:
            _one_line(e)


arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_]),
    shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
)


@FUZZ
@given(data=st.dictionaries(st.sampled_from(["x_train", "y_train", "x_test", "y_test", "x_val", "y_val", "other"]), arrays, max_size=6))
def test_any_npz_loads_as_a_study_task_or_is_one_line(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.npz"
        np.savez(path, **data)
        cfg = {**VALID, "tasks": {"a": {"data": {"npz": str(path)}}}, "strategies": ["scratch"]}
        try:
            Study(cfg).load()
        except ConfigError as e:
            _one_line(e)


@FUZZ
@given(content=st.binary(max_size=200))
def test_any_file_named_as_data_is_data_or_one_line(content):
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in (("a.npz", {"npz": "a.npz"}), ("a.parquet", {"parquet": "a.parquet", "target": "y"}), ("a.csv", {"csv": "a.csv", "target": "y"})):
            path = Path(tmp) / name
            path.write_bytes(content)
            try:
                load_data(DataConfig.model_validate({k: (str(path) if k in ("npz", "parquet", "csv") else v) for k, v in spec.items()}))
            except ConfigError as e:
                _one_line(e)
