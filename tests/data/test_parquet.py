"""Parquet tables read like CSV files: the same task, split and encoding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polytask import ConfigError
from polytask.config import DataConfig
from polytask.data.loaders import load_data

pytest.importorskip("pyarrow", reason="Parquet needs the parquet extra (pyarrow)")


def _frame(n=120, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "colour": rng.choice(["red", "green", "blue"], n), "label": rng.integers(0, 2, n)})


def test_a_parquet_file_gives_the_csv_files_task(tmp_path):
    # With the test rows given (a drawn test split is seeded by the file's bytes, which differ).
    df, test = _frame(), _frame(40, seed=1)
    df.to_csv(tmp_path / "t.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    df.to_parquet(tmp_path / "t.parquet", index=False)
    test.to_parquet(tmp_path / "test.parquet", index=False)
    a = load_data(DataConfig(csv=tmp_path / "t.csv", test=tmp_path / "test.csv", target="label"))
    b = load_data(DataConfig.model_validate({"parquet": str(tmp_path / "t.parquet"), "test": str(tmp_path / "test.parquet"), "target": "label"}))
    for split in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(a, split), getattr(b, split), equal_nan=True)


def test_csv_and_parquet_together_and_a_broken_parquet_are_one_line(tmp_path):
    with pytest.raises(ValueError, match="give either 'csv' or 'parquet', not both"):
        DataConfig.model_validate({"parquet": "a.parquet", "csv": "b.csv", "target": "y"})
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ConfigError, match=r"bad.parquet: not a readable Parquet file"):
        load_data(DataConfig.model_validate({"parquet": str(tmp_path / "bad.parquet"), "target": "y"}))
