"""``mtl`` trains one model for every target, the one you would deploy; a fraction applies
to every target in every strategy; in-study pretraining sees what ``mtl`` sees."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import FAST_TRAIN

from polytask import Study
from polytask.data import make_task_family
from polytask.strategies import STRATEGIES
from polytask.study.plan import plan_jobs
from polytask.study.store import ResultStore
from polytask.training.engine import _criterion


def _two_targets():
    fam = make_task_family(n_tasks=3, n_target=120, n_source=240, n_test=60, n_features=6, seed=2)
    return {"a": fam["target"], "b": fam["source1"], "src": fam["source2"]}


def _config(**extra):
    cfg = {
        "name": "joint",
        "seeds": 2,
        "fractions": [0.5, 1.0],
        "tasks": {"a": {}, "b": {}, "src": {"role": "source"}},
        "model": {"mlp": {"hidden": [16]}},
        "strategies": ["scratch", "fine-tune", "mtl", "mtl-per-target"],
        "train": FAST_TRAIN,
    }
    cfg.update(extra)
    return cfg


def test_mtl_is_one_model_per_fraction_and_seed_with_a_row_per_target(tmp_path):
    data = _two_targets()
    study = Study(_config(), data=data)
    jobs = plan_jobs(study.config)
    assert len([j for j in jobs if j.strategy == "mtl"]) == 2 * 2  # seeds x fractions, not x targets
    assert len([j for j in jobs if j.strategy == "mtl-per-target"]) == 2 * 2 * 2
    study.run(out=tmp_path, progress=False)
    rows = [r for r in ResultStore(tmp_path / "results.jsonl").rows() if r["strategy"] == "mtl"]
    assert len(rows) == 2 * 2 * 2 and {r["status"] for r in rows} == {"ok"}
    by_model = {}
    for r in rows:
        by_model.setdefault(r["model_id"], []).append(r)
    assert sorted(by_model) == ["mtl/0.5/seed0", "mtl/0.5/seed1", "mtl/1/seed0", "mtl/1/seed1"]
    for pair in by_model.values():
        assert {r["task"] for r in pair} == {"a", "b"}
        assert len({(r["train_seconds"], r["trainable_params"], r["backbone_params"], r["best_epoch"]) for r in pair}) == 1
    # Every target at the run's fraction: half of its training labels at 0.5.
    labels: dict[tuple, set] = {}
    for r in ResultStore(tmp_path / "results.jsonl").rows():
        labels.setdefault((r["task"], r["fraction"], r["seed"]), set()).add((r["train_labels"], r["val_labels"]))
    assert all(len(v) == 1 for v in labels.values())  # every strategy of a cell: the same labels
    for task in ("a", "b"):
        (half,), (full,) = labels[(task, 0.5, 0)], labels[(task, 1.0, 0)]
        assert half[0] == pytest.approx(full[0] / 2, abs=3) and half[1] < full[1]


def test_a_failed_joint_model_fails_every_target(tmp_path, monkeypatch):
    real = STRATEGIES["mtl"]

    def broken(ctx, **kw):
        if ctx.seed == 1:
            raise FloatingPointError("diverged")
        return real.run(ctx, **kw)

    monkeypatch.setitem(STRATEGIES, "mtl", dataclasses.replace(real, run=broken))
    Study(_config(strategies=["scratch", "mtl"], fractions=[1.0]), data=_two_targets()).run(out=tmp_path, progress=False)
    failed = [r["run_id"] for r in ResultStore(tmp_path / "results.jsonl").rows() if r["status"] == "failed"]
    assert sorted(failed) == ["a/mtl/1/seed1", "b/mtl/1/seed1"]


def test_pretraining_for_a_target_uses_the_other_targets_at_the_runs_fraction(tmp_path, monkeypatch):
    import polytask.study.runner as runner

    seen = []
    real = runner.pretrain

    def spy(ctx):
        seen.append((ctx.target, ctx.fraction, {n: len(ctx.prepare(n, ctx.fraction if n in ("a", "b") else 1.0).train) for n in ctx.tasks if n != ctx.target}))
        return real(ctx)

    monkeypatch.setattr(runner, "pretrain", spy)
    Study(_config(strategies=["fine-tune"], seeds=1), data=_two_targets()).run(out=tmp_path, progress=False)
    assert sorted((t, f) for t, f, _ in seen) == [("a", 0.5), ("a", 1.0), ("b", 0.5), ("b", 1.0)]
    sizes = {(t, f): n for t, f, n in seen}
    assert sizes[("a", 0.5)]["b"] < sizes[("a", 1.0)]["b"] and sizes[("a", 0.5)]["src"] == sizes[("a", 1.0)]["src"]
    assert (tmp_path / "pretrained" / "a" / "0.5" / "seed0.pt").exists()


def test_several_targets_select_on_their_mean_relative_metric():
    class T:
        def __init__(self, metric):
            self.task = type("task", (), {"metric": metric})()

    crit = _criterion(["acc", "err"], {"acc": T("accuracy_score"), "err": T("root_mean_squared_error")})
    first = crit({"acc": 0.5, "err": 10.0}, {})
    assert first == pytest.approx((0.5 / 0.5 - 10.0 / 10.0) / 2)
    # +10% accuracy and -10% error weigh alike whatever the units.
    assert crit({"acc": 0.55, "err": 10.0}, {}) == pytest.approx(crit({"acc": 0.5, "err": 9.0}, {}))


def test_predictions_are_kept_for_every_cell(tmp_path):
    Study(_config(strategies=["scratch", "mtl"], fractions=[1.0], seeds=1), data=_two_targets()).run(out=tmp_path, progress=False)
    for task in ("a", "b"):
        for strategy in ("scratch", "mtl"):
            row = next(r for r in ResultStore(tmp_path / "results.jsonl").rows() if r["run_id"] == f"{task}/{strategy}/1/seed0")
            saved = np.load(tmp_path / "predictions" / row["fingerprint"] / task / strategy / "1" / "seed0.npz")
            assert saved["pred"].shape[0] == saved["truth"].shape[0] == 60
            assert row["test"] == pytest.approx(float((saved["pred"].argmax(1) == saved["truth"]).mean()), abs=1e-6)
