"""Inputs read from disk batch by batch give the numbers inputs held in memory give."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from polytask import Study
from polytask.config import DataConfig
from polytask.core.tasks import infer_task
from polytask.data.loaders import load_data
from polytask.data.ondisk import ArrayFolder, is_on_disk
from polytask.data.prepare import model_inputs, prepare_task
from polytask.data.rows import StoredRows, same_inputs
from polytask.study.store import ResultStore


def _tree(root, n=30, size=9, seed=0, classes=("a", "b", "c")):
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = np.clip(rng.normal(60 + 60 * c, 40, (size, size)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{i:03d}.png")
    return root


def _config(tmp_path, image_size=None):
    return {
        "name": "stream",
        "seeds": 2,
        "fractions": [0.5, 1.0],
        "tasks": {
            "pets": {"data": {"images": str(_tree(tmp_path / "pets"))}},
            "more": {"data": {"images": str(_tree(tmp_path / "more", seed=3))}, "role": "source"},
        },
        "model": {"backbone": "cnn", "cnn": {"channels": [4], "hidden": 8}, "image_size": image_size},
        "strategies": ["scratch", "fine-tune", "feature-extraction", "mtl"],
        "train": {"max_epochs": 3, "batch_size": 16, "patience": 3, "min_steps_per_epoch": 2},
    }


def _numbers(out):
    rows = ResultStore(out / "results.jsonl").rows()
    assert rows and all(r["status"] == "ok" for r in rows), [r.get("error") for r in rows]
    return {r["run_id"]: (r["test"], r["val"], r["epochs"]) for r in rows}


@pytest.mark.parametrize("image_size", [None, 12])
def test_a_study_reading_its_images_from_disk_gives_the_numbers_of_one_holding_them(tmp_path, image_size):
    cfg = _config(tmp_path, image_size)
    on_disk = Study(cfg)
    on_disk.run_grid(tmp_path / "disk", progress=False)
    raw, _ = on_disk.load()
    assert is_on_disk(raw["pets"].x_train)  # decoded into the study folder, mapped
    assert on_disk.model_inputs("pets").stored
    in_memory = {n: load_data(DataConfig(images=cfg["tasks"][n]["data"]["images"])) for n in cfg["tasks"]}
    assert not is_on_disk(in_memory["pets"].x_train)
    Study(cfg, data=in_memory).run_grid(tmp_path / "memory", progress=False)
    assert _numbers(tmp_path / "disk") == _numbers(tmp_path / "memory")


def test_stored_rows_read_the_tensors_of_the_in_memory_path(tmp_path):
    data = load_data(DataConfig(images=_tree(tmp_path / "pets")), store=tmp_path / "store")
    task = infer_task("pets", data.y_train)
    for size in (None, 12):
        stored = model_inputs(data, size, folder=ArrayFolder(tmp_path / "store", f"inputs-{size}"))
        held = model_inputs(data, size)
        for seed, fraction in ((0, 1.0), (1, 0.3)):
            a = prepare_task(data, task, seed, fraction, size, inputs=stored)
            b = prepare_task(data, task, seed, fraction, size, inputs=held)
            for split in ("train", "val", "test"):
                x, ref = getattr(a, split).x, getattr(b, split).x
                assert isinstance(x, StoredRows) and x.shape == ref.shape
                assert torch.equal(x.tensor(), ref)
                pick = torch.tensor([3, 0, len(x) - 1])
                assert torch.equal(x[pick], ref[pick]) and torch.equal(x[2:5], ref[2:5])
                assert torch.equal(torch.cat(list(x.split(7))), ref)
            assert same_inputs(a.train.x, prepare_task(data, task, seed, fraction, size, inputs=stored).train.x)
            assert not same_inputs(a.train.x, a.val.x)
