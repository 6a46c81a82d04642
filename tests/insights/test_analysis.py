"""Statistics, verdicts, recommendations and Δm against scipy, statsmodels and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.weightstats import ttost_paired

from polytask.core.metrics import get_metric
from polytask.insights.analysis import delta_m, summarize
from polytask.insights.comparison import Scores, _combine, cell_interval, compare, holm, seeds_to_settle, verdict
from polytask.study.resolve import validate

ACC = get_metric("accuracy")


def _scores(values, rows=None, metric=ACC):
    return Scores(metric, dict(enumerate(values)), rows or {})


# ---- one comparison -------------------------------------------------------------------


def test_without_test_rows_the_comparison_is_the_paired_t_test_and_tost():
    a, b = [0.90, 0.85, 0.95, 0.91], [0.80, 0.80, 0.82, 0.85]
    c = compare(_scores(a), _scores(b), margin=0.05)
    t = stats.ttest_rel(a, b)
    assert c.p == pytest.approx(t.pvalue)
    assert c.ci(0.95) == pytest.approx(tuple(t.confidence_interval(0.95)))
    assert c.p_tost == pytest.approx(ttost_paired(np.array(a), np.array(b), -0.05, 0.05)[0])
    assert c.diff.df == 3 and c.diff.mean == pytest.approx(np.mean(np.subtract(a, b)))
    # A lower-is-better metric flips the sign, so that positive still means "a is better".
    err = compare(_scores(a, metric=get_metric("mae")), _scores(b, metric=get_metric("mae")), margin=0.05)
    assert err.diff.mean == pytest.approx(-c.diff.mean) and err.p == pytest.approx(c.p)


def test_satterthwaite_degrees_of_freedom_by_hand():
    se, df = _combine(sd=0.02, n=5, row_var=0.0001)
    seed_var = 0.02**2 / 5
    assert se == pytest.approx(math.sqrt(seed_var + 0.0001))
    assert df == pytest.approx((seed_var + 0.0001) ** 2 / (seed_var**2 / 4))
    assert _combine(0.0, 5, 0.0001) == (pytest.approx(0.01), math.inf)


def _rows(rng, n_rows, accuracy, n_classes=3):
    y = rng.integers(0, n_classes, n_rows)
    right = rng.uniform(size=n_rows) < accuracy
    guess = np.where(right, y, (y + 1) % n_classes)
    return y, np.eye(n_classes)[guess] * 0.8 + 0.2 / n_classes


def _onehot(labels, k=3):
    return np.eye(k)[labels]


def _two_way(rng, n_seeds=4, n=400, row_effect=True):
    """Per seed, the labels and predictions of two strategies on one test set: ``a`` is right
    on every row of class 0 (a row effect, when asked) and both err at random elsewhere
    (the seed-by-row interaction)."""
    y = rng.integers(0, 3, n)
    a_rows, b_rows, a, b = {}, {}, [], []
    for s in range(n_seeds):
        right_a = (rng.uniform(size=n) < 0.9) | ((y == 0) & row_effect)
        right_b = (rng.uniform(size=n) < 0.9) & ~((y == 0) & row_effect)
        a_rows[s] = (y, _onehot(np.where(right_a, y, (y + 1) % 3)))
        b_rows[s] = (y, _onehot(np.where(right_b, y, (y + 2) % 3)))
        a.append(ACC.score(*a_rows[s]))
        b.append(ACC.score(*b_rows[s]))
    return _scores(a, a_rows), _scores(b, b_rows), y


def _bootstrap(a, b, y, draws, rng):
    """Brute force: per resample of the rows (shared by the seeds), each seed's difference."""
    right = np.stack([ACC.rows(*a.rows[s]) - ACC.rows(*b.rows[s]) for s in a.by_seed])  # [S, N]
    idx = rng.integers(0, len(y), (draws, len(y)))
    return right[:, idx].mean(2).T  # [draws, S]


def test_test_rows_add_what_a_new_test_set_would_bring_beyond_the_seeds_spread():
    rng = np.random.default_rng(0)
    a, b, y = _two_way(rng)
    c = compare(a, b, margin=0.01)
    draws = _bootstrap(a, b, y, 4000, rng)
    v_mean, v_each = draws.mean(1).var(), draws.var(0).mean()
    s = len(a.by_seed)
    assert c.diff.row_var == pytest.approx(v_mean - (v_each - v_mean) / (s - 1), rel=0.15)
    sd2 = np.var(np.subtract(list(a.by_seed.values()), list(b.by_seed.values())), ddof=1)
    assert c.diff.se == pytest.approx(math.sqrt(sd2 / s + c.diff.row_var))


