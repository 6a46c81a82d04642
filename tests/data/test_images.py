"""Image files as a task: a class-per-subfolder tree or a CSV of paths, decoded once."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from polytask import ConfigError, Study
from polytask.config import DataConfig
from polytask.data.loaders import load_data, source_key
from polytask.study.store import ResultStore


def _tree(root, n=24, size=10, colour=False, seed=0):
    rng = np.random.default_rng(seed)
    for c, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            base = np.full((size, size), 40 + 150 * c, dtype=np.uint8) + rng.integers(0, 30, (size, size), dtype=np.uint8)
            img = Image.fromarray(np.stack([base, base, 255 - base], -1) if colour else base)
            img.save(root / name / f"{i:03d}.png")
    (root / "README.txt").write_text("not an image folder entry")
    return root


def test_a_class_folder_tree_is_read_with_sorted_class_names(tmp_path):
    data = load_data(DataConfig(images=_tree(tmp_path / "pets")))
    assert data.x_train.dtype == np.uint8 and data.x_train.shape[1:] == (10, 10)
    assert len(data.x_train) + len(data.x_test) == 48
    assert set(np.unique(data.y_train)) == {0, 1}  # cat, dog
    # cats are dark: the labels follow the folders
    assert data.x_train[data.y_train == 0].mean() < data.x_train[data.y_train == 1].mean()


def test_colour_images_get_three_channels_and_size_resizes(tmp_path):
    data = load_data(DataConfig(images=_tree(tmp_path / "pets", colour=True), size=6))
    assert data.x_train.shape[1:] == (3, 6, 6)


def test_a_csv_listing_and_a_test_folder(tmp_path):
    root = _tree(tmp_path / "train")
    test = _tree(tmp_path / "test", n=5, seed=1)
    rows = [f"{c}/{f.name},{c}" for c in ("cat", "dog") for f in sorted((root / c).iterdir())]
    (root / "list.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    data = load_data(DataConfig(images=root / "list.csv", target="label", test=test))
    assert len(data.x_train) == 48 and len(data.x_test) == 10
    assert list(np.unique(data.y_test)) == [0, 1]


def test_two_copies_of_a_tree_split_alike(tmp_path):
    a = _tree(tmp_path / "a")
    b = shutil.copytree(a, tmp_path / "elsewhere" / "b")
    da, db = load_data(DataConfig(images=a)), load_data(DataConfig(images=b))
    assert source_key(DataConfig(images=a)) == source_key(DataConfig(images=b))
    assert np.array_equal(da.x_test, db.x_test) and np.array_equal(da.y_train, db.y_train)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "is not a folder"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "has no class subfolders"),
    ],
)
def test_bad_sources_are_one_line(tmp_path, make, message):
    with pytest.raises(ConfigError, match=message):
        load_data(DataConfig(images=make(tmp_path)))


def test_files_of_different_sizes_need_size(tmp_path):
    root = _tree(tmp_path / "pets")
    Image.fromarray(np.zeros((12, 14), dtype=np.uint8)).save(root / "dog" / "big.png")
    with pytest.raises(ConfigError, match=r"is 10x10 pixels but .*big.png' is 14x12; set data.size"):
        load_data(DataConfig(images=root))
    assert load_data(DataConfig(images=root, size=8)).x_train.shape[1:] == (8, 8)


def test_an_unreadable_file_is_one_line(tmp_path):
    root = _tree(tmp_path / "pets")
    (root / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ConfigError, match=r"broken.png' is not an image Pillow can read"):
        load_data(DataConfig(images=root))


def test_a_study_on_image_folders(tmp_path):
    cfg = {
        "name": "pets",
        "seeds": 1,
        "fractions": [1.0],
        "tasks": {
            "pets": {"data": {"images": str(_tree(tmp_path / "pets"))}},
            "more": {"data": {"images": str(_tree(tmp_path / "more", seed=3))}, "role": "source"},
        },
        "model": {"backbone": "cnn", "cnn": {"channels": [4], "hidden": 8}},
        "strategies": ["scratch", "fine-tune"],
        "train": {"max_epochs": 2, "batch_size": 16, "patience": 2, "min_steps_per_epoch": 2},
    }
    Study(cfg).run(out=tmp_path / "out", progress=False)
    rows = ResultStore(tmp_path / "out" / "results.jsonl").rows()
    assert {r["strategy"] for r in rows} == {"scratch", "fine-tune"} and all(r["status"] == "ok" for r in rows)
