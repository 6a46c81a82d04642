"""From run rows to the study's answer: per-cell statistics, paired tests against scratch,
negative-transfer verdicts, Δm, cost, and a recommendation per task and fraction.

Conventions:
- Deltas are signed so that positive means better than the reference, in the metric's
  own units (for a lower-is-better metric: reference minus strategy).
- Tests are two-sided paired t-tests over seeds (``scipy.stats.ttest_rel``): the same
  seed gives every strategy the same validation carve, training subset and (where the
  architecture matches) initialization, so differences are paired.
- Each cell is tested against its ``reference``: scratch, except a ``domain-adapt:<method>``
  cell when the study has ``domain-adapt:source-only``, which is tested against that (same
  task, fraction and seed: paired), so a method is judged by what adaptation adds to the
  same source training. ``p_value`` and ``verdict`` refer to the reference;
  ``delta_vs_scratch`` is filled only where the reference is scratch.
- Δm (Maninis et al. 2019) is the mean over target tasks of the signed relative
  difference to scratch, in percent; positive means better than scratch.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
from scipy import stats

from polytask.config import StudyConfig
from polytask.tasks import higher_is_better

ALPHA = 0.05
TEST_NAME = "paired t-test over seeds, two-sided (scipy.stats.ttest_rel), alpha 0.05"
DOMAIN_ADAPT = "domain-adapt"
DA_REFERENCE = "domain-adapt:source-only"


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float, tuple[float, float] | None]:
    """Mean, sample standard deviation and Student-t confidence interval of ``values``.

    With one value the interval is undefined (``None``) and the deviation is 0.
    """
    x = np.asarray(values, dtype=float)
    m = float(x.mean())
    if len(x) < 2:
        return m, 0.0, None
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1)) * sd / math.sqrt(len(x))
    return m, sd, (m - half, m + half)


def paired(a: dict[int, float], b: dict[int, float], sign: float) -> tuple[float | None, float | None, int]:
    """Mean signed difference ``sign * (a - b)`` over shared seeds, its paired-t p-value, and n.

    When every difference is the same the t statistic is undefined; the p-value is then
    0 for a non-zero difference and 1 for none (no variation means no noise to test).
    """
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None, None, 0
    d = np.array([sign * (a[s] - b[s]) for s in seeds])
    if len(d) < 2:
        return float(d.mean()), None, len(d)
    if np.allclose(d, d[0], rtol=0, atol=1e-12):
        return float(d.mean()), (0.0 if abs(d[0]) > 1e-12 else 1.0), len(d)
    p = float(stats.ttest_rel(sign * np.array([a[s] for s in seeds]), sign * np.array([b[s] for s in seeds])).pvalue)
    return float(d.mean()), p, len(d)


def _verdict(delta: float | None, p: float | None) -> str:
    if p is None or delta is None:
        return "inconclusive"
    if p < ALPHA:
        return "better" if delta > 0 else "worse"
    return "same"


def _ordered(values, order: list) -> list:
    return sorted(set(values), key=lambda v: (order.index(v) if v in order else len(order), v))


def summarize(rows: list[dict[str, Any]], config: StudyConfig) -> dict[str, Any]:
    """The study summary written to ``summary.json``.

    Args:
        rows: results rows (only ``status: ok`` rows enter the statistics).
        config: the study's config (names, order of tasks and strategies).
    """
    ok = [r for r in rows if r.get("status") == "ok" and r.get("test") is not None and math.isfinite(r["test"])]
    failed = [{"run_id": r["run_id"], "error": r.get("error")} for r in rows if r.get("status") != "ok"]
    # Last row wins for a run id (a resumed study may re-run a failed cell).
    latest: dict[str, dict] = {}
    for r in ok:
        latest[r["run_id"]] = r
    by_cell: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for r in latest.values():
        by_cell[(r["task"], r["strategy"], r["fraction"])][r["seed"]] = r

    tasks = _ordered([k[0] for k in by_cell], config.targets)
    strategies = _ordered([k[1] for k in by_cell], config.strategies)
    fractions = sorted({k[2] for k in by_cell})
    metric_of = {r["task"]: r["metric"] for r in latest.values()}

    def scores(task, strategy, fraction) -> dict[int, float]:
        return {s: r["test"] for s, r in by_cell.get((task, strategy, fraction), {}).items()}

    cells = []
    for task in tasks:
        sign = 1.0 if higher_is_better(metric_of[task]) else -1.0
        for fraction in fractions:
            base = scores(task, "scratch", fraction)
            for strategy in strategies:
                vals = scores(task, strategy, fraction)
                if not vals:
                    continue
                reference = _reference(strategy, strategies)
                m, sd, ci = mean_ci(list(vals.values()))
                cell = {
                    "task": task,
                    "strategy": strategy,
                    "fraction": fraction,
                    "metric": metric_of[task],
                    "mean": m,
                    "std": sd,
                    "ci95": list(ci) if ci else None,
                    "n": len(vals),
                    "seeds": sorted(vals),
                    "reference": reference,
                    "delta_vs_reference": None,
                    "delta_vs_scratch": None,
                    "p_value": None,
                    "verdict": "baseline" if strategy == "scratch" else "inconclusive",
                    "train_seconds": float(np.mean([r["train_seconds"] for r in by_cell[(task, strategy, fraction)].values()])),
                }
                selection = _selection(by_cell[(task, strategy, fraction)].values())
                if selection:
                    cell["selection"] = selection
                ref = base if reference == "scratch" else scores(task, reference, fraction)
                if strategy != "scratch" and ref:
                    delta, p, _ = paired(vals, ref, sign)
                    cell.update(delta_vs_reference=delta, p_value=p, verdict=_verdict(delta, p))
                    if reference == "scratch":
                        cell.update(delta_vs_scratch=delta)
                cells.append(cell)

    return {
        "study": config.name,
        "test": TEST_NAME,
        "alpha": ALPHA,
        "sign_convention": (
            "delta_vs_reference, delta_vs_scratch and delta_m_percent: positive = better than the cell's reference / scratch / scratch, "
            "in the metric's units / in percent"
        ),
        "tasks": tasks,
        "strategies": strategies,
        "fractions": fractions,
        "cells": cells,
        "recommendations": _recommend(cells, by_cell, tasks, fractions, metric_of),
        "by_strategy": _by_strategy(cells, tasks, strategies),
        "delta_m": _delta_m(cells, tasks, strategies, fractions),
        "cost": _cost(latest.values(), tasks, strategies),
        # Augmentation is part of the comparison's conditions: the same for every strategy.
        "augment": {n: dict(t.augment) for n, t in config.tasks.items() if t.augment},
        "warnings": _version_warnings(latest.values()),
        "runs": {"ok": len(latest), "failed": len(failed), "planned": config.seeds * len(config.targets) * len(config.fractions) * len(config.strategies)},
        "failed": failed,
    }


def _version_warnings(rows) -> list[str]:
    """One line per library whose version differs between the rows analysed."""
    seen: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        for lib, version in (r.get("versions") or {}).items():
            seen[lib][version] += 1
    return [
        f"runs were made with different {lib} versions ({', '.join(f'{v}: {n} run(s)' for v, n in sorted(counts.items()))}); "
        "their numbers may differ for that reason alone"
        for lib, counts in seen.items()
        if len(counts) > 1
    ]


# A tied strategy must train in under this share of the best one's time to be recommended instead.
CHEAPER = 0.8


def _reference(strategy: str, strategies: list[str]) -> str:
    """What a strategy's verdict compares it with: scratch, or for a domain adaptation method
    the study's ``domain-adapt:source-only`` (the same source training without adaptation)."""
    base, _, method = strategy.partition(":")
    if base == DOMAIN_ADAPT and method != "source-only" and DA_REFERENCE in strategies:
        return DA_REFERENCE
    return "scratch"


