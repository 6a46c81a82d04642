"""Every weighting method trains a multi-task model through the one engine and the study."""

from __future__ import annotations

import math

import pytest
from conftest import tiny_config

from polytask import Study
from polytask.core.errors import ConfigError
from polytask.methods.weighting import weighting_names
from polytask.methods.weighting.base import WEIGHTINGS
from polytask.study.resolve import validate
from polytask.study.store import ResultStore


@pytest.mark.parametrize("name", weighting_names())
def test_method_trains_mtl_in_a_study(name, tiny_family, shared_family, tmp_path):
    # Methods on the representation need tasks that share their inputs.
    family = shared_family if WEIGHTINGS[name].representation_only else tiny_family
    cfg = tiny_config(family, seeds=1, fractions=[1.0], strategies=["scratch", f"mtl:{name}"])
    summary = Study(cfg, data=family).run(out=tmp_path, progress=False)
    rows = ResultStore(tmp_path / "results.jsonl").rows()
    assert {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows]
    cell = next(c for c in summary["cells"] if c["strategy"] == f"mtl:{name}")
    assert math.isfinite(cell["mean"])
    cost = next(c for c in summary["cost"] if c["strategy"] == f"mtl:{name}")
    assert cost["backbone_passes_per_input"] == 1


def test_mtl_section_hyperparameters_and_errors(tiny_family):
    base = tiny_config(tiny_family, strategies=["scratch", "mtl"])
    cfg = validate({**base, "mtl": {"weighting": "ew"}})
    assert cfg.mtl.weighting == "ew" and cfg.mtl.hparams("ew") == {}
    with pytest.raises(ConfigError, match="unknown weighting method 'nope'"):
        validate({**base, "mtl": {"weighting": "nope"}})
    with pytest.raises(ConfigError, match="unknown strategy 'mtl:nope'"):
        validate({**base, "strategies": ["mtl:nope"]})
    with pytest.raises(ConfigError, match="hyperparameters of 'ew'"):
        validate({**base, "mtl": {"ew": {"bogus": 1}}})