def test_random_disagreements_are_counted_once_and_row_effects_are_kept():
    rng = np.random.default_rng(1)
    a, b, y = _two_way(rng, n_seeds=5, row_effect=False)  # an A/A-like pair: no row effect
    noise_only = compare(a, b, margin=0.01)
    per_row = np.stack([ACC.rows(*a.rows[s]) - ACC.rows(*b.rows[s]) for s in range(5)])
    v_mean = per_row.mean(0).var() / len(y)
    assert noise_only.diff.row_var < 0.3 * v_mean  # the interaction is in the seeds' spread already
    # The same predictions on every seed: all of the resampling variance is the rows'.
    same = {s: a.rows[0] for s in range(5)}
    fixed_a, fixed_b = _scores([a.by_seed[0] + 0.001 * s for s in range(5)], same), _scores(list(b.by_seed.values()), {s: b.rows[0] for s in range(5)})
    c = compare(fixed_a, fixed_b, margin=0.01)
    assert c.diff.row_var == pytest.approx((ACC.rows(*a.rows[0]) - ACC.rows(*b.rows[0])).var() / len(y))


def test_test_row_variance_of_a_metric_without_per_row_terms_is_bootstrapped():
    rng = np.random.default_rng(1)
    rmse = get_metric("rmse")
    y = rng.normal(size=(300, 1))
    hard = (np.arange(300) < 150)[:, None]  # b errs more on the first half of the rows, on every seed
    rows_a = {s: (y, y + rng.normal(scale=0.5, size=y.shape)) for s in range(3)}
    rows_b = {s: (y, y + rng.normal(scale=0.5, size=y.shape) * np.where(hard, 2.0, 1.0)) for s in range(3)}
    a = _scores([rmse.score(*rows_a[s]) for s in range(3)], rows_a, rmse)
    b = _scores([rmse.score(*rows_b[s]) for s in range(3)], rows_b, rmse)
    c = compare(a, b, margin=0.01, reps=800, seed=3)
    again = compare(a, b, margin=0.01, reps=800, seed=4)
    assert c.diff.row_var > 0 and c.diff.row_var == pytest.approx(again.diff.row_var, rel=0.3)


def test_a_cells_interval_stays_inside_the_metrics_range():
    from polytask.insights.comparison import clip_interval

    interval = cell_interval(_scores([0.999, 0.97, 1.0]))
    lo, hi = interval.bounds(0.95)
    assert hi > 1.0  # Student's t alone passes 1 ...
    assert clip_interval((lo, hi), ACC)[1] == 1.0  # ... the reported interval does not


# ---- verdicts -------------------------------------------------------------------------


def test_verdicts_equivalent_better_worse_inconclusive():
    base = [0.80, 0.82, 0.81, 0.83, 0.80]
    assert verdict(compare(_scores([0.802, 0.821, 0.809, 0.832, 0.801]), _scores(base), 0.01)) == "equivalent"
    assert verdict(compare(_scores([0.90, 0.93, 0.91, 0.92, 0.90]), _scores(base), 0.01)) == "better"
    assert verdict(compare(_scores([0.70, 0.71, 0.69, 0.72, 0.70]), _scores(base), 0.01)) == "worse"
    assert verdict(compare(_scores([0.85, 0.78, 0.83, 0.79, 0.84]), _scores(base), 0.01)) == "inconclusive"


def test_identical_differences_and_too_few_seeds_give_no_p_value():
    # Every seed 0.05 better: no spread to judge by. Was p = 0 and 'better' with 2 seeds.
    same = compare(_scores([0.85, 0.87, 0.86]), _scores([0.80, 0.82, 0.81]), 0.01)
    assert same.p is None and verdict(same) == "inconclusive" and "same difference" in same.reason
    two = compare(_scores([0.9, 0.95]), _scores([0.8, 0.82]), 0.01)
    assert two.p is None and verdict(two) == "inconclusive" and "needs 3" in two.reason


