"""Tasks from torch Datasets and mapping rows (as a Hugging Face split gives them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, TensorDataset

from polytask import ConfigError, Study
from polytask.data.datasets import task_from_datasets
from polytask.data.ondisk import is_on_disk
from polytask.study.store import ResultStore


def test_a_tensor_dataset_becomes_arrays_and_runs_in_a_study(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g)
    y = (x[:, 0] > 0).long()
    data = task_from_datasets(TensorDataset(x[:150], y[:150]), TensorDataset(x[150:], y[150:]))
    assert data.x_train.shape == (150, 6) and np.array_equal(data.y_test, y[150:].numpy())
    cfg = {
        "name": "ds",
        "seeds": 1,
        "fractions": [1.0],
        "tasks": {"t": {}},
        "strategies": ["scratch"],
        "train": {"max_epochs": 2, "batch_size": 32, "patience": 2, "min_steps_per_epoch": 2},
    }
    Study(cfg, data={"t": data}).run(out=tmp_path / "out", progress=False)
    (row,) = ResultStore(tmp_path / "out" / "results.jsonl").rows()
    assert row["status"] == "ok" and row["test"] > 0.7


def test_mapping_rows_with_pil_images_and_named_columns():
    rows = [{"image": Image.fromarray(np.full((5, 4, 3), i, dtype=np.uint8)), "label": i % 2, "id": i} for i in range(10)]
    data = task_from_datasets(rows[:8], rows[8:], x="image", y="label")
    assert data.x_train.shape == (8, 3, 5, 4) and list(data.y_test) == [0, 1]


@pytest.mark.parametrize(
    ("train", "kw", "message"),
    [
        ([{"a": 1, "b": 2}], {}, r"row 0 is a mapping with columns \['a', 'b'\]; name its input and label columns"),
        ([3, 4], {}, "row 0 is a int; expected an"),
        ([(np.zeros(3), 0), (np.zeros(4), 1)], {}, "inputs have different shapes"),
        ([], {}, "train dataset: no rows"),
    ],
)
@pytest.mark.parametrize("store", [False, True])
def test_rows_it_cannot_read_are_one_line(tmp_path, train, kw, message, store):
    with pytest.raises(ConfigError, match=message):
        task_from_datasets(train, [(np.zeros(3), 0)], **kw, **({"store": tmp_path / "ds"} if store else {}))


class _Images(Dataset):
    """A map-style dataset of grey images, as torchvision gives them (tensor, int)."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.randint(0, 3, (n,), generator=g)
        self.x = (torch.rand(n, 1, 8, 8, generator=g) * 80 + 60 * self.y.view(-1, 1, 1, 1)).to(torch.uint8)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])


class _Stream(IterableDataset):
    def __init__(self, ds: Dataset):
        self.ds = ds

    def __iter__(self):
        return (self.ds[i] for i in range(len(self.ds)))


def test_a_stored_dataset_is_mapped_and_gives_the_numbers_of_one_in_memory(tmp_path):
    train, test = _Images(600, 0), _Images(150, 1)
    held = task_from_datasets(train, test)
    stored = task_from_datasets(train, _Stream(test), store=tmp_path / "ds", workers=2)
    assert is_on_disk(stored.x_train) and is_on_disk(stored.x_test) and not is_on_disk(held.x_train)
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(held, k), getattr(stored, k)) and getattr(held, k).dtype == getattr(stored, k).dtype
    cfg = {
        "name": "ds",
        "seeds": 2,
        "fractions": [0.5, 1.0],
        "tasks": {"t": {}},
        "model": {"backbone": "cnn", "cnn": {"channels": [4], "hidden": 8}},
        "strategies": ["scratch"],
        "train": {"max_epochs": 2, "batch_size": 32, "patience": 2, "min_steps_per_epoch": 2},
    }
    numbers = []
    for name, data in (("memory", held), ("disk", stored)):
        Study(cfg, data={"t": data}).run_grid(tmp_path / name, progress=False)
        rows = ResultStore(tmp_path / name / "results.jsonl").rows()
        assert all(r["status"] == "ok" for r in rows)
        numbers.append({r["run_id"]: (r["test"], r["val"], r["epochs"]) for r in rows})
    assert numbers[0] == numbers[1]
    # Another call replaces the folder's arrays; arrays opened before keep reading theirs.
    again = task_from_datasets(_Images(50, 2), _Images(20, 3), store=tmp_path / "ds")
    assert len(again.x_train) == 50 and np.array_equal(stored.x_train, held.x_train)
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["x_test.npy", "x_train.npy"]


def test_stored_texts_stay_in_memory(tmp_path):
    rows = [("a fine film" if i % 2 else "a dull plot", i % 2) for i in range(12)]
    data = task_from_datasets(rows[:8], rows[8:], store=tmp_path / "ds")
    assert data.x_train.dtype == object and list(data.x_test) == [t for t, _ in rows[8:]]
