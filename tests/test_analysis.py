"""Statistics, verdicts, recommendations and Δm against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from polytask.analysis import delta_m, mean_ci, paired, summarize
from polytask.config import validate


def test_mean_ci_matches_student_t_by_hand():
    m, sd, ci = mean_ci([0.8, 0.9, 1.0])
    assert m == pytest.approx(0.9)
    assert sd == pytest.approx(0.1)
    half = 4.302652729911275 * 0.1 / math.sqrt(3)  # t_{0.975, 2}
    assert ci == pytest.approx((0.9 - half, 0.9 + half))


def test_mean_ci_single_value_has_no_interval():
    assert mean_ci([0.5]) == (0.5, 0.0, None)


def test_paired_sign_and_p_value():
    a = {0: 0.90, 1: 0.85, 2: 0.95}
    b = {0: 0.80, 1: 0.80, 2: 0.82}
    delta, p, n = paired(a, b, sign=1.0)
    assert n == 3
    assert delta == pytest.approx(np.mean([0.10, 0.05, 0.13]))
    assert p == pytest.approx(stats.ttest_rel([0.90, 0.85, 0.95], [0.80, 0.80, 0.82]).pvalue)
    # Lower-is-better metric: the sign flips so that positive still means "a is better".
    delta_err, p_err, _ = paired(a, b, sign=-1.0)
    assert delta_err == pytest.approx(-delta)
    assert p_err == pytest.approx(p)


def test_paired_uses_only_shared_seeds_and_constant_differences():
    delta, p, n = paired({0: 1.0, 1: 2.0, 5: 9.0}, {0: 0.5, 1: 1.5}, sign=1.0)
    assert (delta, p, n) == (0.5, 0.0, 2)
    assert paired({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}, 1.0) == (0.0, 1.0, 2)
    assert paired({0: 1.0}, {0: 0.0}, 1.0) == (1.0, None, 1)


def test_delta_m_by_hand():
    # accuracy 0.9 vs 0.8 -> +12.5%; rmse 1.5 vs 2.0 (lower better) -> +25%; mean 18.75%.
    value = delta_m({"a": 0.9, "b": 1.5}, {"a": 0.8, "b": 2.0}, {"a": "accuracy_score", "b": "root_mean_squared_error"})
    assert value == pytest.approx(18.75)


def _rows(values: dict[str, list[float]], metric="accuracy_score", seconds=None, task="t", fraction=1.0):
    rows = []
    for strategy, vals in values.items():
        for seed, v in enumerate(vals):
            rows.append(
                {
                    "run_id": f"{task}/{strategy}/{fraction:g}/seed{seed}",
                    "task": task,
                    "strategy": strategy,
                    "fraction": fraction,
                    "seed": seed,
                    "metric": metric,
                    "test": v,
                    "val": v,
                    "train_seconds": (seconds or {}).get(strategy, 1.0),
                    "pretrain_seconds": 0.0,
                    "trainable_params": 100,
                    "backbone_params": 90,
                    "head_params": 10,
                    "status": "ok",
                    "error": None,
                }
            )
    return rows


def _config(strategies, tasks=("t",)):
    return validate(
        {
            "name": "s",
            "seeds": 3,
            "tasks": {t: {"data": {"builtin": "digits"}} for t in tasks} | {"src": {"data": {"builtin": "mnist"}, "role": "source"}},
            "strategies": strategies,
        }
    )


def test_verdicts_better_same_worse_and_baseline():
    rows = _rows(
        {
            "scratch": [0.80, 0.82, 0.81],
            "fine-tune": [0.90, 0.93, 0.91],  # clearly better
            "feature-extraction": [0.70, 0.71, 0.69],  # clearly worse: negative transfer
            "mtl": [0.82, 0.80, 0.815],  # same within noise
        }
    )
    s = summarize(rows, _config(["scratch", "feature-extraction", "fine-tune", "mtl"]))
    verdict = {c["strategy"]: c["verdict"] for c in s["cells"]}
    assert verdict == {"scratch": "baseline", "fine-tune": "better", "feature-extraction": "worse", "mtl": "same"}
    ft = next(c for c in s["cells"] if c["strategy"] == "fine-tune")
    assert ft["delta_vs_scratch"] == pytest.approx(0.1033333, abs=1e-6)
    assert ft["n"] == 3 and ft["ci95"][0] < ft["mean"] < ft["ci95"][1]


def test_lower_is_better_metric_delta_is_signed_as_improvement():
    rows = _rows({"scratch": [2.0, 2.1, 2.2], "mtl": [1.0, 1.2, 1.1]}, metric="root_mean_squared_error")
    s = summarize(rows, _config(["scratch", "mtl"]))
    mtl = next(c for c in s["cells"] if c["strategy"] == "mtl")
    assert mtl["delta_vs_scratch"] == pytest.approx(1.0)
    assert mtl["verdict"] == "better"
    assert s["delta_m"][0]["delta_m_percent"] == pytest.approx(100 * (2.1 - 1.1) / 2.1)


def test_recommendation_prefers_cheaper_when_not_significant():
    rows = _rows(
        {"scratch": [0.80, 0.83, 0.81], "fine-tune": [0.82, 0.82, 0.82]},
        seconds={"scratch": 1.0, "fine-tune": 5.0},
    )
    s = summarize(rows, _config(["scratch", "fine-tune"]))
    (rec,) = s["recommendations"]
    assert rec["best"] == "scratch" and rec["highest_mean"] == "fine-tune"
    assert "within noise" in rec["reason"] and "80% less training time (1 s against 5 s per run)" in rec["reason"]


def test_a_slightly_cheaper_tie_is_not_recommended_over_the_best_mean():
    # 4% faster is within timing noise: the best mean stays the recommendation.
    rows = _rows({"scratch": [0.80, 0.83, 0.81], "mtl": [0.82, 0.82, 0.82]}, seconds={"scratch": 0.96, "mtl": 1.0})
    (rec,) = summarize(rows, _config(["scratch", "mtl"]))["recommendations"]
    assert rec["best"] == "mtl" and "less training time" not in rec["reason"]


def test_recommendation_keeps_significantly_better_expensive_strategy():
    rows = _rows({"scratch": [0.80, 0.82, 0.81], "mtl": [0.90, 0.93, 0.91]}, seconds={"scratch": 1.0, "mtl": 9.0})
    (rec,) = summarize(rows, _config(["scratch", "mtl"]))["recommendations"]
    assert rec["best"] == "mtl" and "vs scratch" in rec["reason"]


def test_failed_rows_are_listed_not_counted_and_cost_serving():
    rows = _rows({"scratch": [0.8, 0.81], "mtl": [0.85, 0.86]}, task="a") + _rows({"scratch": [0.7, 0.71], "mtl": [0.75, 0.74]}, task="b")
    rows.append({**rows[0], "run_id": "a/mtl/1/seed2", "strategy": "mtl", "seed": 2, "status": "failed", "error": "DivergedError: nan", "test": None})
    s = summarize(rows, _config(["scratch", "mtl"], tasks=("a", "b")))
    assert s["runs"]["failed"] == 1 and s["failed"][0]["error"].startswith("DivergedError")
    assert next(c for c in s["cells"] if c["task"] == "a" and c["strategy"] == "mtl")["n"] == 2
    cost = {c["strategy"]: c for c in s["cost"]}
    # Two targets: two separate models (2 x (90 + 10)) against one shared backbone and two heads.
    assert cost["scratch"]["serve_params_all_targets"] == 200
    assert cost["mtl"]["serve_params_all_targets"] == 110
    assert cost["mtl"]["backbone_passes_per_input"] == 1 and cost["scratch"]["backbone_passes_per_input"] == 2