def test_no_spread_promises_no_number_of_seeds():
    # Every seed +0.05: the comparison cannot be tested at any n, so no seed count settles it.
    same = compare(_scores([0.85, 0.87, 0.86]), _scores([0.80, 0.82, 0.81]), 0.01)
    seeds, why = seeds_to_settle(same)
    assert seeds is None and "same difference" in why


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])


def test_seeds_to_settle_grows_with_spread_and_knows_when_seeds_cannot_help():
    base = [0.80, 0.82, 0.81]
    small = compare(_scores([0.83, 0.84, 0.85]), _scores(base), 0.01)
    noisy = compare(_scores([0.85, 0.83, 0.86]), _scores(base), 0.01)
    k_small, note = seeds_to_settle(small)
    k_noisy, _ = seeds_to_settle(noisy)
    assert note == "approximate" and 3 < k_small < k_noisy
    # The test rows' own noise dominates: more seeds cannot shrink it.
    c = compare(_scores([0.8105, 0.8205, 0.8103]), _scores(base), 0.001)
    c.diff.row_var = 0.01**2
    seeds, why = seeds_to_settle(c)
    assert seeds is None and "larger test set" in why


# ---- the study summary ---------------------------------------------------------------


def _rows(values: dict[str, list[float]], metric="accuracy_score", seconds=None, task="t", fraction=1.0, pretrain=None):
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
                    "pretrain_seconds": (pretrain or {}).get(strategy, 0.0),
                    "trainable_params": 100,
                    "backbone_params": 90,
                    "head_params": 10,
                    "train_labels": 50,
                    "val_labels": 10,
                    "status": "ok",
                    "error": None,
                }
            )
    return rows


def _config(strategies, tasks=("t",), **extra):
    return validate(
        {
            "name": "s",
            "seeds": 5,
            "tasks": {t: {"data": {"builtin": "digits"}} for t in tasks} | {"src": {"data": {"builtin": "mnist"}, "role": "source"}},
            "strategies": strategies,
            **extra,
        }
    )


def _cells(summary):
    return {(c["task"], c["strategy"], c["fraction"]): c for c in summary["cells"]}


def test_consistent_small_losses_are_never_called_the_same():
    # Every seed shows mtl 1 to 4 points below scratch (the MultiMNIST report): 'worse' with
    # 5 seeds, 'inconclusive' with 3, never a verdict of no difference.
    scratch = [0.946, 0.950, 0.941, 0.948, 0.944]
    mtl = [0.935, 0.912, 0.925, 0.938, 0.920]
    five = _cells(summarize(_rows({"scratch": scratch, "mtl": mtl}), _config(["scratch", "mtl"])))[("t", "mtl", 1.0)]
    three = _cells(summarize(_rows({"scratch": scratch[:3], "mtl": mtl[:3]}), _config(["scratch", "mtl"])))[("t", "mtl", 1.0)]
    assert five["verdict"] == "worse" and three["verdict"] == "inconclusive"
    assert three["settle"]["seeds"] > 3 and three["settle"]["note"] == "approximate"


def test_holm_is_applied_across_cells_and_raw_p_values_are_kept():
    base = [0.80, 0.82, 0.81, 0.83, 0.80]
    rows = _rows({"scratch": base, "fine-tune": [0.83, 0.83, 0.815, 0.845, 0.81], "mtl": [0.84, 0.80, 0.84, 0.83, 0.80]})
    held = _cells(summarize(rows, _config(["scratch", "fine-tune", "mtl"])))
    raw = _cells(summarize(rows, _config(["scratch", "fine-tune", "mtl"], analysis={"correction": "none"})))
    ft = held[("t", "fine-tune", 1.0)]
    assert ft["p_value"] == pytest.approx(min(1.0, 2 * ft["p_value_raw"])) or ft["p_value"] == pytest.approx(held[("t", "mtl", 1.0)]["p_value"])
    assert ft["p_value_raw"] == raw[("t", "fine-tune", 1.0)]["p_value"]
    assert all(c["p_value"] >= c["p_value_raw"] for c in held.values() if c["p_value"] is not None)


