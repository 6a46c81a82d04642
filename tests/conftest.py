"""Shared fixtures: tiny tabular task families and a fast training config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polytask.data import TaskData, make_task_family

# Tests run two processes on two cores; one thread each avoids oversubscription.
torch.set_num_threads(1)

FAST_TRAIN = {"max_epochs": 3, "batch_size": 32, "lr": 0.005, "patience": 2, "min_steps_per_epoch": 2}


@pytest.fixture
def tiny_family() -> dict[str, TaskData]:
    """Three small related tabular tasks (fast to train)."""
    return make_task_family(n_tasks=3, n_target=60, n_source=200, n_test=100, n_features=6, seed=0)


def shared_inputs_family(n_train: int = 160, n_test: int = 80, seed: int = 0) -> dict[str, TaskData]:
    """Two tasks on the same rows (one dataset, two label columns): ``target`` and ``aux``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_train + n_test, 6)).astype(np.float32)
    h = np.tanh(x @ rng.normal(size=(6, 3)))
    y_target = (h @ rng.normal(size=(3, 3))).argmax(1)
    y_aux = (h @ rng.normal(size=3) > 0).astype(np.int64) * 2 + (x[:, 0] > 0)
    return {name: TaskData(x[:n_train], y[:n_train], x[n_train:], y[n_train:]) for name, y in (("target", y_target), ("aux", y_aux))}


@pytest.fixture
def shared_family() -> dict[str, TaskData]:
    return shared_inputs_family()


def tiny_config(tasks, **overrides) -> dict:
    """A study config over in-memory tasks: ``target`` is the target, the rest sources."""
    cfg = {
        "name": "tiny",
        "seeds": 2,
        "fractions": [0.5, 1.0],
        "tasks": {n: {"role": "target" if n == "target" else "source"} for n in tasks},
        "model": {"backbone": "mlp", "mlp": {"hidden": [16]}},
        "strategies": ["scratch", "feature-extraction", "fine-tune", "mtl"],
        "train": FAST_TRAIN,
    }
    cfg.update(overrides)
    return cfg


def regression_data(n: int = 120, d: int = 4, seed: int = 0) -> TaskData:
    """A linear regression task with noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + 60, d)).astype(np.float32)
    y = x @ rng.normal(size=d) * 3 + 10 + rng.normal(scale=0.1, size=len(x))
    return TaskData(x[:n], y[:n], x[n:], y[n:])


# A rotated-blobs source/target pair for domain adaptation (strategies and preflight tests).
DA_TRAIN = {"max_epochs": 2, "batch_size": 32, "lr": 0.005, "patience": 5, "min_steps_per_epoch": 3}


def blobs(rng: np.random.Generator, n: int, angle: float, noise: float, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``k`` Gaussian classes on a circle, rotated by ``angle`` degrees, plus two noise columns.

    Per-task standardization removes a per-column shift or scale, not a rotation, so a
    rotated target is a domain shift the study's own preprocessing leaves in place.
    """
    y = rng.integers(0, k, n)
    theta = 2 * np.pi * y / k + np.deg2rad(angle)
    x = 2.5 * np.stack([np.cos(theta), np.sin(theta)], 1) + rng.normal(scale=noise, size=(n, 2))
    return np.concatenate([x, rng.normal(size=(n, 2))], 1).astype(np.float32), y


def shifted_pair(seed: int = 0, angle: float = 50.0, noise: float = 0.5, n_source: int = 600, n_target: int = 400, val: bool = False) -> dict[str, TaskData]:
    """A labelled source and a rotated target of the same three classes."""
    rng = np.random.default_rng(seed)
    xs, ys = blobs(rng, n_source, 0.0, noise)
    xs_test, ys_test = blobs(rng, 200, 0.0, noise)
    xt, yt = blobs(rng, n_target, angle, noise)
    xt_test, yt_test = blobs(rng, 400, angle, noise)
    extra = dict(zip(("x_val", "y_val"), blobs(rng, 100, angle, noise))) if val else {}
    return {"source": TaskData(xs, ys, xs_test, ys_test), "target": TaskData(xt, yt, xt_test, yt_test, **extra)}


def da_config(strategies: list[str], unlabeled=True, train=DA_TRAIN, **overrides) -> dict:
    cfg = {
        "name": "da",
        "seeds": 1,
        "tasks": {"target": {"unlabeled": unlabeled}, "source": {"role": "source"}},
        "model": {"backbone": "mlp", "mlp": {"hidden": [16], "dropout": 0.0}},
        "strategies": strategies,
        "train": train,
    }
    cfg.update(overrides)
    return cfg
