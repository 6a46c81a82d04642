"""The resume fingerprint hashes content: the data, the user's module and the settings that
change numbers, never paths; the study folder keeps it, so reports need no data."""

from __future__ import annotations

import json
import shutil

import numpy as np
import yaml
from conftest import FAST_TRAIN, tiny_config
from torch import nn

from polytask import Study
from polytask.data import TaskData, make_task_family, write_npz_family
from polytask.finalize import finalize
from polytask.study.store import ResultStore, load_predictions


def _npz_project(folder, seed=0):
    family = make_task_family(n_tasks=2, n_target=40, n_source=120, n_test=60, n_features=5, seed=seed)
    paths = write_npz_family(family, folder / "data")
    cfg = {
        "name": "fp",
        "seeds": 1,
        "fractions": [1.0],
        "tasks": {n: {"data": {"npz": str(p.relative_to(folder))}, "role": "target" if n == "target" else "source"} for n, p in paths.items()},
        "model": {"backbone": "mlp", "mlp": {"hidden": [8]}},
        "strategies": ["scratch", "mtl"],
        "train": FAST_TRAIN,
    }
    (folder / "study.yaml").write_text(yaml.safe_dump(cfg))
    return folder / "study.yaml", paths


def _rows(out):
    return ResultStore(out / "results.jsonl").rows()


def test_changed_data_at_the_same_path_is_rerun(tmp_path):
    config, paths = _npz_project(tmp_path / "project")
    out = tmp_path / "out"
    Study.from_yaml(config).run(out=out, progress=False)
    assert len(_rows(out)) == 2
    # Same file name, other content.
    other = make_task_family(n_tasks=2, n_target=40, n_source=120, n_test=60, n_features=5, seed=7)
    write_npz_family(other, paths["target"].parent)
    summary = Study.from_yaml(config).run(out=out, progress=False)
    rows = _rows(out)
    assert len(rows) == 4 and rows[0]["fingerprint"] != rows[2]["fingerprint"]
    assert summary["runs"]["ok"] == 2


def test_a_moved_project_keeps_its_finished_runs(tmp_path):
    config, _ = _npz_project(tmp_path / "project")
    out = tmp_path / "out"
    Study.from_yaml(config).run(out=out, progress=False)
    shutil.move(tmp_path / "project", tmp_path / "moved")
    Study.from_yaml(tmp_path / "moved" / "study.yaml").run(out=out, progress=False)
    assert len(_rows(out)) == 2


def test_changed_in_memory_arrays_are_rerun(tiny_family, tmp_path):
    cfg = tiny_config(tiny_family, strategies=["scratch"], fractions=[1.0], seeds=1)
    Study(cfg, data=tiny_family).run(out=tmp_path, progress=False)
    d = tiny_family["target"]
    changed = {**tiny_family, "target": TaskData(d.x_train + 1.0, d.y_train, d.x_test, d.y_test)}
    Study(cfg, data=changed).run(out=tmp_path, progress=False)
    assert len(_rows(tmp_path)) == 2
    Study(cfg, data=changed).run(out=tmp_path, progress=False)  # the same content again: nothing to do
    assert len(_rows(tmp_path)) == 2


def test_a_changed_user_module_is_rerun(tiny_family, tmp_path):
    cfg = tiny_config(tiny_family, strategies=["scratch"], fractions=[1.0], seeds=1)
    Study(cfg, data=tiny_family, backbone=nn.Sequential(nn.Linear(6, 8), nn.ReLU())).run(out=tmp_path, progress=False)
    Study(cfg, data=tiny_family, backbone=nn.Sequential(nn.Linear(6, 8), nn.ReLU())).run(out=tmp_path, progress=False)
    assert len(_rows(tmp_path)) == 1
    Study(cfg, data=tiny_family, backbone=nn.Sequential(nn.Linear(6, 16), nn.ReLU())).run(out=tmp_path, progress=False)
    assert len(_rows(tmp_path)) == 2


