"""Tables as users have them: categorical columns, missing values, per-run encoders."""

from __future__ import annotations

import copy
import math
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FAST_TRAIN
from torch import nn

from polytask import Study
from polytask.config import DataConfig, tasks_from_columns
from polytask.core.errors import ConfigError
from polytask.core.tasks import infer_task
from polytask.data.arrays import TaskData, check_task_data
from polytask.data.loaders import load_data, source_key
from polytask.data.prepare import model_input_shape, prepare_task
from polytask.data.splits import holdout, rng_for
from polytask.data.tabular import ONEHOT_MAX_LEVELS, embedding_dim, fit_table, table_layout, table_rows
from polytask.methods.backbones.mlp import MLP, build_mlp
from polytask.study.resolve import validate

COUNTRIES = [f"country-{i:02d}" for i in range(40)]


def census(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A census-like table: numeric columns, categorical ones (one with 40 levels), NaNs,
    and two label columns (``income``: strings, ``married``: 0/1)."""
    rng = np.random.default_rng(seed)
    age = rng.integers(17, 90, n).astype(float)
    hours = rng.normal(40, 12, n).round()
    workclass = rng.choice(["Private", "Self-emp", "Gov", "Without-pay"], n, p=[0.7, 0.15, 0.13, 0.02]).astype(object)
    sex = rng.choice(["Male", "Female"], n)
    occupation = rng.choice([f"occ-{i}" for i in range(12)], n).astype(object)
    country = rng.choice(COUNTRIES, n)
    score = (age - 40) / 15 + (hours - 40) / 12 + 0.8 * (sex == "Male") + 0.7 * (workclass == "Self-emp")
    score += 0.4 * np.array([int(c[-2:]) % 3 for c in country]) + rng.normal(0, 1, n)
    married = (age / 50 + 0.5 * (sex == "Male") + rng.normal(0, 0.5, n) > 1.2).astype(int)
    workclass[rng.random(n) < 0.05] = np.nan
    occupation[rng.random(n) < 0.03] = np.nan
    age[rng.random(n) < 0.04] = np.nan
    frame = {"age": age, "workclass": workclass, "education_num": rng.integers(1, 17, n), "sex": sex, "occupation": occupation}
    return pd.DataFrame({**frame, "hours": hours, "country": country, "income": np.where(score > 0.5, ">50K", "<=50K"), "married": married})


# ---- a study on a census-like CSV ----------------------------------------------------------


def test_a_census_like_csv_runs_scratch_and_mtl_with_finite_metrics(tmp_path):
    census().to_csv(tmp_path / "census.csv", index=False)
    cfg = {
        "name": "census",
        "seeds": 2,
        "fractions": [0.5, 1.0],
        "tasks_from_columns": [{"csv": str(tmp_path / "census.csv"), "targets": ["income", "married"], "impute": "median"}],
        "model": {"backbone": "mlp", "mlp": {"hidden": [16]}},
        "strategies": ["scratch", "mtl"],
        "train": FAST_TRAIN,
    }
    study = Study(cfg)
    raw, _ = study.load()
    table = raw["income"].table
    assert table.numeric == ("age", "education_num", "hours")
    assert [c.name for c in table.onehot] == ["workclass", "sex", "occupation"] and [c.name for c in table.coded] == ["country"]
    assert table.indicators == ("age", "workclass", "occupation") and table.impute == "median"
    # 3 numeric + (1+4) + (1+2) + (1+12) one-hot + 3 indicators + 1 code = 28 columns, the last embedded.
    # The input shape is a plain tuple; the code column's embedding is the layout's, a backbone option.
    assert raw["income"].input_shape == (28,) and type(raw["income"].input_shape) is tuple
    assert table.embeddings == ((41, embedding_dim(40)),)
    summary = study.run(out=tmp_path / "out", progress=False)
    cells = summary["cells"]
    assert {(c["task"], c["strategy"], c["fraction"]) for c in cells} == {
        (t, s, f) for t in ("income", "married") for s in ("scratch", "mtl") for f in (0.5, 1.0)
    }
    assert all(math.isfinite(c["mean"]) and 0.5 < c["mean"] <= 1.0 for c in cells)


# ---- encoders see the run's training rows only ---------------------------------------------


def _tiny_table(impute: str) -> TaskData:
    """5 training rows, 2 validation rows (level ``z`` only there), 2 test rows (level ``w``)."""
    train = pd.DataFrame({"num": [1.0, 2.0, 6.0, 6.0, np.nan], "c": ["x", "y", np.nan, "y", "y"]})
    val = pd.DataFrame({"num": [np.nan, 100.0], "c": ["z", np.nan]})
    test = pd.DataFrame({"num": [np.nan, 3.0], "c": ["w", "x"]})
    # The layout comes from every row a run may train on: in a CSV those are the train and
    # validation rows together (validation is carved per seed), never the test rows.
    layout = table_layout("tiny.csv", pd.concat([train, val]), ["c"], impute)
    rows = {k: table_rows(layout, f) for k, f in (("train", train), ("val", val), ("test", test))}
    return TaskData(rows["train"], np.array([0, 1, 0, 1, 0]), rows["test"], np.array([1, 0]), rows["val"], np.array([0, 1]), "tiny.csv", layout)


@pytest.mark.parametrize(("impute", "filled"), [("median", 4.0), ("most_frequent", 6.0)])
def test_impute_with_indicators_by_hand(impute, filled):
    data = _tiny_table(impute)
    layout = data.table
    assert layout.numeric == ("num",) and layout.onehot[0].levels == ("x", "y", "z") and layout.indicators == ("num", "c")
    # num | c: unknown, x, y, z | missing num, missing c
    assert layout.width == 7 and data.input_shape == (7,)
    task = infer_task("t", data.y_train)
    check_task_data(data, task)  # NaN is allowed where the layout imputes
    p = prepare_task(data, task, seed=0, fraction=1.0)  # x_val given, fraction 1: every training row is the run's
    num = np.array([1.0, 2.0, 6.0, 6.0, filled])  # median of 1, 2, 6, 6 is 4; the most frequent value is 6
    mean, std = num.mean(), num.std(ddof=1)
    y_, x_, unk = [0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]  # c's most frequent level is y
    expected = {
        "train": [[num[0], *x_, 0, 0], [num[1], *y_, 0, 0], [num[2], *y_, 0, 1], [num[3], *y_, 0, 0], [num[4], *y_, 1, 0]],
        # z occurs in no training row of the run: unknown, although the layout has its column
        "val": [[filled, *unk, 1, 0], [100.0, *y_, 0, 1]],
        "test": [[filled, *unk, 1, 0], [3.0, *x_, 0, 0]],  # w occurs in no training row: unknown
    }
    for split, rows in expected.items():
        want = np.array(rows, dtype=np.float64)
        want[:, 0] = (want[:, 0] - mean) / std
        np.testing.assert_allclose(getattr(p, split).x.numpy(), want, rtol=1e-6, atol=1e-6)


def test_a_level_only_in_test_rows_is_unknown_and_fitting_reads_no_test_row(tmp_path):
    train = census(400, seed=1)
    test = census(100, seed=2)
    test.loc[:9, "workclass"] = "Never-worked"  # a few-level (one-hot) column
    test.loc[:9, "country"] = "Atlantis"  # a many-level (coded) column
    test.loc[10:19, "age"] = np.nan
    test.loc[10:19, "hours"] = 1e6  # a test value no encoder may read
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    spec = DataConfig(csv=tmp_path / "train.csv", test=tmp_path / "test.csv", target="income", exclude=["married"], impute="median")
    data = load_data(spec)
    layout = data.table
    assert "Never-worked" not in layout.onehot[0].levels and "Atlantis" not in layout.coded[0].levels
    block = layout.block(0)
    task = infer_task("income", data.y_train)
    p = prepare_task(data, task, seed=0, fraction=0.5)
    x = p.test.x.numpy()
    assert np.all(x[:10, block.start] == 1) and np.all(x[:10, block.start + 1 : block.stop] == 0)  # unknown column
    assert np.all(x[:10, -1] == 0) and np.all(x[10:, -1] >= 1)  # code 0: unknown
    # Encoders fitted on the run's training rows only: a test row changes no fitted value.
    enc = fit_table(layout, data.x_train)
    changed = TaskData(**{**data.__dict__, "x_test": data.x_test[::-1].copy()})
    again = prepare_task(changed, task, seed=0, fraction=0.5)
    assert torch.equal(p.train.x, again.train.x) and torch.equal(p.val.x, again.val.x)
    # The age a test row gets is the median of the training rows, never of test rows.
    assert enc.transform(data.x_test)[10, 0] == np.nanmedian(data.x_train[:, 0])


def test_a_level_in_the_runs_validation_rows_only_is_unknown_there():
    data = _tiny_table("median")
    enc = fit_table(data.table, data.x_train)
    assert enc.known[0].tolist() == [1.0, 2.0]  # x and y: what the run's rows have
    z = enc.transform(data.x_val)[0]
    assert z[1:5].tolist() == [1, 0, 0, 0]


# ---- one-hot or embedding ------------------------------------------------------------------


def _levels_frame(n: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "few": [f"f{i}" for i in rng.integers(0, ONEHOT_MAX_LEVELS, n)],  # 16 levels
            "many": [f"m{i}" for i in np.r_[np.arange(17), rng.integers(0, 17, n - 17)]],  # 17 levels
            "v": rng.normal(size=n),
            "label": rng.integers(0, 2, n),
        }
    )


@pytest.mark.parametrize(("onehot_max", "onehot", "coded"), [(None, ["few"], ["many"]), (0, [], ["few", "many"]), (17, ["few", "many"], [])])
def test_few_levels_are_one_hot_and_many_are_embedded(tmp_path, onehot_max, onehot, coded):
    _levels_frame().to_csv(tmp_path / "l.csv", index=False)
    extra = {} if onehot_max is None else {"onehot_max": onehot_max}
    data = load_data(DataConfig(csv=tmp_path / "l.csv", target="label", **extra))
    t = data.table
    assert [c.name for c in t.onehot] == onehot and [c.name for c in t.coded] == coded
    assert len(t.onehot[0].levels if onehot else t.coded[0].levels) == ONEHOT_MAX_LEVELS
    assert t.width == 1 + sum(1 + len(c.levels) for c in t.onehot) + len(t.coded)
    assert data.input_shape == (t.width,) and type(data.input_shape) is tuple and len(t.embeddings) == len(coded)
    if onehot_max is None:  # 16 levels: 17 one-hot columns; 17 levels: one code, an 18-row embedding of width 8
        assert t.width == 1 + 17 + 1 and t.embeddings == ((18, 8),) and embedding_dim(17) == 8
        net = build_mlp(data.input_shape, hidden=[4], embeddings=t.embeddings)
        assert net.net[1].in_features == 18 + 8 and net.embeddings[0].weight.shape == (18, 8)


def test_the_mlp_embeds_coded_columns_and_keeps_numeric_inputs_bit_for_bit():
    torch.manual_seed(0)
    plain = MLP(5, [4, 3], 0.0)
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Flatten(), nn.Linear(5, 4), nn.ReLU(), nn.Dropout(0.0), nn.Linear(4, 3), nn.ReLU(), nn.Dropout(0.0))
    assert list(plain.state_dict()) == [f"net.{k}" for k in ref.state_dict()] and not hasattr(plain, "embeddings")
    for a, b in zip(plain.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.randn(6, 5)
    assert torch.equal(plain(x), ref(x))
    assert not hasattr(build_mlp((5,), hidden=[4, 3], dropout=0.0), "embeddings")

    # Two dense columns, then one code column of 2 levels (+ unknown) embedded in 2 dims.
    torch.manual_seed(0)
    net = MLP(3, [4], 0.0, embeddings=[(3, 2)])
    assert net.net[1].in_features == 2 + 2
    x = torch.tensor([[0.5, -1.0, 0.0], [1.0, 2.0, 2.2], [0.0, 0.0, 7.0], [1.0, 1.0, -1.0]])
    codes = torch.tensor([0, 2, 2, 0])  # rounded, and clipped to the table
    want = torch.relu(torch.cat([x[:, :2], net.embeddings[0].weight[codes]], 1) @ net.net[1].weight.T + net.net[1].bias)
    torch.testing.assert_close(net(x), want)


def test_table_shapes_are_plain_tuples_and_the_embeddings_survive_copies(tmp_path):
    _levels_frame().to_csv(tmp_path / "l.csv", index=False)
    data = load_data(DataConfig(csv=tmp_path / "l.csv", target="label"))
    t = data.table
    assert t.shape == (t.width,) == model_input_shape(data) and type(t.shape) is tuple
    for c in (copy.copy(t), copy.deepcopy(t), pickle.loads(pickle.dumps(t))):
        assert c == t and c.embeddings == ((18, 8),) and c.shape == t.shape
    # The embeddings are an option of the backbone, given as pairs or lists (a saved model's options).
    for embeddings in (t.embeddings, [[18, 8]]):
        net = build_mlp(t.shape, hidden=[4], embeddings=embeddings)
        assert net.embedding_sizes == ((18, 8),) and net.net[1].in_features == t.width - 1 + 8
    assert build_mlp(t.shape, hidden=[4]).embedding_sizes == ()


# ---- purely numeric files are read and prepared as before ------------------------------------


def test_a_purely_numeric_csv_gives_the_same_arrays_and_tensors_as_before(tmp_path):
    rng = np.random.default_rng(3)
    df = pd.DataFrame(rng.normal(size=(120, 3)), columns=["a", "b", "c"])
    df["label"] = rng.integers(0, 3, 120)
    df.to_csv(tmp_path / "n.csv", index=False)
    spec = DataConfig(csv=tmp_path / "n.csv", target="label", impute="median")  # nothing to impute: no layout
    data = load_data(spec)
    assert data.table is None and data.x_train.dtype == np.float32
    y = df["label"].to_numpy(np.float64)
    train, test = holdout(y, 0.25, rng_for(0, source_key(spec), "test"), stratify=False)
    x = pd.read_csv(tmp_path / "n.csv")[["a", "b", "c"]].to_numpy(np.float32)
    assert np.array_equal(data.x_train, x[train]) and np.array_equal(data.x_test, x[test])
    assert model_input_shape(data) == (3,) == data.input_shape
    # The prepared tensors, by hand: the seed's validation carve, then standardization with
    # the statistics of the run's training rows (float64 sums, ddof=1, as float32).
    task = infer_task("t", data.y_train)
    p = prepare_task(data, task, seed=0, fraction=1.0)
    keep, held = holdout(data.y_train, 0.2, rng_for(0, "t", "val"), stratify=True)
    t = torch.as_tensor(data.x_train[keep])
    xd = data.x_train[keep].astype(np.float64)
    m = xd.sum(axis=0) / len(xd)
    mean = torch.as_tensor(m.astype(np.float32))
    std = torch.as_tensor(np.sqrt(((xd - m) ** 2).sum(axis=0) / (len(xd) - 1)).astype(np.float32))
    assert torch.equal(p.train.x, (t - mean) / std)
    assert torch.equal(p.val.x, (torch.as_tensor(data.x_train[held]) - mean) / std)
    assert torch.equal(p.test.x, (torch.as_tensor(data.x_test) - mean) / std)
    assert p.table is None and p.input_shape == (3,)


# ---- what still cannot be read: one line naming the column and the file -----------------------


def _one_line(e: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(e.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize("column", ["age", "workclass"])
def test_a_missing_value_without_impute_keeps_the_one_line_error(tmp_path, column):
    df = census(200)
    df["age"] = df["age"].fillna(40.0)
    df["workclass"] = df["workclass"].fillna("Private")
    df["occupation"] = df["occupation"].fillna("occ-0")
    df.loc[7, column] = np.nan
    df.to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(ConfigError) as e:
        load_data(DataConfig(csv=tmp_path / "c.csv", target="income", exclude=["married"]))
    _one_line(e, "c.csv", f"'{column}'", "1 missing (NaN)", "impute")
    # An NPZ or in-memory arrays with NaN and no impute: the check every task passes.
    x = np.ones((10, 2), np.float32)
    x[3, 1] = np.nan
    d = TaskData(x, np.arange(10) % 2, np.ones((4, 2), np.float32), np.arange(4) % 2, origin="a.npz")
    with pytest.raises(ConfigError) as e:
        check_task_data(d, infer_task("t", d.y_train))
    _one_line(e, "a.npz: x_train has 1 NaN or infinite values; expected finite features")


def test_a_study_stops_on_a_missing_value_without_impute(tmp_path):
    census(200).to_csv(tmp_path / "c.csv", index=False)
    cfg = {"tasks": {"income": {"data": {"csv": str(tmp_path / "c.csv"), "target": "income", "exclude": ["married"]}}}, "strategies": ["scratch"]}
    with pytest.raises(ConfigError) as e:
        Study(cfg).load()
    _one_line(e, "c.csv", "feature column 'age'", "impute")


def test_columns_that_still_cannot_be_read(tmp_path):
    df = census(200)
    df["age"] = df["age"].fillna(40.0).astype(object)
    df.loc[[3, 9], "age"] = "?"
    df.to_csv(tmp_path / "mixed.csv", index=False)
    with pytest.raises(ConfigError) as e:
        load_data(DataConfig(csv=tmp_path / "mixed.csv", target="income", impute="median", exclude=["married"]))
    _one_line(e, "mixed.csv", "feature column 'age' is not numeric", "2 are text ('?')")

    df = census(200)
    df["id"] = [f"person-{i}" for i in range(len(df))]
    df.to_csv(tmp_path / "ids.csv", index=False)
    with pytest.raises(ConfigError) as e:
        load_data(DataConfig(csv=tmp_path / "ids.csv", target="income", impute="median", exclude=["married"]))
    _one_line(e, "ids.csv", "feature column 'id'", "identifier")

    train, test = census(200), census(50, seed=1)
    test["hours"] = test["hours"].astype(object)
    test.loc[0, "hours"] = "full-time"
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(ConfigError) as e:
        load_data(DataConfig(csv=tmp_path / "train.csv", test=tmp_path / "test.csv", target="income", impute="median", exclude=["married"]))
    _one_line(e, "test.csv", "feature column 'hours' is not numeric", "train.csv")


def test_impute_and_onehot_max_in_the_config(tmp_path):
    base = {"strategies": ["scratch"]}
    with pytest.raises(ConfigError, match="'impute' fills missing values of tabular features"):
        validate({**base, "tasks": {"a": {"data": {"builtin": "digits", "impute": "median"}}}})
    with pytest.raises(ConfigError, match="'onehot_max'"):
        validate({**base, "tasks": {"a": {"data": {"npz": "a.npz", "onehot_max": 4}}}})
    with pytest.raises(ConfigError, match="impute"):
        validate({**base, "tasks": {"a": {"data": {"csv": "a.csv", "target": "y", "impute": "mean"}}}})
    entries = tasks_from_columns("c.csv", ["a", "b"], impute="most_frequent", onehot_max=4)
    assert entries["a"]["data"]["impute"] == "most_frequent" and entries["b"]["data"]["onehot_max"] == 4


def test_impute_in_a_tabular_npz(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    x[1, 0] = np.nan
    x_test = np.array([[np.nan, 1.0], [2.0, np.nan]], np.float32)
    np.savez(tmp_path / "a.npz", x_train=x, y_train=np.arange(6) % 2, x_test=x_test, y_test=np.array([0, 1]))
    data = load_data(DataConfig(npz=Path(tmp_path / "a.npz"), impute="median"))
    assert data.table.indicators == ("0",) and data.x_train.shape == (6, 3) and data.input_shape == (3,)
    np.testing.assert_array_equal(data.x_train[:, 2], [0, 1, 0, 0, 0, 0])
    enc = fit_table(data.table, data.x_train)
    # Medians of the training rows: 6 of (0, 4, 6, 8, 10) and 6 of (1, 3, ..., 11); only
    # column 0 had a missing training value, so only it has an indicator.
    np.testing.assert_array_equal(enc.transform(data.x_test), [[6.0, 1.0, 1.0], [2.0, 6.0, 0.0]])
