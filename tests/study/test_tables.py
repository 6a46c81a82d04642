"""Studies on tables with categorical code columns: the mlp embeds them (a backbone option,
the input shape stays a plain tuple), saved backbones keep them, tasks sharing a backbone
share them, and what a table changes is part of the fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FAST_TRAIN
from torch import nn

import polytask.study.models as study_models
from polytask import Study
from polytask.core.errors import ConfigError, PolytaskWarning
from polytask.data import TaskData
from polytask.data.tabular import embedding_dim
from polytask.insights.relate import rank_sources
from polytask.insights.relate.sources import _input_shape
from polytask.methods.architectures.multitask import count_params
from polytask.methods.backbones import create_backbone
from polytask.study.inputs import _same_inputs
from polytask.study.store import ResultStore

HIDDEN = 16


def table(n: int = 240, levels: int = 20, seed: int = 0, nan: bool = True) -> pd.DataFrame:
    """Two numeric columns (``x1`` with missing values when ``nan``), a ``city`` column of
    ``levels`` levels (more than 16: integer codes, embedded), labels ``y`` (binary) and ``z`` (3 classes)."""
    rng = np.random.default_rng(seed)
    codes = np.r_[np.arange(levels), rng.integers(0, levels, n - levels)]
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    y = (x1 + x2 + (codes % 3) + rng.normal(0, 0.3, n) > 1).astype(int)
    z = (x2 > 0).astype(int) + (codes % 2)
    if nan:
        x1[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({"x1": x1, "x2": x2, "city": [f"city-{c:02d}" for c in codes], "y": y, "z": z})


def write(folder: Path, name: str, frame: pd.DataFrame) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / name, index=False)
    return str(folder / name)


def config(csv: str, strategies: list[str], **changes) -> dict:
    cfg = {
        "name": "tables",
        "seeds": 1,
        "fractions": [1.0],
        "tasks_from_columns": [{"csv": csv, "targets": ["y", "z"], "impute": "median"}],
        "model": {"backbone": "mlp", "mlp": {"hidden": [HIDDEN]}},
        "strategies": strategies,
        "train": FAST_TRAIN,
    }
    return {**cfg, **changes}


def csv_task(csv: str, target: str = "y", **data) -> dict:
    exclude = [c for c in ("y", "z") if c != target]
    return {"data": {"csv": csv, "target": target, "exclude": exclude, **data}}


def one_line(e: pytest.ExceptionInfo, *fragments: str) -> str:
    message = str(e.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def test_the_runs_models_embed_the_code_columns(tmp_path, monkeypatch):
    study = Study(config(write(tmp_path, "t.csv", table()), ["scratch", "mtl"]))
    raw, _ = study.load()
    layout = raw["y"].table
    assert [c.name for c in layout.coded] == ["city"] and layout.embeddings == ((21, embedding_dim(20)),)
    width, ((levels, dim),) = layout.width, layout.embeddings
    shape = study.input_shape("y")
    assert shape == (width,) and type(shape) is tuple

    built: list[nn.Module] = []
    real = study_models.create_backbone

    def spy(name, input_shape, pretrained=False, **options):
        assert type(input_shape) is tuple  # shapes stay plain tuples; embeddings are an option
        net = real(name, input_shape, pretrained, **options)
        built.append(net)
        return net

    monkeypatch.setattr(study_models, "create_backbone", spy)
    study.run(out=tmp_path / "out", progress=False)
    assert built and all(net.embedding_sizes == ((levels, dim),) for net in built)
    assert all(sum(isinstance(m, nn.Embedding) for m in net.modules()) == 1 for net in built)
    # Every row's backbone: the first layer reads the other columns plus the embedding, and the embedding's table.
    expected = (width - 1 + dim) * HIDDEN + HIDDEN + levels * dim
    assert count_params(built[0]) == expected
    rows = ResultStore(tmp_path / "out" / "results.jsonl").rows()
    assert {(r["task"], r["strategy"]) for r in rows} == {(t, s) for t in ("y", "z") for s in ("scratch", "mtl")}
    assert all(r["status"] == "ok" and r["backbone_params"] == expected for r in rows)
    assert not [n for n in study.notes if "plain numbers" in n]


def test_a_saved_backbone_keeps_its_embeddings_for_run(tmp_path, recwarn):
    csv = write(tmp_path, "t.csv", table())
    first = Study(config(csv, ["scratch"], save_models=True))
    first.run(out=tmp_path / "first", progress=False)
    raw, _ = first.load()
    width, embeddings = raw["y"].table.width, raw["y"].table.embeddings
    saved = torch.load(tmp_path / "first" / "models" / "y" / "scratch" / "1" / "seed0.pt", weights_only=True)
    assert saved["backbone"] == "mlp" and saved["input_shape"] == [width]
    assert saved["options"] == {"hidden": [HIDDEN], "dropout": 0.1, "embeddings": [list(e) for e in embeddings]}

    spec = f"run:{tmp_path / 'first'}/y/scratch/seed0"
    net = create_backbone(spec, (width,), pretrained=True)
    assert net.embedding_sizes == embeddings
    assert net.state_dict().keys() == saved["state"].keys()
    assert all(torch.equal(net.state_dict()[k], v) for k, v in saved["state"].items())

    # A study of the same table starts fine-tune from it: same embeddings, no note.
    second = Study(config(csv, ["fine-tune"], model={"backbone": spec}))
    second.run(out=tmp_path / "second", progress=False)
    assert [r["status"] for r in ResultStore(tmp_path / "second" / "results.jsonl").rows()] == ["ok", "ok"]
    assert not [n for n in second.notes if "plain numbers" in n]

    # A table of the same width whose code column has other levels: one line, before any run.
    other = write(tmp_path / "other", "t.csv", table(levels=25))
    with pytest.raises(ConfigError) as e:
        Study(config(other, ["fine-tune"], model={"backbone": spec})).load()
    one_line(e, f"backbone '{spec}' embeds 1 code column(s) of 20 levels", "'y', 'z' have 1 of 25 levels")


def test_a_backbone_without_embeddings_reads_the_codes_as_numbers_and_says_so(tmp_path):
    csv = write(tmp_path, "t.csv", table())
    probe = Study(config(csv, ["scratch"]))
    width = probe.input_shape("y")[0]
    study = Study(config(csv, ["scratch"]), backbone=nn.Sequential(nn.Linear(width, 8), nn.ReLU()))
    with pytest.warns(PolytaskWarning, match="reads as plain numbers"):
        study.load()
    notes = [n for n in study.notes if "plain numbers" in n]
    assert len(notes) == 1 and "'y', 'z'" in notes[0] and "your backbone module" in notes[0] and "\n" not in notes[0]


def test_tasks_sharing_a_backbone_need_the_same_code_columns(tmp_path):
    a = write(tmp_path / "a", "t.csv", table(nan=False))
    b = write(tmp_path / "b", "t.csv", table(levels=25, nan=False, seed=1))
    numeric = table(nan=False, seed=2)
    numeric["city"] = np.random.default_rng(0).normal(size=len(numeric))  # the same width, no code column
    c = write(tmp_path / "c", "t.csv", numeric)
    base = {"seeds": 1, "fractions": [1.0], "model": {"backbone": "mlp", "mlp": {"hidden": [HIDDEN]}}, "train": FAST_TRAIN}
    with pytest.raises(ConfigError) as e:
        Study({**base, "tasks": {"a": csv_task(a), "b": csv_task(b)}, "strategies": ["scratch", "mtl"]}).load()
    one_line(e, "tasks 'a', 'b' share one backbone but embed different categorical code columns", "'a': city (20 levels); 'b': city (25 levels)")
    with pytest.raises(ConfigError) as e:
        Study({**base, "tasks": {"a": csv_task(a), "c": csv_task(c)}, "strategies": ["scratch", "fine-tune"]}).load()
    one_line(e, "tasks 'a', 'c' share one backbone", "'c': none")
    # scratch alone: one backbone per input shape, so tasks of one shape need the same embeddings...
    with pytest.raises(ConfigError) as e:
        Study({**base, "tasks": {"a": csv_task(a), "b": csv_task(b)}, "strategies": ["scratch"]}).load()
    one_line(e, "tasks 'a', 'b' have inputs of one shape, (3,)", "'b': city (25 levels)")
    # ...and tasks of other shapes each get their own.
    d = write(tmp_path / "d", "t.csv", table(levels=30, nan=False).drop(columns=["x2"]))
    study = Study({**base, "tasks": {"a": csv_task(a), "d": csv_task(d)}, "strategies": ["scratch"]})
    assert study.input_shape("a") == (3,) and study.input_shape("d") == (2,)
    assert study.new_backbone((3,)).embedding_sizes == ((21, embedding_dim(20)),)
    assert study.new_backbone((2,)).embedding_sizes == ((31, embedding_dim(30)),)


def test_label_columns_of_one_csv_with_missing_features_share_their_rows(tmp_path):
    study = Study(config(write(tmp_path, "t.csv", table()), ["scratch"]))
    raw, _ = study.load()
    assert np.isnan(raw["y"].x_train).any()
    assert study._split_keys == {"y": "inputs:y", "z": "inputs:y"}
    py, pz = study.prepare("y", 0, 0.5), study.prepare("z", 0, 0.5)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(py, split).x, getattr(pz, split).x)

    x = np.array([[1.0, np.nan], [np.nan, 2.0]], np.float32)
    y = np.array([0, 1])
    assert _same_inputs(TaskData(x, y, x[:1], y[:1]), TaskData(x.copy(), y, x[:1].copy(), y[:1]))
    other = x.copy()
    other[0, 0] = 3.0
    assert not _same_inputs(TaskData(x, y, x, y), TaskData(other, y, x, y))
    text = np.array(["a b", "c"], dtype=object)
    assert _same_inputs(TaskData(text, y, text, y), TaskData(text.copy(), y, text.copy(), y))
    assert not _same_inputs(TaskData(text, y, text, y), TaskData(text[::-1].copy(), y, text, y))


def test_how_missing_values_are_imputed_is_part_of_the_fingerprint(tmp_path):
    csv = write(tmp_path, "t.csv", table())
    median, most = (
        Study(config(csv, ["scratch"], tasks_from_columns=[{"csv": csv, "targets": ["y", "z"], "impute": how}])) for how in ("median", "most_frequent")
    )
    assert median.fingerprint != most.fingerprint
    assert median._fingerprint_parts["tasks"]["y"]["data"] == most._fingerprint_parts["tasks"]["y"]["data"]  # the same bytes
    assert median._fingerprint_parts["tasks"]["y"]["impute"] == "median"
    assert most._fingerprint_parts["tasks"]["z"]["impute"] == "most_frequent"
    # Nothing imputed, no key: fingerprints of studies without impute stay what they were.
    clean = write(tmp_path / "clean", "t.csv", table(nan=False).drop(columns=["city"]))
    for impute in ({}, {"impute": "median"}):
        study = Study(config(clean, ["scratch"], tasks_from_columns=[{"csv": clean, "targets": ["y", "z"], **impute}]))
        assert study.load()[0]["y"].table is None and study.fingerprint
        assert all("impute" not in part for part in study._fingerprint_parts["tasks"].values())
    coded = write(tmp_path / "coded", "t.csv", table(nan=False))
    study = Study({"tasks": {"y": csv_task(coded)}, "strategies": ["scratch"]})
    assert study.load()[0]["y"].table is not None and study.fingerprint
    assert "impute" not in study._fingerprint_parts["tasks"]["y"]


def test_separate_unlabeled_inputs_of_a_table_are_refused_in_one_line(tmp_path):
    csv = write(tmp_path, "t.csv", table())
    unlabeled = write(tmp_path / "u", "u.csv", table(seed=3))
    unlabeled_data = {"csv": unlabeled, "target": "y", "exclude": ["z"], "impute": "median"}
    tasks = {"y": {**csv_task(csv, impute="median"), "unlabeled": unlabeled_data}, "s": {**csv_task(csv, impute="median"), "role": "source"}}
    with pytest.raises(ConfigError) as e:
        Study({"tasks": tasks, "strategies": ["domain-adapt:dan"], "train": FAST_TRAIN}).load()
    one_line(e, "field 'tasks.y.unlabeled'", "u.csv has categorical columns or missing values to impute", "unlabeled: true")
    # A numeric unlabeled file for a task with a table layout: the same refusal.
    plain = write(tmp_path / "p", "p.csv", table(nan=False).assign(city=0.0))
    tasks["y"]["unlabeled"] = {"csv": plain, "target": "y", "exclude": ["z"]}
    with pytest.raises(ConfigError) as e:
        Study({"tasks": tasks, "strategies": ["domain-adapt:dan"], "train": FAST_TRAIN}).load()
    one_line(e, "field 'tasks.y.unlabeled'", "task 'y' has categorical columns")


def test_relate_builds_the_same_backbones_as_the_study(tmp_path):
    study = Study(config(write(tmp_path, "t.csv", table()), ["scratch", "fine-tune"]))
    raw, _ = study.load()
    shape = _input_shape(study, "y")
    assert shape == study.input_shape("y") == (raw["y"].table.width,) and type(shape) is tuple
    result = rank_sources(study, tmp_path / "out", epochs=1, max_samples=80)
    [candidate] = result["targets"]["y"]["candidates"]
    assert candidate["name"] == "z" and candidate["kind"] == "task"
