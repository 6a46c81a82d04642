"""A transfer source learned without labels (``sources: {ssl: {pretrain: ...}}``): it learns
from the target's own training inputs and never from a validation or test row, is trained
once per (target, seed), is part of the fingerprint, and its own data is checked like any."""

from __future__ import annotations

import numpy as np
import pytest

from polytask.api import Study
from polytask.core.errors import ConfigError
from polytask.study import runner
from polytask.study.estimate import dry_run
from polytask.study.plan import RunSpec


def config(pretrain: str = "autoencoder", **source) -> dict:
    return {
        "name": "ssl",
        "seeds": 2,
        "fractions": [0.1, 1.0],
        "tasks": {"digits": {"data": {"builtin": "digits"}}},
        "model": {"backbone": "mlp", "mlp": {"hidden": [32], "dropout": 0.0}},
        "sources": {"ssl": {"pretrain": pretrain, "max_epochs": 2, **source}},
        "strategies": ["scratch", "fine-tune:ssl", "feature-extraction:ssl"],
        "train": {"max_epochs": 2, "batch_size": 64},
    }


def rows(x) -> set[bytes]:
    return {r.tobytes() for r in np.asarray(x.reshape(len(x), -1), dtype=np.float32)}


@pytest.mark.parametrize("seed", [0, 1])
def test_it_learns_from_every_training_input_of_the_seed_and_no_validation_or_test_row(tmp_path, monkeypatch, seed):
    seen = []
    real = runner.pretrain_ssl

    def spy(ctx, source, train_x, val_x, augment=None):
        seen.append((train_x.clone(), val_x.clone()))
        return real(ctx, source, train_x, val_x, augment)

    monkeypatch.setattr(runner, "pretrain_ssl", spy)
    study = Study(config())
    study.load()
    study.execute(tmp_path, RunSpec("digits", "fine-tune:ssl", 0.1, seed))
    study.execute(tmp_path, RunSpec("digits", "feature-extraction:ssl", 1.0, seed))
    assert len(seen) == 1  # once per (target, seed): every fraction and strategy reads the cache
    train_x, val_x = seen[0]
    used = rows(train_x) | rows(val_x)
    full = study.prepare("digits", seed, 1.0)
    assert used == rows(full.train.x)  # all training inputs, labels unused whatever the fraction
    for fraction in (0.1, 1.0):
        run = study.prepare("digits", seed, fraction)
        assert not used & rows(run.val.x) and not used & rows(run.test.x)
    assert not rows(train_x) & rows(val_x)
    assert (tmp_path / "pretrained-ssl" / "ssl" / "digits" / f"seed{seed}.pt").is_file()


def test_the_objective_and_its_settings_are_in_the_fingerprint():
    a, b, c = Study(config("autoencoder")), Study(config("masked")), Study(config("masked", mask_ratio=0.3))
    assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3


def test_its_own_data_is_checked_for_shape_and_for_test_rows_of_a_target(tmp_path):
    study = Study(config())
    raw, _ = study.load()
    d = raw["digits"]
    np.savez(tmp_path / "clean.npz", x_train=d.x_train[:100], y_train=np.zeros(100), x_test=d.x_train[:5], y_test=np.zeros(5))
    ok = Study(config(data={"npz": str(tmp_path / "clean.npz")}))
    assert ok.fingerprint != study.fingerprint
    np.savez(tmp_path / "leak.npz", x_train=np.concatenate([d.x_train[:100], d.x_test[:3]]), y_train=np.zeros(103), x_test=d.x_train[:5], y_test=np.zeros(5))
    with pytest.raises(ConfigError, match=r"sources.ssl.data': 3 of the \d+ test rows of target 'digits' are among its inputs"):
        Study(config(data={"npz": str(tmp_path / "leak.npz")})).load()
    np.savez(tmp_path / "shape.npz", x_train=np.zeros((20, 9, 9)), y_train=np.zeros(20), x_test=np.zeros((2, 9, 9)), y_test=np.zeros(2))
    with pytest.raises(ConfigError, match=r"sources.ssl.data': inputs of shape \(1, 9, 9\), but target 'digits' has inputs of shape"):
        Study(config(data={"npz": str(tmp_path / "shape.npz")})).load()


@pytest.mark.parametrize("pretrain", ["autoencoder", "masked", "simclr"])
def test_each_objective_runs_a_small_study_to_the_end(tmp_path, pretrain):
    summary = Study(config(pretrain)).run(out=tmp_path, progress=False)
    cells = {(c["strategy"], c["fraction"]): c for c in summary["cells"]}
    assert {s for s, _ in cells} == {"scratch", "fine-tune:ssl", "feature-extraction:ssl"}
    assert all(np.isfinite(c["mean"]) for c in cells.values())


def test_the_dry_run_counts_each_sources_pretraining_once_per_target_and_seed(tmp_path):
    plan = dry_run(Study(config()), tmp_path / "study")
    assert plan["pretrainings"] == 2  # 2 seeds x 1 source x 1 target; no in-study pretraining here
    assert 0 < plan["pretrain_seconds"][0] <= plan["pretrain_seconds"][1]
    assert not (tmp_path / "study").exists()


def test_parallel_workers_get_each_pretraining_made_once_before_the_runs(tmp_path, monkeypatch):
    seen = {}

    def capture(pretrain, execute, pretrainings, jobs, workers, deliver, gpus):
        seen["pretrainings"] = list(pretrainings)
        for spec in pretrainings:  # as the executor does, first
            pretrain(spec)
        for job in jobs:
            deliver(execute(job))

    monkeypatch.setattr(runner, "run_local", capture)
    study = Study(config())
    study.run_grid(out=tmp_path, workers=2, progress=False)
    assert sorted((s.strategy, s.task, s.seed) for s in seen["pretrainings"]) == [("pretrain-ssl:ssl", "digits", 0), ("pretrain-ssl:ssl", "digits", 1)]
    assert all((tmp_path / "pretrained-ssl" / "ssl" / "digits" / f"seed{k}.pt").is_file() for k in (0, 1))
    assert study.starts_needed(tmp_path, study.planned_jobs()) == []  # cached: a rerun needs none
    job = next(j for j in study.planned_jobs() if j.strategy == "fine-tune:ssl")
    assert [s.strategy for s in study._job_pretrainings(job)] == ["pretrain-ssl:ssl"]
    assert study._job_inputs(tmp_path, job) == [f"pretrained-ssl/ssl/digits/seed{job.seed}.pt"]
