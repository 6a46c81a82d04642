"""Parquet tables read like CSV files: the same task, split and encoding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from polytask import ConfigError, Study
from polytask.config import DataConfig
from polytask.data.loaders import load_data
from polytask.data.ondisk import is_on_disk
from polytask.study.store import ResultStore

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


def _messy(n=300, seed=0):
    """Numbers with gaps, a few-level and a many-level category with gaps, a label."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n) * 10,
            "colour": rng.choice(["red", "green", "blue"], n).astype(object),
            "city": rng.choice([f"c{i}" for i in range(40)], n).astype(object),
            "label": rng.integers(0, 3, n),
        }
    )
    df.loc[rng.random(n) < 0.1, "a"] = np.nan
    df.loc[rng.random(n) < 0.1, "colour"] = None
    return df


@pytest.mark.parametrize("kind", ["messy", "numeric", "test-file"])
def test_a_parquet_file_on_disk_gives_the_arrays_read_in_memory(tmp_path, monkeypatch, kind):
    from polytask.data import parquet

    monkeypatch.setattr(parquet, "BATCH_ROWS", 37)  # many batches, rows of both splits in each
    df = _messy() if kind != "numeric" else _frame(300).drop(columns="colour")
    df.to_parquet(tmp_path / "t.parquet", index=False)
    spec = {"parquet": str(tmp_path / "t.parquet"), "target": "label", "impute": "median", "onehot_max": 5}
    if kind == "test-file":
        _messy(80, seed=1).to_parquet(tmp_path / "test.parquet", index=False)
        spec["test"] = str(tmp_path / "test.parquet")
    cfg = DataConfig.model_validate(spec)
    held = load_data(cfg)
    stored = load_data(cfg, store=tmp_path / "prepared")
    assert is_on_disk(stored.x_train) and is_on_disk(stored.x_test) and not is_on_disk(held.x_train)
    assert stored.table == held.table and (kind == "numeric") == (held.table is None)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(held, k), getattr(stored, k)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), k
    # Read again: the folder is complete, nothing is written twice.
    again = load_data(cfg, store=tmp_path / "prepared")
    assert np.array_equal(again.x_test, held.x_test, equal_nan=True) and len(list((tmp_path / "prepared").iterdir())) == 1


@pytest.mark.parametrize("kind", ["messy", "numeric"])
def test_a_study_on_a_parquet_table_on_disk_gives_the_numbers_of_one_in_memory(tmp_path, kind):
    (_messy() if kind == "messy" else _frame(300).drop(columns="colour")).to_parquet(tmp_path / "t.parquet", index=False)
    data = {"parquet": str(tmp_path / "t.parquet"), "target": "label", "impute": "median", "onehot_max": 5}
    cfg = {
        "name": "table",
        "seeds": 2,
        "fractions": [0.5, 1.0],
        "tasks": {"t": {"data": data}},
        "model": {"backbone": "mlp"},
        "strategies": ["scratch"],
        "train": {"max_epochs": 3, "batch_size": 32, "patience": 3, "min_steps_per_epoch": 2},
    }
    on_disk = Study(cfg)
    on_disk.run_grid(tmp_path / "disk", progress=False)
    assert is_on_disk(on_disk.load()[0]["t"].x_train)
    Study(cfg, data={"t": load_data(DataConfig.model_validate(data))}).run_grid(tmp_path / "memory", progress=False)
    numbers = []
    for name in ("disk", "memory"):
        rows = ResultStore(tmp_path / name / "results.jsonl").rows()
        assert rows and all(r["status"] == "ok" for r in rows), [r.get("error") for r in rows]
        numbers.append({r["run_id"]: (r["test"], r["val"], r["epochs"]) for r in rows})
    assert numbers[0] == numbers[1]
