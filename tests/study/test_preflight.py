"""Settings a strategy cannot run with fail before a study writes anything, in one line."""

from __future__ import annotations

import pytest
from conftest import FAST_TRAIN, da_config, shifted_pair, tiny_config

from polytask import ConfigError, Study
from polytask.data import TaskData
from polytask.methods.backbones import create_backbone
from polytask.methods.backbones.run import save_backbone
from polytask.study.resolve import backbone_options


def _fails_before_writing(study: Study, out, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        study.run(out=out, progress=False)
    assert "\n" not in str(e.value)
    assert not out.exists(), sorted(p.name for p in out.iterdir())


def test_delta_without_a_probe_fails_before_any_run(tiny_family, tmp_path):
    cfg = tiny_config(tiny_family, strategies=["scratch", "fine-tune"], **{"fine-tune": {"regularizer": "delta"}})
    _fails_before_writing(Study(cfg, data=tiny_family), tmp_path / "out", "lp_ft")


def test_lwf_from_a_named_backbone_fails_before_any_run(tiny_family, tmp_path):
    model = Study(tiny_config(tiny_family), data=tiny_family).config.model
    saved = tmp_path / "earlier"
    options = backbone_options(model)
    save_backbone(saved / "models" / "target" / "scratch" / "1" / "seed0.pt", create_backbone("mlp", (6,), **options), "mlp", options, (6,))
    cfg = tiny_config(
        tiny_family,
        strategies=["scratch", "fine-tune:earlier"],
        sources={"earlier": f"run:{saved}/target/scratch/seed0"},
        **{"fine-tune": {"regularizer": "lwf"}},
    )
    _fails_before_writing(Study(cfg, data=tiny_family), tmp_path / "out", "lwf")


def test_lora_with_gradual_unfreezing_fails_before_any_run(tiny_family, tmp_path):
    cfg = tiny_config(tiny_family, strategies=["scratch", "fine-tune"], **{"fine-tune": {"lora": {"r": 2}, "unfreeze": "gradual"}})
    _fails_before_writing(Study(cfg, data=tiny_family), tmp_path / "out", "gradual")


def test_fine_tuning_more_layers_than_the_backbone_has_fails_before_any_run(tiny_family, tmp_path):
    cfg = tiny_config(tiny_family, strategies=["scratch", "fine-tune"], **{"fine-tune": {"layers": 5}})
    _fails_before_writing(Study(cfg, data=tiny_family), tmp_path / "out", "layers=5")


def test_domain_adaptation_without_a_matching_source_fails_before_any_run(tmp_path):
    pair = shifted_pair(n_source=60, n_target=60)
    binary = {**pair, "source": TaskData(pair["source"].x_train, pair["source"].y_train % 2, pair["source"].x_test, pair["source"].y_test % 2)}
    _fails_before_writing(Study(da_config(["scratch", "domain-adapt:dann"], train=FAST_TRAIN), data=binary), tmp_path / "a", "no task with role 'source'")
    _fails_before_writing(Study(da_config(["scratch", "domain-adapt:dann"], unlabeled=None), data=pair), tmp_path / "b", "unlabeled")
    bad = {"domain-adapt": {"dann": {"bogus": 1}}}
    _fails_before_writing(Study(da_config(["scratch", "domain-adapt:dann"], **bad), data=pair), tmp_path / "c", "domain-adapt.dann")
