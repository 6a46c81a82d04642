"""Every sharing architecture trains the mtl strategy in a study, with any weighting."""

from __future__ import annotations

import math

import pytest
from conftest import tiny_config

from polytask import Study
from polytask.core.errors import ConfigError
from polytask.methods.architectures.base import ARCHITECTURES
from polytask.study.resolve import validate
from polytask.study.store import ResultStore


@pytest.mark.parametrize("arch", ARCHITECTURES.names())
@pytest.mark.parametrize("weighting", ["ew", "pcgrad"])
def test_architecture_trains_in_a_study(arch, weighting, tiny_family, tmp_path):
    cfg = tiny_config(tiny_family, seeds=1, fractions=[1.0], strategies=[f"mtl:{weighting}"])
    # Two hidden layers: stage-wise architectures need at least two stages to connect.
    cfg["model"] = {"backbone": "mlp", "mlp": {"hidden": [16, 16]}, "architecture": arch}
    summary = Study(cfg, data=tiny_family).run(out=tmp_path, progress=False)
    rows = ResultStore(tmp_path / "results.jsonl").rows()
    assert [r["status"] for r in rows] == ["ok"], rows[0]["error"]
    assert math.isfinite(summary["cells"][0]["mean"])
    assert rows[0]["backbone_params"] > 0 and rows[0]["head_params"] == 16 * 4 + 4


def test_gradient_method_refuses_a_model_without_shared_parameters(tiny_family, tmp_path):
    cfg = tiny_config(tiny_family, seeds=1, fractions=[1.0], strategies=["mtl:pcgrad"])
    cfg["model"] = {**cfg["model"], "architecture": "cross-stitch"}  # one stage: no cross-stitch unit
    Study(cfg, data=tiny_family).run(out=tmp_path, progress=False)
    (row,) = ResultStore(tmp_path / "results.jsonl").rows()
    assert row["status"] == "failed" and "shares no trainable parameters" in row["error"]


def test_architecture_config_errors(tiny_family):
    base = tiny_config(tiny_family, strategies=["mtl"])
    with pytest.raises(ConfigError, match="unknown key or architecture 'nope'"):
        validate({**base, "model": {"architecture": "nope"}})
    with pytest.raises(ConfigError, match="architecture 'hard' has no option 'experts'"):
        validate({**base, "model": {"hard": {"experts": 3}}})
