"""Tasks from torch Datasets and mapping rows (as a Hugging Face split gives them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from polytask import ConfigError, Study
from polytask.data.datasets import task_from_datasets
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
def test_rows_it_cannot_read_are_one_line(train, kw, message):
    with pytest.raises(ConfigError, match=message):
        task_from_datasets(train, [(np.zeros(3), 0)], **kw)