def test_a_cheaper_strategy_is_recommended_only_when_non_inferior():
    # The demo at 5%: fine-tune clearly better than scratch, feature extraction not; feature
    # extraction is cheaper but clearly below fine-tune, so it is not the recommendation.
    rows = _rows(
        {
            "scratch": [0.911, 0.905, 0.92, 0.90, 0.915],
            "feature-extraction": [0.925, 0.90, 0.935, 0.93, 0.91],
            "fine-tune": [0.948, 0.945, 0.955, 0.94, 0.950],
        },
        seconds={"scratch": 2.0, "feature-extraction": 3.0, "fine-tune": 5.0},
        pretrain={"feature-extraction": 10.0, "fine-tune": 10.0},
    )
    (rec,) = summarize(rows, _config(["scratch", "feature-extraction", "fine-tune"]))["recommendations"]
    assert rec["best"] == "fine-tune" and rec["confidence"] == "clear" and "beats scratch" in rec["reason"]
    # Equivalent and much cheaper: the cheaper one.
    rows = _rows({"scratch": [0.80, 0.82, 0.81, 0.83, 0.80], "fine-tune": [0.801, 0.822, 0.812, 0.829, 0.802]}, seconds={"scratch": 1.0, "fine-tune": 5.0})
    (rec,) = summarize(rows, _config(["scratch", "fine-tune"]))["recommendations"]
    assert rec["best"] == "scratch" and rec["highest_mean"] == "fine-tune" and "80% less" in rec["reason"] and "margin" in rec["reason"]


def test_an_undecided_best_mean_is_reported_as_inconclusive():
    rows = _rows({"scratch": [0.80, 0.82, 0.81, 0.83, 0.80], "mtl": [0.84, 0.80, 0.83, 0.84, 0.81]}, seconds={"scratch": 1.0, "mtl": 1.1})
    (rec,) = summarize(rows, _config(["scratch", "mtl"]))["recommendations"]
    assert rec["best"] == "mtl" and rec["confidence"] == "inconclusive" and "seeds would settle it (approximate)" in rec["reason"]


def test_with_withheld_labels_only_strategies_that_never_read_them_are_recommended():
    cfg = validate(
        {
            "name": "da",
            "seeds": 5,
            "tasks": {"t": {"data": {"builtin": "digits"}, "unlabeled": True}, "src": {"data": {"builtin": "mnist"}, "role": "source"}},
            "strategies": ["scratch", "domain-adapt:source-only", "domain-adapt:dann", "domain-adapt:mcc"],
        }
    )
    rows = _rows(
        {
            "scratch": [0.99, 0.985, 0.99, 0.988, 0.987],
            "domain-adapt:source-only": [0.66, 0.68, 0.67, 0.65, 0.69],
            "domain-adapt:dann": [0.55, 0.85, 0.70, 0.62, 0.86],
            "domain-adapt:mcc": [0.85, 0.86, 0.84, 0.87, 0.86],
        }
    )
    summary = summarize(rows, cfg)
    (rec,) = summary["recommendations"]
    assert rec["best"] == "domain-adapt:mcc" and "withheld" in rec["reason"]
    cells = _cells(summary)
    assert cells[("t", "domain-adapt:mcc", 1.0)]["reference"] == "domain-adapt:source-only"
    # A 27-point gap to scratch is never 'within noise': the DA cells are not compared with scratch at all.
    assert cells[("t", "domain-adapt:dann", 1.0)]["verdict"] in ("inconclusive", "better")


def test_study_level_answer_one_shared_model_for_many_targets():
    tasks = [f"y{i}" for i in range(4)]
    rows = []
    rng = np.random.default_rng(0)
    for t in tasks:
        base = 0.8 + rng.normal(scale=0.01, size=5)
        rows += _rows({"scratch": list(base), "mtl": list(base + rng.normal(scale=0.001, size=5))}, task=t, seconds={"scratch": 1.0, "mtl": 3.0})
    for r in rows:
        if r["strategy"] == "mtl":
            r["model_id"] = f"mtl/1/seed{r['seed']}"
    summary = summarize(rows, _config(["scratch", "mtl"], tasks=tasks))
    (answer,) = summary["study_answer"]
    assert answer["verdict"] == "equivalent" and answer["recommended"]
    assert answer["serve_params"] == {"shared": 90 + 4 * 10, "per_target": 4 * 100}
    assert "equivalent within the margin on every task" in answer["answer"] and "3.1x as many" in answer["answer"]
    cost = {c["strategy"]: c for c in summary["cost"]}
    assert cost["mtl"]["models"] == 5 and cost["scratch"]["models"] == 20


