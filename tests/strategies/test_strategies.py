"""Each strategy builds the model and data plan it promises, through the one engine."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from polytask import Study
from polytask.strategies import strategy_names
from polytask.study.plan import RunSpec

# domain-adapt needs a target with unlabeled inputs and a method: tests/test_domain_adapt.py runs every method.
SUPERVISED = [n for n in strategy_names() if n != "domain-adapt"]


@pytest.fixture
def study(tiny_family, tmp_path):
    return Study(tiny_config(tiny_family), data=tiny_family), tmp_path


def test_registry_lists_the_four_strategies():
    assert strategy_names() == ["scratch", "aa-control", "mtl", "mtl-per-target", "feature-extraction", "fine-tune", "domain-adapt"]


@pytest.mark.parametrize("strategy", SUPERVISED)
def test_every_strategy_runs_and_records_a_row(study, strategy):
    s, out = study
    row = s.execute(out, RunSpec("target", strategy, 0.5, 0))
    assert row["status"] == "ok", row["error"]
    assert 0.0 <= row["test"] <= 1.0 and 0.0 <= row["val"] <= 1.0
    assert row["metric"] == "accuracy_score" and row["train_seconds"] > 0


def test_trainable_parameters_match_what_each_strategy_trains(study):
    s, out = study
    rows = {n: s.execute(out, RunSpec("target", n, 1.0, 0)) for n in SUPERVISED}
    head = rows["scratch"]["head_params"]
    backbone = rows["scratch"]["backbone_params"]
    assert head == 16 * 4 + 4 and backbone == 6 * 16 + 16
    assert rows["scratch"]["trainable_params"] == backbone + head
    assert rows["feature-extraction"]["trainable_params"] == head  # frozen shared layers
    assert rows["fine-tune"]["trainable_params"] == backbone + head
    assert rows["mtl"]["trainable_params"] == backbone + 3 * head  # a head for every task


def test_pretrained_layers_are_trained_once_per_seed_and_reused(study, monkeypatch):
    s, out = study
    import polytask.study.runner as runner

    calls = []
    real = runner.pretrain
    monkeypatch.setattr(runner, "pretrain", lambda ctx: calls.append(ctx.seed) or real(ctx))
    for fraction in (0.5, 1.0):
        for strategy in ("feature-extraction", "fine-tune"):
            assert s.execute(out, RunSpec("target", strategy, fraction, 0))["status"] == "ok"
    assert calls == [0]
    # One target: pretraining reads the sources alone, the same for every fraction.
    assert (out / "pretrained" / "target" / "1" / "seed0.pt").exists()
    cached = torch.load(out / "pretrained" / "target" / "1" / "seed0.pt", weights_only=True)
    assert cached["fingerprint"] == s.fingerprint


def test_feature_extraction_starts_from_the_pretrained_weights(study):
    s, out = study
    spec = RunSpec("target", "fine-tune", 1.0, 0)
    a, _ = s._pretrained(out, spec)
    b, _ = s._pretrained(out, spec)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    fresh = s.new_backbone((6,))
    assert any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), fresh.state_dict().values()))


def test_same_seed_reproduces_the_same_row(study):
    s, out = study
    a = s.execute(out, RunSpec("target", "mtl", 0.5, 1))
    b = s.execute(out, RunSpec("target", "mtl", 0.5, 1))
    assert a["test"] == b["test"] and a["val"] == b["val"] and a["epochs"] == b["epochs"]
