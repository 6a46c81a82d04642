"""Task sampling: probabilities, per-step rows and loss scales, and the engine's use of them."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from polytask import Study
from polytask.config import TrainConfig
from polytask.core.errors import ConfigError
from polytask.core.targets import task_loss
from polytask.core.tasks import infer_task
from polytask.data import make_task_family, prepare_task
from polytask.methods.architectures import MultiTaskModel
from polytask.methods.backbones import create_backbone
from polytask.study.resolve import validate
from polytask.study.store import ResultStore
from polytask.training.engine import fit
from polytask.training.sampling import batch_plan, task_probabilities

SIZES = {"small": 100, "large": 900}


def test_probabilities_by_hand():
    assert task_probabilities(SIZES, "uniform") == pytest.approx({"small": 0.5, "large": 0.5})
    assert task_probabilities(SIZES, "proportional") == pytest.approx({"small": 0.1, "large": 0.9})
    # n^(1/2): 10 and 30 -> 0.25 and 0.75.
    assert task_probabilities(SIZES, "temperature", 2.0) == pytest.approx({"small": 0.25, "large": 0.75})
    # T = 1 is proportional; a huge T is uniform.
    assert task_probabilities(SIZES, "temperature", 1.0) == pytest.approx(task_probabilities(SIZES, "proportional"))
    assert task_probabilities(SIZES, "temperature", 1e9) == pytest.approx({"small": 0.5, "large": 0.5})
    # Sizes far beyond float range in n^(1/T) still give finite probabilities.
    p = task_probabilities({"a": 10**12, "b": 1}, "temperature", 0.01)
    assert p["a"] == pytest.approx(1.0) and p["b"] >= 0.0


def test_bad_sampling_arguments():
    with pytest.raises(ValueError, match="sampling must be one of"):
        task_probabilities(SIZES, "square")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        task_probabilities(SIZES, "temperature", 0.0)
    with pytest.raises(ValueError, match="needs training rows"):
        task_probabilities({"a": 0, "b": 3}, "proportional")


def test_batch_plan_rows_and_scales():
    rows, scale = batch_plan(SIZES, {"small": 0.1, "large": 0.9}, batch_size=50)
    # 100 rows per step in all: 10 and 90; losses scaled by T * p = 0.2 and 1.8.
    assert rows == {"small": 10, "large": 90}
    assert scale == pytest.approx({"small": 0.2, "large": 1.8})
    # At least two rows (BatchNorm), at most the task's size.
    rows, _ = batch_plan({"tiny": 3, "big": 10_000}, {"tiny": 0.0001, "big": 0.9999}, batch_size=64)
    assert rows == {"tiny": 2, "big": 128}
    rows, _ = batch_plan({"tiny": 3, "big": 10}, {"tiny": 0.5, "big": 0.5}, batch_size=64)
    assert rows == {"tiny": 3, "big": 10}


def _two_tasks(n_target=40, n_source=360):
    fam = make_task_family(n_tasks=2, n_target=n_target, n_source=n_source, seed=0)
    data = {n: prepare_task(d, infer_task(n, d.y_train), seed=0) for n, d in fam.items()}
    torch.manual_seed(0)
    model = MultiTaskModel(create_backbone("mlp", data["target"].input_shape, hidden=[8]), [d.task for d in data.values()])
    return data, model


def _spy(model):
    seen: dict[str, list[int]] = {}
    orig = model.forward

    def recording(x, task):
        if model.training and torch.is_grad_enabled():
            seen.setdefault(task, []).append(len(x))
        return orig(x, task)

    model.forward = recording
    return seen


def test_engine_draws_rows_in_the_sampled_proportions():
    data, model = _two_tasks()
    sizes = {n: len(d.train) for n, d in data.items()}
    probs = task_probabilities(sizes, "proportional")
    seen = _spy(model)
    train = TrainConfig(max_epochs=1, batch_size=16, patience=1, min_steps_per_epoch=1)
    fit(model, data, train, seed=0, sampling=probs)
    rows, _ = batch_plan(sizes, probs, 16)
    # Every step takes each task's planned rows (the last batch of a pass may be shorter),
    # and one epoch passes over the data about once.
    for n in data:
        assert max(seen[n]) == rows[n]
    steps = len(seen["target"])
    assert steps == max(-(-sizes[n] // rows[n]) for n in data)
    assert sum(seen["source1"]) == pytest.approx(sizes["source1"], rel=0.15)


def test_sampling_scales_each_task_loss():
    data, model = _two_tasks()
    probs = {"target": 0.2, "source1": 0.8}
    # Learning rate 0 (bypassing validation) keeps the weights fixed, so the losses can be replayed.
    train = TrainConfig(max_epochs=1, batch_size=16, patience=1, min_steps_per_epoch=1).model_copy(update={"lr": 0.0})
    scaled = fit(model, data, train, seed=0, sampling=probs).history[0]["train_loss"]
    # Same rows again (same seed, same plan), losses summed without the scales.
    rows, scale = batch_plan({n: len(d.train) for n, d in data.items()}, probs, 16)
    gen = torch.Generator().manual_seed(0)
    from polytask.training.engine import _batches

    torch.manual_seed(0)
    streams = {n: _batches(len(data[n].train), rows[n], gen) for n in data}
    steps = max(-(-len(data[n].train) // rows[n]) for n in data)
    total = 0.0
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            for n in data:
                i = next(streams[n])
                total += scale[n] * task_loss(data[n].task, model(data[n].train.x[i], n), data[n].train.y[i]).item()
    assert scaled == pytest.approx(total / steps, rel=1e-5)


def test_sampling_in_a_study_and_config_errors(tiny_family, tmp_path):
    cfg = tiny_config(tiny_family, seeds=1, fractions=[0.5], strategies=["mtl"], mtl={"sampling": "temperature", "temperature": 3.0})
    Study(cfg, data=tiny_family).run(out=tmp_path, progress=False)
    assert {r["status"] for r in ResultStore(tmp_path / "results.jsonl").rows()} == {"ok"}
    with pytest.raises(ConfigError, match="mtl.sampling"):
        validate({**cfg, "mtl": {"sampling": "sqrt"}})
    with pytest.raises(ConfigError, match="mtl.temperature"):
        validate({**cfg, "mtl": {"sampling": "temperature", "temperature": 0}})