def _selection(runs) -> dict[str, Any] | None:
    """How checkpoints were chosen without target labels (domain adaptation runs), over seeds.

    ``validator`` chose each run's epoch; ``oracle_gap`` is how much target validation
    metric that choice lost against the best epoch (the oracle, which needs the labels).
    """
    extras = [r.get("extra") or {} for r in runs]
    gaps = [e["oracle_gap"] for e in extras if e.get("oracle_gap") is not None]
    if not gaps:
        return None
    validators = sorted({e.get("validator") for e in extras if e.get("validator")})
    return {"validator": ", ".join(validators), "oracle_gap": float(np.mean(gaps)), "oracle_gap_max": float(np.max(gaps)), "n": len(gaps)}


def _run_cost(r: dict) -> float:
    return float(r["train_seconds"]) + float(r.get("pretrain_seconds") or 0.0)


def _recommend(cells, by_cell, tasks, fractions, metric_of) -> list[dict[str, Any]]:
    """Per task and fraction: the best strategy, or a cheaper one within noise of it."""
    out = []
    for task in tasks:
        sign = 1.0 if higher_is_better(metric_of[task]) else -1.0
        for fraction in fractions:
            here = [c for c in cells if c["task"] == task and c["fraction"] == fraction]
            if not here:
                continue
            best = max(here, key=lambda c: sign * c["mean"])
            runs = {c["strategy"]: by_cell[(task, c["strategy"], fraction)] for c in here}
            cost = {s: float(np.mean([_run_cost(r) for r in rs.values()])) for s, rs in runs.items()}
            best_scores = {s: r["test"] for s, r in runs[best["strategy"]].items()}
            tied, untested = [], []
            for c in here:
                if c is best:
                    continue
                delta, p, _ = paired({s: r["test"] for s, r in runs[c["strategy"]].items()}, best_scores, sign)
                if p is None:
                    untested.append(c["strategy"])
                elif p >= ALPHA:
                    tied.append((c, delta, p))
            # Wall times vary by several percent from run to run (more on a shared machine):
            # only a clearly cheaper strategy is worth recommending over the best mean.
            cheaper = [t for t in tied if cost[t[0]["strategy"]] < CHEAPER * cost[best["strategy"]]]
            unit = best["metric"]
            if cheaper:
                pick, delta, p = min(cheaper, key=lambda t: cost[t[0]["strategy"]])
                reason = (
                    f"{pick['strategy']} ({pick['mean']:.4g}) is within noise of the best, {best['strategy']} "
                    f"({best['mean']:.4g}; difference {delta:+.4g} {unit}, p={p:.2g}), and needs "
                    f"{1 - cost[pick['strategy']] / max(cost[best['strategy']], 1e-9):.0%} less training time "
                    f"({cost[pick['strategy']]:.3g} s against {cost[best['strategy']]:.3g} s per run)"
                )
                out.append({"task": task, "fraction": fraction, "best": pick["strategy"], "highest_mean": best["strategy"], "reason": reason})
                continue
            if best["strategy"] == "scratch":
                reason = f"scratch has the best mean ({best['mean']:.4g} {unit}); no strategy beats it"
            else:
                d, p, ref = best["delta_vs_reference"], best["p_value"], best["reference"]
                vs = f"{d:+.4g} {unit} vs {ref}, p={p:.2g}" if d is not None and p is not None else f"no paired {ref} comparison"
                reason = f"{best['strategy']} has the best mean ({best['mean']:.4g} {unit}; {vs})"
            if tied:
                reason += "; within noise of it but not cheaper: " + ", ".join(t[0]["strategy"] for t in tied)
            elif untested:
                reason += "; too few paired seeds to test against: " + ", ".join(untested)
            elif len(here) > 1:
                reason += "; every other strategy is significantly worse"
            out.append({"task": task, "fraction": fraction, "best": best["strategy"], "highest_mean": best["strategy"], "reason": reason})
    return out