# The MultiMNIST example (5 seeds, test accuracy): balancing methods of one shared model
# against scratch on two targets (four of its six methods); each is 1-2 points below, raw p 0.01-0.05.
MULTI_MNIST = {
    "left": {
        "scratch": [0.9487, 0.9547, 0.942, 0.9533, 0.9513],
        "mtl:ew": [0.9353, 0.9333, 0.9273, 0.9393, 0.948],
        "mtl:uw": [0.94, 0.938, 0.9307, 0.936, 0.936],
        "mtl:pcgrad": [0.936, 0.9447, 0.94, 0.9333, 0.9467],
        "mtl:famo": [0.9413, 0.9393, 0.9367, 0.9347, 0.9313],
    },
    "right": {
        "scratch": [0.9433, 0.9333, 0.9373, 0.9367, 0.9387],
        "mtl:ew": [0.9233, 0.932, 0.934, 0.9207, 0.9213],
        "mtl:uw": [0.9447, 0.924, 0.9287, 0.9233, 0.918],
        "mtl:pcgrad": [0.9113, 0.9313, 0.9247, 0.918, 0.9213],
        "mtl:famo": [0.9213, 0.918, 0.922, 0.9007, 0.9313],
    },
}


@pytest.mark.parametrize("correction", ["holm", "none"])
def test_the_study_answer_and_the_cells_give_one_verdict_per_comparison(correction):
    # The study answer compares each shared model with the same scratch cells as the table:
    # one comparison, one verdict, whatever the correction; "worse on" lists only what the
    # table calls worse.
    strategies = list(MULTI_MNIST["left"])
    rows = [r for task, values in MULTI_MNIST.items() for r in _rows(values, task=task)]
    summary = summarize(rows, _config(strategies, tasks=list(MULTI_MNIST), analysis={"correction": correction}))
    cells = _cells(summary)
    assert len(summary["study_answer"]) == 4
    claims = 0
    for answer in summary["study_answer"]:
        for p in answer["per_task"]:
            cell = cells[(p["task"], answer["strategy"], 1.0)]
            assert p["against"] == cell["reference"] == "scratch"
            assert p["verdict"] == cell["verdict"]
            listed = answer["answer"].split(" targets: ")[1].split(";")[0]
            assert (p["task"] in listed and "worse on" in listed) == (cell["verdict"] == "worse")
            claims += cell["verdict"] == "worse"
    # Uncorrected, most of the eight comparisons are called worse; Holm over the family keeps fewer.
    assert claims >= 6 if correction == "none" else claims <= 3


def test_equivalence_on_every_task_is_an_intersection_union_test_corrected_across_shared_models():
    # Per shared model, "equivalent on every task" holds at 5% when each task's TOST does (the
    # largest p counts); with several shared models Holm runs over those p-values.
    rng = np.random.default_rng(1)
    tasks = ["a", "b"]
    rows = []
    for t in tasks:
        base = 0.8 + rng.normal(scale=0.01, size=5)
        values = {"scratch": list(base)} | {m: list(base + rng.normal(scale=0.003, size=5)) for m in ("mtl:ew", "mtl:uw", "mtl:famo")}
        rows += _rows(values, task=t)
    summary = summarize(rows, _config(["scratch", "mtl:ew", "mtl:uw", "mtl:famo"], tasks=tasks))
    raw = summarize(rows, _config(["scratch", "mtl:ew", "mtl:uw", "mtl:famo"], tasks=tasks, analysis={"correction": "none"}))
    for held, free in zip(summary["study_answer"], raw["study_answer"]):
        assert free["p_equivalence"] == pytest.approx(max(p["p_equivalence_raw"] for p in free["per_task"]))
        assert held["p_equivalence"] >= free["p_equivalence"]
        assert (held["verdict"] == "equivalent") == (held["p_equivalence"] < 0.05)
    ordered = sorted(f["p_equivalence"] for f in raw["study_answer"])
    assert min(h["p_equivalence"] for h in summary["study_answer"]) == pytest.approx(min(1.0, 3 * ordered[0]))