def test_settings_that_do_not_change_numbers_keep_finished_runs(tiny_family, tmp_path):
    cfg = tiny_config(tiny_family, strategies=["scratch"], fractions=[1.0], seeds=1)
    Study(cfg, data=tiny_family).run(out=tmp_path, progress=False)
    for change in ({"name": "renamed"}, {"save_models": True}, {"seeds": 1, "strategies": ["scratch"]}):
        Study({**cfg, **change}, data=tiny_family).run(out=tmp_path, progress=False)
    Study(cfg, data=tiny_family).run(out=tmp_path, workers=2, progress=False)
    assert len(_rows(tmp_path)) == 1
    Study({**cfg, "train": {**cfg["train"], "lr": 0.0123}}, data=tiny_family).run(out=tmp_path, progress=False)
    assert len(_rows(tmp_path)) == 2


def test_report_works_without_the_data_and_rows_carry_versions(tmp_path):
    config, _ = _npz_project(tmp_path / "project")
    out = tmp_path / "out"
    first = Study.from_yaml(config).run(out=out, progress=False)
    shutil.rmtree(tmp_path / "project")
    again = finalize(out)
    assert [c["mean"] for c in again["cells"]] == [c["mean"] for c in first["cells"]]
    rows = _rows(out)
    assert all(set(r["versions"]) >= {"polytask", "torch"} for r in rows)
    assert json.loads((out / "study.json").read_text())["fingerprint"] == rows[0]["fingerprint"]


def test_a_study_mixing_versions_warns_and_keeps_the_rows(tmp_path):
    config, _ = _npz_project(tmp_path / "project")
    out = tmp_path / "out"
    Study.from_yaml(config).run(out=out, progress=False)
    rows = _rows(out)
    rows[0]["versions"] = {**rows[0]["versions"], "torch": "0.0.1"}
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = finalize(out)
    assert summary["runs"]["ok"] == 2
    assert any("torch" in w and "0.0.1" in w for w in summary["warnings"])
    assert np.isfinite([c["mean"] for c in summary["cells"]]).all()


def _images(seed=0):
    rng = np.random.default_rng(seed)

    def task():
        x = rng.normal(size=(60, 8, 8)).astype(np.float32)
        return TaskData(x[:40], rng.integers(0, 3, 40), x[40:], rng.integers(0, 3, 20))

    return {"target": task(), "source": task()}


def test_a_backbone_named_in_python_is_part_of_the_fingerprint():
    data = _images()
    cfg = {**tiny_config(data, strategies=["scratch"], fractions=[1.0], seeds=1), "model": {"backbone": "cnn", "cnn": {"channels": [4], "hidden": 8}}}
    prints = {b: Study(cfg, data=data, backbone=b).fingerprint for b in (None, "cnn", "mlp")}
    assert prints[None] == prints["cnn"] != prints["mlp"]


def test_task_order_is_part_of_the_fingerprint():
    # Static task weights and tuned weights are matched to tasks by position, and the order
    # sets the heads' initialization: another order is another study.
    data = make_task_family(n_tasks=2, n_target=40, n_source=120, n_test=60, n_features=5, seed=0)
    cfg = tiny_config(data, strategies=["scratch"], fractions=[1.0], seeds=1)
    swapped = {**cfg, "tasks": dict(reversed(list(cfg["tasks"].items())))}
    assert Study(cfg, data=data).fingerprint != Study(swapped, data=data).fingerprint


def test_kept_predictions_belong_to_the_rows_fingerprint(tiny_family, tmp_path):
    # Run, change a setting and run again (same cells, other numbers), then go back: the first
    # rows are reused, and so must be their own test predictions, not the second study's.
    cfg = tiny_config(tiny_family, strategies=["scratch"], fractions=[1.0], seeds=1)
    Study(cfg, data=tiny_family).run(out=tmp_path, progress=False)
    (first,) = _rows(tmp_path)
    kept = load_predictions(tmp_path, first)[1].copy()
    Study({**cfg, "train": {**cfg["train"], "lr": 0.0123}}, data=tiny_family).run(out=tmp_path, progress=False)
    second = _rows(tmp_path)[1]
    assert not np.array_equal(load_predictions(tmp_path, second)[1], kept)
    Study(cfg, data=tiny_family).run(out=tmp_path, progress=False)
    assert len(_rows(tmp_path)) == 2
    np.testing.assert_array_equal(load_predictions(tmp_path, first)[1], kept)
