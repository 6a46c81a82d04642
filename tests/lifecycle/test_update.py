"""``polytask update``: the gate on real data. New correctly labelled digits are accepted and
the old task stays within the margin; the same rows with shuffled training labels (their
gate labels clean) are refused and the model is left as it was; a new task's head must beat
a model from scratch; rollback restores the previous weights byte for byte; the guards'
penalties are their papers' formulas on cases checked by hand."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

import polytask
from polytask.cli import app
from polytask.config import load_update_config
from polytask.core.errors import ConfigError
from polytask.core.tasks import Task
from polytask.lifecycle.train import train_model
from polytask.lifecycle.update import rollback, update_model
from polytask.methods.architectures.multitask import MultiTaskModel
from polytask.methods.continual import EWC, SelfDistillation, fisher_diagonal
from polytask.study.runner import Study

from .test_model_dir import demo_config, messy_table, saved, table_study


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A digits model trained on the builtin's training rows; its test rows are the new data
    of the updates (300 to train on, 150 as their gate split)."""
    root = tmp_path_factory.mktemp("update")
    study = Study(demo_config(strategies=["scratch"]))
    raw, _ = study.load()
    d = raw["digits"]
    np.savez(root / "old.npz", x_train=d.x_train, y_train=d.y_train, x_test=d.x_test[:50], y_test=d.y_test[:50])
    cfg = {
        "name": "update-base",
        "seeds": 1,
        "fractions": [1.0],
        "tasks": {"digits": {"data": {"npz": str(root / "old.npz")}}},
        "model": demo_config()["model"],
        "strategies": ["scratch"],
        "train": {"max_epochs": 15, "batch_size": 64, "lr": 0.002, "patience": 4},
    }
    train_model(Study(cfg), root / "model", strategy="scratch")
    new = {"x_train": d.x_test[:300], "y_train": d.y_test[:300], "x_test": d.x_test[300:], "y_test": d.y_test[300:]}
    np.savez(root / "new.npz", **new)
    shuffled = {**new, "y_train": np.random.default_rng(0).permutation(new["y_train"])}
    np.savez(root / "shuffled.npz", **shuffled)
    return root


def write_update(root: Path, name: str, npz: str, guard: str = "rehearsal", task: str = "digits") -> Path:
    path = root / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {"tasks": {task: {"data": {"npz": npz}}}, "guard": {"method": guard}, "train": {"max_epochs": 10, "batch_size": 64, "lr": 0.001, "patience": 3}}
        )
    )
    return path


@pytest.mark.parametrize("guard", ["rehearsal", "lwf", "ewc"])
def test_correct_new_labels_are_accepted_and_the_old_task_stays_within_the_margin(base, tmp_path, guard):
    out = tmp_path / "m"
    record = update_model(base / "model", load_update_config(write_update(base, f"good-{guard}", "new.npz", guard)), out=out)
    assert record["decision"] == "accepted", json.dumps(record["comparisons"], indent=1)
    old = next(c for c in record["comparisons"] if c["on"] == "kept gate rows")
    assert old["lower"] > -0.02 and old["rows"] > 250
    new = next(c for c in record["comparisons"] if c["on"] == "gate split of the new rows")
    assert new["rows"] == 150 and new["lower"] > -0.02
    meta = json.loads((out / "model.json").read_text())
    assert meta["version"] == 1 and meta["updates"][0]["guard"]["method"] == guard
    decision = json.loads((Path(record["version_dir"]) / "decision.json").read_text())
    assert decision["decision"] == "accepted" and decision["comparisons"] == record["comparisons"]
    # The previous files are kept; rollback puts them back byte for byte.
    assert sha(Path(record["version_dir"]) / "previous" / "model.safetensors") == sha(base / "model" / "model.safetensors")
    assert sha(out / "model.safetensors") != sha(base / "model" / "model.safetensors")
    back = rollback(out)
    assert back["decision"] == "rollback" and back["to_version"] == 0
    for name in ("model.safetensors", "model.json", "memory.safetensors", "reference.safetensors"):
        assert sha(out / name) == sha(base / "model" / name), name
    assert sorted(p.name for p in (out / "versions").iterdir()) == ["001-accepted", "002-rollback"]
    with pytest.raises(ConfigError, match="no accepted update to roll back"):
        rollback(out)