def _by_strategy(cells, tasks, strategies) -> list[dict[str, Any]]:
    """Per task and strategy: means over fractions of the metric and of the delta vs scratch."""
    out = []
    for task in tasks:
        for strategy in strategies:
            cs = [c for c in cells if c["task"] == task and c["strategy"] == strategy]
            if not cs:
                continue
            deltas = [c["delta_vs_scratch"] for c in cs if c["delta_vs_scratch"] is not None]
            out.append(
                {
                    "task": task,
                    "strategy": strategy,
                    "metric": cs[0]["metric"],
                    "mean_over_fractions": float(np.mean([c["mean"] for c in cs])),
                    "delta_vs_scratch_over_fractions": float(np.mean(deltas)) if deltas else None,
                    "verdicts": {str(c["fraction"]): c["verdict"] for c in cs},
                }
            )
    return out


def delta_m(strategy_means: dict[str, float], scratch_means: dict[str, float], metrics: dict[str, str]) -> float:
    """Δm in percent: mean over tasks of ``s_t (M_t - B_t) / B_t``, ``s_t = +1`` when higher is better.

    Positive means better than the baseline ``B`` (Maninis et al. 2019 define it with the
    opposite sign, as a drop; this keeps one sign convention across polytask).
    """
    terms = [
        (1.0 if higher_is_better(metrics[t]) else -1.0) * (strategy_means[t] - scratch_means[t]) / abs(scratch_means[t])
        for t in strategy_means
    ]
    return 100.0 * float(np.mean(terms))


