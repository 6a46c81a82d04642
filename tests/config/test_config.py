"""Config: every shipped example loads, paths resolve, registries."""

from __future__ import annotations

from pathlib import Path

import pytest

from polytask import Study
from polytask.config import load_config
from polytask.core.errors import ConfigError
from polytask.data.builtin import register_builtin
from polytask.methods.backbones import backbone_names, register_backbone
from polytask.methods.weighting import WEIGHTINGS
from polytask.strategies import register_strategy
from polytask.study.resolve import validate

ROOT = Path(__file__).resolve().parents[2].joinpath("examples")
# Study configs; examples/update/ holds configs of `polytask update` (checked below).
EXAMPLES = sorted(p for p in ROOT.rglob("*.yaml") if p.parent.name != "update")
UPDATES = sorted(ROOT.joinpath("update").glob("*.yaml"))


def test_examples_exist():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_config_loads_and_its_data_checks(path):
    study = Study.from_yaml(path)
    raw, tasks = study.load()
    assert set(raw) == set(study.config.tasks) and study.config.targets


@pytest.mark.parametrize("path", UPDATES, ids=lambda p: p.name)
def test_every_example_update_config_loads(path):
    from polytask.config import load_update_config

    assert load_update_config(path).tasks


def test_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    cfg_file = tmp_path / "sub" / "study.yaml"
    cfg_file.write_text("tasks:\n  a: {data: {npz: data/a.npz}}\nstrategies: [scratch]\n")
    cfg = load_config(cfg_file)
    assert cfg.tasks["a"].data.npz == tmp_path.resolve() / "sub" / "data" / "a.npz"


def test_defaults_and_fraction_normalisation():
    cfg = validate({"tasks": {"a": {"data": {"builtin": "digits"}}, "b": {"data": {"builtin": "mnist"}}}, "fractions": [1.0, 0.1, 0.1]})
    assert cfg.fractions == [0.1, 1.0]
    assert cfg.strategies == ["scratch", "feature-extraction", "fine-tune", "mtl"]
    assert cfg.targets == ["a", "b"]


def test_transfer_needs_a_second_task():
    with pytest.raises(ConfigError, match="need at least two tasks"):
        validate({"tasks": {"a": {"data": {"builtin": "digits"}}}, "strategies": ["scratch", "mtl"]})


def test_duplicate_registrations_raise():
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("mlp")(lambda shape, cfg: None)
    with pytest.raises(ValueError, match="already registered"):
        register_strategy("scratch")(lambda ctx: None)
    with pytest.raises(ValueError, match="already registered"):
        register_builtin("digits", "again")(lambda: {})


def test_unknown_backbone_lists_known_names():
    with pytest.raises(ConfigError) as e:
        validate({"tasks": {"a": {"data": {"builtin": "digits"}}}, "model": {"backbone": "resnet"}, "strategies": ["scratch"]})
    for name in backbone_names():
        assert name in str(e.value)


def test_a_registry_lists_names_by_pattern():
    assert WEIGHTINGS.list("*grad") == [n for n in WEIGHTINGS.names() if n.endswith("grad")] and "pcgrad" in WEIGHTINGS.list("*grad")
    assert WEIGHTINGS.list() == WEIGHTINGS.names() and WEIGHTINGS.list("nothing-*") == []