def test_a_task_without_rows_at_one_fraction_is_left_out_not_a_crash():
    # A partial study (or a cell whose every run failed): task b has no rows at 0.1 yet.
    rows = _rows({"scratch": [0.8, 0.82, 0.81], "mtl": [0.81, 0.83, 0.80]}, task="a", fraction=0.1)
    rows += _rows({"scratch": [0.8, 0.82, 0.81], "mtl": [0.81, 0.83, 0.80]}, task="a") + _rows({"scratch": [0.7, 0.72, 0.71]}, task="b")
    summary = summarize(rows, _config(["scratch", "mtl"], tasks=("a", "b"), fractions=[0.1, 1.0]))
    assert {(c["task"], c["fraction"]) for c in summary["cells"]} == {("a", 0.1), ("a", 1.0), ("b", 1.0)}


def test_scratch_on_top_lists_only_what_is_unsettled_against_it():
    # Scratch has the highest mean; a domain adaptation method 'better' than source-only is
    # no claim about scratch, and 'worse or equivalent' must not be said of it.
    cfg = _config(["scratch", "domain-adapt:source-only", "domain-adapt:mcc"])
    rows = _rows(
        {
            "scratch": [0.95, 0.96, 0.955, 0.952, 0.958],
            "domain-adapt:source-only": [0.60, 0.62, 0.61, 0.63, 0.60],
            "domain-adapt:mcc": [0.80, 0.83, 0.80, 0.84, 0.81],
        }
    )
    summary = summarize(rows, cfg)
    assert _cells(summary)[("t", "domain-adapt:mcc", 1.0)]["verdict"] == "better"
    (rec,) = summary["recommendations"]
    assert rec["best"] == "scratch" and "worse or equivalent" not in rec["reason"]
    assert "domain-adapt:mcc was compared with domain-adapt:source-only, not with scratch" in rec["reason"]


def test_failed_rows_count_only_while_unfixed_and_n_paired_is_reported():
    rows = _rows({"scratch": [0.8, 0.81, 0.79, 0.8], "mtl": [0.85, 0.86, 0.84]})
    failed = {**rows[-1], "run_id": "t/mtl/1/seed3", "seed": 3, "status": "failed", "error": "DivergedError: nan", "test": None}
    s = summarize([*rows, failed], _config(["scratch", "mtl"]))
    assert s["runs"]["failed"] == 1 and s["failed"][0]["error"].startswith("DivergedError")
    retried = {**failed, "status": "ok", "error": None, "test": 0.85}
    s = summarize([*rows, failed, retried], _config(["scratch", "mtl"]))
    assert s["runs"]["failed"] == 0 and s["runs"]["ok"] == 8
    s = summarize(rows + _rows({"scratch": [0.8]}, fraction=0.5), _config(["scratch", "mtl"]))
    mtl = _cells(s)[("t", "mtl", 1.0)]
    assert mtl["n"] == 3 and mtl["n_paired"] == 3
    # A run whose test metric came out undefined is a failure with that reason, never dropped.
    undefined = {**rows[0], "run_id": "t/mtl/1/seed3", "strategy": "mtl", "seed": 3, "test": math.nan}
    s = summarize([*rows, undefined], _config(["scratch", "mtl"]))
    assert s["runs"]["failed"] == 1 and "not finite" in s["failed"][0]["error"]


def test_default_margins_and_a_given_one():
    rows = _rows({"scratch": [2.0, 2.1, 2.2, 2.0, 2.1], "mtl": [1.9, 2.05, 2.1, 1.95, 2.0]}, metric="root_mean_squared_error")
    cell = _cells(summarize(rows, _config(["scratch", "mtl"])))[("t", "mtl", 1.0)]
    assert cell["margin"] == pytest.approx(0.01 * 2.08) and cell["delta_vs_scratch"] == pytest.approx(0.08)
    cfg = validate({"name": "s", "tasks": {"t": {"data": {"builtin": "digits"}, "margin": 0.5}, "src": {"data": {"builtin": "mnist"}, "role": "source"}}})
    cell = _cells(summarize(rows, cfg))[("t", "mtl", 1.0)]
    assert cell["margin"] == 0.5 and cell["verdict"] == "equivalent"


def test_delta_m_by_hand():
    # accuracy 0.9 vs 0.8 -> +12.5%; rmse 1.5 vs 2.0 (lower better) -> +25%; mean 18.75%.
    value = delta_m({"a": 0.9, "b": 1.5}, {"a": 0.8, "b": 2.0}, {"a": "accuracy_score", "b": "root_mean_squared_error"})
    assert value == pytest.approx(18.75)