def _delta_m(cells, tasks, strategies, fractions) -> list[dict[str, Any]]:
    out = []
    for fraction in fractions:
        at = {(c["task"], c["strategy"]): c for c in cells if c["fraction"] == fraction}
        for strategy in strategies:
            if strategy == "scratch":
                continue
            have = [t for t in tasks if (t, strategy) in at and (t, "scratch") in at and at[(t, "scratch")]["mean"] != 0]
            if len(have) != len(tasks) or not have:
                continue
            value = delta_m(
                {t: at[(t, strategy)]["mean"] for t in have},
                {t: at[(t, "scratch")]["mean"] for t in have},
                {t: at[(t, strategy)]["metric"] for t in have},
            )
            out.append({"strategy": strategy, "fraction": fraction, "tasks": have, "delta_m_percent": value})
    return out


def _cost(rows, tasks, strategies) -> list[dict[str, Any]]:
    """Training time, trainable parameters and what serving every target task takes.

    Serving all ``T`` target tasks takes one model per task for single-task strategies
    (``T`` backbones) and one shared backbone with ``T`` heads for ``mtl``.
    """
    rows = list(rows)
    out = []
    for strategy in strategies:
        rs = [r for r in rows if r["strategy"] == strategy]
        if not rs:
            continue
        per_task = {t: [r for r in rs if r["task"] == t] for t in tasks}
        per_task = {t: v for t, v in per_task.items() if v}
        backbone = {t: v[0]["backbone_params"] for t, v in per_task.items()}
        heads = {t: v[0]["head_params"] for t, v in per_task.items()}
        shared = strategy.partition(":")[0] == "mtl"
        serve = (max(backbone.values()) + sum(heads.values())) if shared else sum(backbone[t] + heads[t] for t in per_task)
        pre = {(r["task"], r["seed"]): r.get("pretrain_seconds") or 0.0 for r in rs}
        out.append(
            {
                "strategy": strategy,
                "train_seconds_mean": float(np.mean([r["train_seconds"] for r in rs])),
                "pretrain_seconds_mean": float(np.mean(list(pre.values()))),
                "trainable_params": int(np.mean([r["trainable_params"] for r in rs])),
                "serve_params_all_targets": int(serve),
                "backbone_passes_per_input": 1 if shared else len(per_task),
                "runs": len(rs),
            }
        )
    return out