def test_shuffled_training_labels_are_refused_and_the_model_stays(base, tmp_path):
    out = tmp_path / "m"
    before = sha(base / "model" / "model.safetensors")
    result = CliRunner().invoke(app, ["update", str(base / "model"), "--data", str(write_update(base, "bad", "shuffled.npz", "lwf")), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "refused" in result.output and "FAILED: digits" in result.output
    assert sha(out / "model.safetensors") == before and json.loads((out / "model.json").read_text()).get("version", 0) == 0
    (decision,) = (out / "versions").iterdir()
    record = json.loads((decision / "decision.json").read_text())
    assert decision.name == "001-refused" and record["decision"] == "refused"
    failed = [c for c in record["comparisons"] if not c["passed"]]
    assert failed and all(c["lower"] <= c["bound"] for c in failed)
    assert not (decision / "previous").exists()


def test_a_new_task_gets_a_head_that_must_beat_one_from_scratch(base, tmp_path):
    # "Is the digit at least 5?" on the new rows: a new binary task on the same inputs.
    new = dict(np.load(base / "new.npz"))
    np.savez(
        tmp_path / "big.npz", x_train=new["x_train"], y_train=(new["y_train"] >= 5).astype(int), x_test=new["x_test"], y_test=(new["y_test"] >= 5).astype(int)
    )
    path = write_update(tmp_path, "big", str(tmp_path / "big.npz"), task="big")
    record = update_model(base / "model", load_update_config(path), out=tmp_path / "m")
    head = next(c for c in record["comparisons"] if c["task"] == "big")
    assert head["against"] == "a model from scratch" and head["bound"] == 0.0 and head["passed"] == (head["lower"] > 0)
    if record["decision"] == "accepted":
        model = polytask.load(tmp_path / "m")
        assert model.targets == ["digits", "big"] and set(model.predict(new["x_test"][:20], task="big")) <= {0, 1}


def test_bad_update_configs_are_one_line(base, tmp_path):
    cases = {
        "nofile": (tmp_path / "none.yaml", "does not exist"),
        "notask": (tmp_path / "empty.yaml", "give at least one task"),
        "guard": (tmp_path / "guard.yaml", "guard.method"),
    }
    (tmp_path / "empty.yaml").write_text("tasks: {}\n")
    (tmp_path / "guard.yaml").write_text(yaml.safe_dump({"tasks": {"digits": {"data": {"npz": str(base / "new.npz")}}}, "guard": {"method": "replay"}}))
    for path, message in cases.values():
        result = CliRunner().invoke(app, ["update", str(base / "model"), "--data", str(path)])
        assert result.exit_code == 2 and message in " ".join(result.output.split()) and "Traceback" not in result.output
    np.savez(tmp_path / "ten.npz", x_train=np.zeros((20, 8, 8)), y_train=np.full(20, 11), x_test=np.zeros((4, 8, 8)), y_test=np.full(4, 11))
    result = CliRunner().invoke(app, ["update", str(base / "model"), "--data", str(write_update(tmp_path, "ten", str(tmp_path / "ten.npz")))])
    assert result.exit_code == 2 and "label 11 is not a class of the model" in result.output


# ---- the guards' formulas ------------------------------------------------------------------


class Lin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 2)
        self.out_features = 2

    def forward(self, x):
        return self.fc(x)


def _model() -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(Lin(), [Task("a", "classification", 3), Task("r", "regression", 1)])


def test_lwf_is_the_papers_soft_cross_entropy_through_the_models_own_heads():
    start, model = _model(), _model()
    with torch.no_grad():
        model.backbone.fc.weight.add_(0.5)
    x = torch.tensor([[1.0, -2.0], [0.5, 0.25]])
    penalty = SelfDistillation(start, ["a", "r"], regression=["r"], lam=0.7, temperature=2.0).attach(model)
    model.train()
    model(x, "a")
    got = penalty(model, x, "a")
    h_old, h_new = start.backbone(x), model.backbone(x)
    p = torch.softmax(start.heads["a"](h_old) / 2, 1)
    q = torch.log_softmax(model.heads["a"](h_new) / 2, 1)
    ce = -(p * q).sum(1).mean()
    mse = (model.heads["r"](h_new) - start.heads["r"](h_old)).pow(2).sum(1).mean()
    assert got.item() == pytest.approx(0.7 * (ce + mse).item(), rel=1e-6)


def test_ewc_is_half_lambda_fisher_weighted_squared_distance_with_the_empirical_fisher():
    start = _model()
    x, y = torch.tensor([[1.0, 2.0], [-1.0, 0.5]]), torch.tensor([0, 2])

    def nll(m, xb, yb):
        return torch.nn.functional.cross_entropy(m(xb, "a"), yb)

    fisher = fisher_diagonal(start, [(x[i], y[i], nll) for i in range(2)])
    # By hand: the mean of squared per-sample gradients (not the square of the mean gradient).
    grads = []
    for i in range(2):
        start.zero_grad()
        nll(start, x[i : i + 1], y[i : i + 1]).backward()
        grads.append(start.heads["a"].weight.grad.clone())
    assert torch.allclose(fisher["heads.a.weight"], (grads[0] ** 2 + grads[1] ** 2) / 2)
    model = _model()
    with torch.no_grad():
        model.heads["a"].weight.add_(0.3)
    penalty = EWC(start, fisher, lam=4.0)
    expected = 0.5 * 4.0 * sum((fisher[n] * (p - dict(start.named_parameters())[n]).pow(2)).sum() for n, p in model.named_parameters())
    assert penalty(model, x, "a").item() == pytest.approx(expected.item(), rel=1e-6)


def test_an_update_that_stops_on_bad_data_leaves_no_directory_behind(base, tmp_path):
    np.savez(tmp_path / "odd.npz", x_train=np.zeros((20, 5, 5)), y_train=np.zeros(20, int), x_test=np.zeros((4, 5, 5)), y_test=np.zeros(4, int))
    path = write_update(tmp_path, "odd", str(tmp_path / "odd.npz"))
    with pytest.raises(ConfigError, match=r"images of shape \(5, 5\): expected 8x8"):
        update_model(base / "model", load_update_config(path), out=tmp_path / "m")
    assert not (tmp_path / "m").exists() and not (base / "model" / "versions").exists()


def test_a_new_label_column_of_the_same_table_gets_a_head_reading_the_same_rows(tmp_path):
    study = table_study(tmp_path, "grade")
    saved(study, tmp_path, "scratch", 1.0)
    frame = messy_table()
    frame["band"] = np.where(frame["noise"] > 0, "up", "down")
    frame.to_csv(tmp_path / "more.csv", index=False)
    spec = {"csv": str(tmp_path / "more.csv"), "target": "band", "exclude": ["grade", "amount", "band"], "impute": "median"}
    path = tmp_path / "band.yaml"
    # 60 kept gate rows of 'grade': a margin of 0.05 is what they can show.
    settings = {"gate": {"margin": 0.05}, "train": {"max_epochs": 5, "batch_size": 32, "lr": 0.01}}
    path.write_text(yaml.safe_dump({"tasks": {"band": {"data": spec}}, **settings}))
    record = update_model(tmp_path / "model", load_update_config(path), out=tmp_path / "m")
    head = next(c for c in record["comparisons"] if c["task"] == "band")
    assert head["against"] == "a model from scratch" and head["rows"] == 100 and head["lower"] > 0
    assert record["decision"] == "accepted", record["comparisons"]
    model = polytask.load(tmp_path / "m")
    assert model.meta["tasks"]["band"]["class_names"] == ["down", "up"]
    assert model.meta["tasks"]["band"]["input"] == model.meta["tasks"]["grade"]["input"]  # the same encoded rows
    labels = model.predict(frame.tail(100), task="band")
    assert set(labels) <= {"down", "up"} and (labels == frame["band"].tail(100).to_numpy()).mean() > 0.8
    other = tmp_path / "other.csv"
    frame.rename(columns={"age": "years"}).to_csv(other, index=False)
    path.write_text(yaml.safe_dump({"tasks": {"band": {"data": {**spec, "csv": str(other)}}}}))
    with pytest.raises(ConfigError, match="task 'band' is new, and .* has none of the column sets the model's tasks read .age, city, noise."):
        update_model(tmp_path / "model", load_update_config(path))
