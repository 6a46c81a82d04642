"""tune: the same seeded search for every strategy, on validation of a seed never evaluated."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_config

import polytask.study.runner as runner
from polytask import ConfigError, Study
from polytask.study.estimate import dry_run
from polytask.study.resolve import validate
from polytask.study.store import ResultStore
from polytask.study.tune import apply, searched

SPACE = {"lr": [1e-3, 1e-2], "backbone_lr_ratio": [0.05, 1.0], "task_weights": [0.2, 5.0], "cagrad.c": [0.1, 0.9]}


def _config(family, **extra):
    settings = {
        "strategies": ["scratch", "fine-tune", "mtl", "mtl:cagrad", "aa-control"],
        "fractions": [1.0],
        "seeds": 2,
        "tune": {"trials": 3, "space": SPACE},
    }
    return tiny_config(family, **{**settings, **extra})


@pytest.mark.parametrize(
    "tune, match",
    [
        ({"space": {"lr": [0.1, 0.01]}}, "low < high"),
        ({"space": {"lr": [0.0, 0.01]}}, "log scale"),
        ({"space": {"dropout": [0.0, 0.5]}}, "unknown key 'dropout'"),
        ({"seed": 1}, "tuning seed must never be evaluated"),
        ({"strategies": ["fine-tune"]}, "not strategies of this study"),
    ],
)
def test_bad_tune_settings_are_one_line_errors(tune, match):
    with pytest.raises(ConfigError, match=match):
        validate({"tasks": {"a": {"data": {"builtin": "digits"}}}, "strategies": ["scratch"], "tune": tune})


def test_each_strategy_searches_only_what_applies_to_it(tiny_family):
    cfg = validate(_config(tiny_family))
    assert sorted(searched(cfg, "scratch")) == ["lr"]
    assert sorted(searched(cfg, "fine-tune")) == ["backbone_lr_ratio", "lr"]
    assert sorted(searched(cfg, "mtl")) == ["lr", "task_weights"]
    assert sorted(searched(cfg, "mtl:cagrad")) == ["cagrad.c", "lr"]
    tuned = apply(cfg, "mtl:cagrad", {"lr": 0.004, "cagrad.c": 0.3}, 3)
    assert tuned.train.lr == 0.004 and tuned.mtl.hparams("cagrad") == {"c": 0.3}
    weighted = apply(cfg, "mtl", {"task_weights.0": 2.0, "task_weights.1": 1.0, "task_weights.2": 0.5}, 3)
    assert weighted.mtl.weighting == "static" and weighted.mtl.hparams("static") == {"weights": [2.0, 1.0, 0.5]}


def test_a_tuned_study_uses_the_chosen_values_on_every_seed_and_never_evaluates_the_tuning_seed(tiny_family, tmp_path, monkeypatch):
    pretrainings = []
    real = runner.pretrain
    monkeypatch.setattr(runner, "pretrain", lambda ctx: pretrainings.append(ctx.seed) or real(ctx))
    summary = Study(_config(tiny_family), data=tiny_family).run(out=tmp_path, progress=False)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("tuning/*/*.json"))
    assert files == ["tuning/fine-tune/1.json", "tuning/mtl/1.json", "tuning/mtl:cagrad/1.json", "tuning/scratch/1.json"]
    chosen = {}
    for f in files:
        record = json.loads((tmp_path / f).read_text())["models"]["target"]
        assert len(record["trials"]) == 3  # the same budget for every strategy
        chosen[f.split("/")[1]] = record["best"]
    rows = ResultStore(tmp_path / "results.jsonl").rows()
    assert {r["seed"] for r in rows} == {0, 1}
    for r in rows:
        assert r["tuned"] == chosen["scratch" if r["strategy"] == "aa-control" else r["strategy"]]
    assert not list(tmp_path.glob("predictions/**/seed1000.npz"))
    # The transfer strategy's pretraining is not tuned: one pretraining for the tuning seed, whatever the trials.
    assert pretrainings.count(1000) == 1
    assert {t["strategy"] for t in summary["tuning"]} == {"scratch", "fine-tune", "mtl", "mtl:cagrad"}
    assert all(c["tune_seconds"] > 0 for c in summary["cost"] if c["strategy"] != "aa-control")


def test_a_resumed_study_reuses_its_searches_and_a_fresh_one_repeats_them(tiny_family, tmp_path, monkeypatch):
    cfg = _config(tiny_family, strategies=["scratch", "mtl"])
    Study(cfg, data=tiny_family).run(out=tmp_path / "a", progress=False)
    Study(cfg, data=tiny_family).run(out=tmp_path / "b", progress=False)

    def chosen(folder):
        return {p.parent.name: json.loads(p.read_text())["models"]["target"]["best"] for p in folder.glob("tuning/*/*.json")}

    assert chosen(tmp_path / "a") == chosen(tmp_path / "b")  # a seeded sampler
    monkeypatch.setattr(runner, "search", lambda *a, **k: pytest.fail("searched again"))
    Study({**cfg, "seeds": 3}, data=tiny_family).run(out=tmp_path / "a", progress=False)
    assert len(ResultStore(tmp_path / "a" / "results.jsonl").rows()) == 6


def test_dry_run_counts_the_searches_still_to_run_without_running_them(tiny_family, tmp_path, monkeypatch):
    cfg = _config(tiny_family, strategies=["scratch", "mtl"])
    with monkeypatch.context() as m:
        m.setattr(runner, "search", lambda *a, **k: pytest.fail("the dry run's probe ran a search"))
        plan = dry_run(Study(cfg, data=tiny_family), tmp_path / "out")
    assert (plan["searches"], plan["trials"]) == (2, 3) and plan["tune_seconds"][0] > 0
    assert not (tmp_path / "out").exists()
    Study(cfg, data=tiny_family).run(out=tmp_path / "out", progress=False)
    assert dry_run(Study({**cfg, "seeds": 3}, data=tiny_family), tmp_path / "out")["searches"] == 0
