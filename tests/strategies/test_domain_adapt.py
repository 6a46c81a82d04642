"""The domain-adapt:<method> strategy: every method through a study, validator selection,
the oracle record, label hygiene of ``unlabeled: true``, the analysis reference, config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import blobs, da_config, shifted_pair

from polytask import Study
from polytask.core.errors import ConfigError
from polytask.data import TaskData
from polytask.insights.analysis import summarize
from polytask.methods.adaptation import coral_distance, create_adapter, gaussian_mk_mmd
from polytask.strategies import get_strategy
from polytask.strategies.domain_adapt import DomainAdaptPenalty, method_names
from polytask.study.plan import RunSpec
from polytask.study.resolve import validate
from polytask.study.store import ResultStore

EXTRA = {"method", "validator", "chosen_epoch", "target_val_at_chosen", "target_val_oracle", "oracle_epoch", "oracle_gap", "validator_scores"}


def run_one(study: Study, strategy: str, tmp_path, seed: int = 0) -> dict:
    row = study.execute(tmp_path, RunSpec("target", strategy, 1.0, seed))
    assert row["status"] == "ok", row["error"]
    return row


@pytest.mark.parametrize("method", method_names())
def test_every_method_runs_in_a_study_and_records_the_oracle(method, tmp_path):
    strategy = f"domain-adapt:{method}"
    study = Study(da_config([strategy]), data=shifted_pair(n_source=160, n_target=120))
    row = run_one(study, strategy, tmp_path)
    extra = row["extra"]
    assert EXTRA <= set(extra) and extra["method"] == method and extra["validator"] == "dev"
    assert 0.0 <= row["test"] <= 1.0
    assert extra["chosen_epoch"] == row["best_epoch"] and len(extra["validator_scores"]) == row["epochs"]
    # The reported validation metric is the target's, at the validator-chosen checkpoint.
    assert row["val"] == pytest.approx(extra["target_val_at_chosen"])
    assert extra["target_val_oracle"] == max(extra["target_val_by_epoch"])
    assert extra["oracle_gap"] == pytest.approx(extra["target_val_oracle"] - extra["target_val_at_chosen"]) and extra["oracle_gap"] >= 0


@pytest.mark.parametrize("validator", ["source-val", "entropy", "im", "snd"])
def test_each_validator_selects(validator, tmp_path):
    study = Study(da_config(["domain-adapt:deep-coral"], **{"domain-adapt": {"validator": validator}}), data=shifted_pair(n_source=160, n_target=120))
    extra = run_one(study, "domain-adapt:deep-coral", tmp_path)["extra"]
    assert extra["validator"] == validator
    assert extra["chosen_epoch"] == 1 + int(np.argmax(extra["validator_scores"]))


def test_penalty_target_batches_are_reproducible_per_seed():
    x = torch.arange(50, dtype=torch.float32).reshape(25, 2)

    def draws(seed: int) -> list[list[int]]:
        penalty = DomainAdaptPenalty(create_adapter("dann", feature_dim=4, n_classes=3), x, batch_size=8, seed=seed)
        return [penalty.next_indices().tolist() for _ in range(6)]

    first = draws(3)
    assert first == draws(3)
    assert first != draws(4)
    # One pass over the target rows: batches of 8, 8, 8 (the last row alone would be a batch of one).
    assert [len(b) for b in first[:3]] == [8, 8, 8] and len(set(sum(first[:3], []))) == 24


def test_unlabeled_true_never_reads_the_target_training_labels(tmp_path):
    # Given validation rows, the study carves nothing from train, so only the labels differ.
    clean = shifted_pair(n_source=160, n_target=120, val=True)
    t = clean["target"]
    scrambled = np.random.default_rng(1).permutation(t.y_train)
    garbage = {**clean, "target": TaskData(t.x_train, scrambled, t.x_test, t.y_test, t.x_val, t.y_val)}
    strategy = "domain-adapt:dann"
    a = run_one(Study(da_config([strategy, "scratch"]), data=clean), strategy, tmp_path)
    b = run_one(Study(da_config([strategy, "scratch"]), data=garbage), strategy, tmp_path)
    assert a["test"] == b["test"] and a["extra"] == b["extra"]
    # Scratch does read them: the same swap changes its numbers.
    s_a = run_one(Study(da_config(["scratch"]), data=clean), "scratch", tmp_path)
    s_b = run_one(Study(da_config(["scratch"]), data=garbage), "scratch", tmp_path)
    assert s_a["test"] != s_b["test"]


def test_unlabeled_inputs_from_a_separate_data_source(tmp_path):
    pair = shifted_pair(n_source=160, n_target=120)
    rng = np.random.default_rng(7)
    x_u, y_u = blobs(rng, 150, 50.0, 0.5)
    path = tmp_path / "unlabeled.npz"
    np.savez(path, x_train=x_u, y_train=np.full(len(y_u), -1), x_test=x_u[:10], y_test=y_u[:10])
    study = Study(da_config(["domain-adapt:dan"], unlabeled={"npz": str(path)}), data=pair)
    assert run_one(study, "domain-adapt:dan", tmp_path)["extra"]["method"] == "dan"
    np.savez(path, x_train=x_u[:, :3], y_train=y_u, x_test=x_u[:10, :3], y_test=y_u[:10])
    with pytest.raises(ConfigError, match=r"tasks.target.unlabeled': inputs of shape \(3,\)"):
        Study(da_config(["domain-adapt:dan"], unlabeled={"npz": str(path)}), data=pair).run(out=tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_config_errors_are_one_line(tmp_path):
    pair = shifted_pair(n_source=60, n_target=60)
    with pytest.raises(ConfigError) as e:
        Study(da_config(["domain-adapt:dann"], unlabeled=None), data=pair).run(out=tmp_path / "a", progress=False)
    assert "'target'" in one_line(e) and "unlabeled" in one_line(e)
    binary = {**pair, "source": TaskData(pair["source"].x_train, pair["source"].y_train % 2, pair["source"].x_test, pair["source"].y_test % 2)}
    with pytest.raises(ConfigError) as e:
        Study(da_config(["domain-adapt:dann"]), data=binary).run(out=tmp_path / "b", progress=False)
    assert "no task with role 'source'" in one_line(e)
    with pytest.raises(ConfigError) as e:
        validate(da_config(["domain-adapt:nope"]))
    assert "source-only" in one_line(e)
    with pytest.raises(ConfigError) as e:
        Study(da_config(["domain-adapt"]), data=pair).run(out=tmp_path / "c", progress=False)
    assert "domain-adapt:<method>" in one_line(e)
    with pytest.raises(ConfigError) as e:
        Study(da_config(["domain-adapt:dann"], **{"domain-adapt": {"dann": {"bogus": 1}}}), data=pair).run(out=tmp_path / "d", progress=False)
    assert "domain-adapt.dann" in one_line(e)


def _rows(values: dict[str, list[float]]) -> list[dict]:
    return [
        {
            "run_id": f"t/{strategy}/1/seed{seed}",
            "task": "t",
            "strategy": strategy,
            "fraction": 1.0,
            "seed": seed,
            "metric": "accuracy_score",
            "test": v,
            "val": v,
            "train_seconds": 1.0,
            "pretrain_seconds": 0.0,
            "trainable_params": 10,
            "backbone_params": 8,
            "head_params": 2,
            "status": "ok",
            "error": None,
        }
        for strategy, vals in values.items()
        for seed, v in enumerate(vals)
    ]


def test_analysis_judges_adaptation_against_source_only():
    strategies = ["scratch", "domain-adapt:source-only", "domain-adapt:dann", "fine-tune"]
    cfg = validate(
        {
            "seeds": 3,
            "tasks": {"t": {"data": {"builtin": "digits"}, "unlabeled": True}, "src": {"data": {"builtin": "mnist"}, "role": "source"}},
            "strategies": strategies,
        }
    )
    values = {
        "scratch": [0.95, 0.96, 0.94],  # target labels: far above any adaptation
        "domain-adapt:source-only": [0.60, 0.62, 0.61],
        "domain-adapt:dann": [0.70, 0.73, 0.71],  # better than source-only, worse than scratch
        "fine-tune": [0.97, 0.98, 0.95],
    }
    cells = {c["strategy"]: c for c in summarize(_rows(values), cfg)["cells"]}
    dann = cells["domain-adapt:dann"]
    assert dann["reference"] == "domain-adapt:source-only" and dann["verdict"] == "better"
    assert dann["delta_vs_reference"] == pytest.approx(0.1033333) and dann["delta_vs_scratch"] is None
    # Source-only itself, and every other strategy, keep scratch as the reference.
    assert cells["domain-adapt:source-only"]["reference"] == "scratch" and cells["domain-adapt:source-only"]["verdict"] == "worse"
    assert cells["fine-tune"]["reference"] == "scratch" and cells["fine-tune"]["delta_vs_scratch"] == pytest.approx(cells["fine-tune"]["delta_vs_reference"])
    # Without source-only in the study, adaptation is judged against scratch as before.
    no_so = {k: v for k, v in values.items() if k != "domain-adapt:source-only"}
    cells = {c["strategy"]: c for c in summarize(_rows(no_so), cfg)["cells"]}
    assert cells["domain-adapt:dann"]["reference"] == "scratch" and cells["domain-adapt:dann"]["verdict"] == "worse"


def test_adaptation_narrows_the_domain_gap_on_a_rotated_toy(tmp_path):
    """DANN and Deep CORAL leave source and target features closer than source-only does.

    A looser check than target accuracy, which on this toy moved by 0.5-11 points per seed
    (source-only 0.65/0.77/0.68 vs DANN 0.65/0.79/0.69 at seeds 0-2): too noisy at a test's
    size to assert. The gap is what the methods optimize: MK-MMD² (the median-bandwidth
    convention of :func:`gaussian_mk_mmd`) and the CORAL distance between the trained
    backbone's features of the source test rows and the target test rows, mean over seeds.
    """
    train = {"max_epochs": 10, "batch_size": 64, "lr": 0.005, "patience": 10, "min_steps_per_epoch": 10}
    strategies = ["domain-adapt:source-only", "domain-adapt:dann", "domain-adapt:deep-coral"]
    cfg = da_config(strategies, train=train, **{"domain-adapt": {"validator": "source-val", "deep-coral": {"trade_off": 30}}})
    gaps = {s: [] for s in strategies}
    for seed in range(2):
        study = Study(cfg, data=shifted_pair(seed))
        for strategy in strategies:
            outcome = get_strategy(strategy)(study._context(tmp_path, RunSpec("target", strategy, 1.0, seed)))
            backbone = outcome.backbone.eval()
            with torch.no_grad():
                f_s = backbone(study.prepare("source", seed, 1.0).test.x)
                f_t = backbone(study.prepare("target", seed, 1.0).test.x)
            gaps[strategy].append((float(gaussian_mk_mmd(f_s, f_t)), float(coral_distance(f_s, f_t))))
    mean = {s: np.mean(v, axis=0) for s, v in gaps.items()}
    assert mean["domain-adapt:dann"][0] < mean["domain-adapt:source-only"][0], gaps
    assert mean["domain-adapt:deep-coral"][1] < mean["domain-adapt:source-only"][1], gaps


def test_summary_and_report_show_the_validator_and_the_oracle_gap(tmp_path):
    strategies = ["domain-adapt:source-only", "domain-adapt:deep-coral"]
    summary = Study(da_config(strategies, seeds=2), data=shifted_pair(n_source=160, n_target=120)).run(out=tmp_path, progress=False)
    rows = [r for r in ResultStore(tmp_path / "results.jsonl").rows() if r["strategy"] == "domain-adapt:deep-coral"]
    cell = next(c for c in summary["cells"] if c["strategy"] == "domain-adapt:deep-coral")
    gaps = [r["extra"]["oracle_gap"] for r in rows]
    assert cell["selection"] == {"validator": "dev", "oracle_gap": pytest.approx(sum(gaps) / 2), "oracle_gap_max": pytest.approx(max(gaps)), "n": 2}
    html = (tmp_path / "report.html").read_text()
    assert "Checkpoints chosen without target labels" in html and "domain-adapt:deep-coral" in html
