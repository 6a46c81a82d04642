"""A study's cost table carries serving latency and throughput measured on its own models,
by the measurement ``benchmarks/serving.py`` makes."""

from __future__ import annotations

import json

import pytest
import torch

from polytask import finalize
from polytask.api import Study
from polytask.core.errors import PolytaskWarning
from polytask.lifecycle.serving import module_server, served_models, study_serving


def multi_mnist(**overrides) -> dict:
    return {
        "name": "serve",
        "seeds": 1,
        "fractions": [1.0],
        "tasks": {
            "left": {"data": {"builtin": "multi-mnist", "target": "left", "max_train": 300, "max_test": 100}},
            "right": {"data": {"builtin": "multi-mnist", "target": "right", "max_train": 300, "max_test": 100}},
        },
        "model": {"backbone": "cnn", "cnn": {"channels": [8, 16], "hidden": 32}},
        "strategies": ["scratch", "mtl"],
        "train": {"max_epochs": 1, "batch_size": 64},
        **overrides,
    }


def test_a_shared_model_answers_tasks_on_one_input_with_one_backbone_pass():
    study = Study(multi_mnist())
    study.load()
    x = study.prepare("left", 0, 1.0).test.x[:4]
    calls = []
    (shared,) = served_models(study, "mtl")
    separate = served_models(study, "scratch")
    assert [t for _, t in separate] == [["left"], ["right"]] and shared[1] == ["left", "right"]
    for model, _ in [shared, *separate]:
        model.backbone.register_forward_hook(lambda *a: calls.append(1))
    groups = {"left": "inputs:left", "right": "inputs:left"}
    module_server([shared], {"left": x, "right": x}, groups)(4)
    assert len(calls) == 1
    module_server(separate, {"left": x, "right": x}, groups)(4)
    assert len(calls) == 3


def test_the_cost_table_reports_measured_serving_per_strategy(tmp_path):
    figures = study_serving(Study(multi_mnist()), calls=20, batches=2)
    assert set(figures) == {"scratch", "mtl"}
    assert all(f["serve_latency_ms"] > 0 and f["serve_p90_ms"] >= f["serve_latency_ms"] and f["serve_rows_per_s"] > 0 for f in figures.values())
    assert torch.get_num_threads() >= 1  # restored after measuring with one thread
    summary = Study(multi_mnist()).run(out=tmp_path, progress=False)
    cost = {c["strategy"]: c for c in summary["cost"]}
    assert cost["mtl"]["serve_latency_ms"] > 0 and cost["scratch"]["serve_rows_per_s"] > 0
    kept = json.loads((tmp_path / "serving.json").read_text())
    assert set(kept["strategies"]) == {"scratch", "mtl"} and kept["machine"]["torch"] == torch.__version__
    html = (tmp_path / "report.html").read_text()
    assert "serving latency ms (p90)" in html and "benchmarks/serving.py" in html


def test_a_failed_measurement_warns_and_the_study_still_answers(tmp_path, monkeypatch):
    def broken(study):
        raise RuntimeError("no clock")

    monkeypatch.setattr(finalize, "study_serving", broken)
    with pytest.warns(PolytaskWarning, match="serving was not measured .RuntimeError: no clock."):
        summary = Study(multi_mnist(strategies=["scratch"])).run(out=tmp_path, progress=False)
    assert summary["cost"] and "serve_latency_ms" not in summary["cost"][0] and not (tmp_path / "serving.json").exists()
    assert "serving latency" not in (tmp_path / "report.html").read_text()
