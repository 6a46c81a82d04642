"""From run rows to the study's answer: per-cell intervals, paired verdicts against a
reference with a practical margin, negative transfer, the recommendation per task and
fraction and the study-level answer (one shared model or a model per target; both in
:mod:`polytask.insights.recommend`), Δm and cost.

Conventions:
- Differences are signed so that positive means better than the reference, in the
  metric's own units (for a lower-is-better metric: reference minus strategy).
- Each cell is compared with its ``reference``: scratch; for a ``domain-adapt:<method>``
  cell, the study's ``domain-adapt:source-only`` when present (the same source training
  without adaptation). Comparisons are paired over seeds and over test rows
  (:mod:`polytask.insights.comparison`), with a margin per task (``tasks.<t>.margin``; default
  0.01 for bounded scores, 1% of scratch's value for error metrics).
- Verdicts: ``equivalent`` (TOST within the margin), ``better`` / ``worse`` (``worse`` is
  negative transfer), ``inconclusive`` (neither; with an approximate number of seeds
  that would settle it), ``baseline`` for scratch. "Not significant" is never reported as
  "the same". With ``analysis.correction: holm`` (default) the p-values of all
  non-baseline cells, with the study answer's comparisons against a strategy other than
  the cell's reference, are Holm-adjusted as one family, once for the difference tests and
  once for the equivalence tests; raw p-values are kept. One comparison has one verdict
  wherever the summary states it.
- A recommendation picks only what the user can run (with the target's labels withheld,
  strategies that never read them), prefers a cheaper strategy only when it is
  non-inferior to the best one, and says when the answer is inconclusive.
- Δm (Maninis et al. 2019) is the mean over target tasks of the signed relative
  difference to scratch, in percent; positive means better than scratch.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from polytask.config import StudyConfig
from polytask.core.metrics import get_metric
from polytask.core.tasks import higher_is_better
from polytask.insights.cells import Cells, RowLookup, ordered, reference
from polytask.insights.comparison import ALPHA, Comparison, cell_interval, clip_interval, holm, seeded, seeds_to_settle, verdict
from polytask.insights.recommend import joint_comparisons, recommend, study_answer
from polytask.strategies import ssl_source

TEST_NAME = (
    "paired over seeds and test rows: t interval of the mean difference with the seeds' spread and the test rows' "
    "sampling error (Welch-Satterthwaite df); equivalence by two one-sided tests (TOST) within the task's margin; alpha 0.05"
)


def summarize(rows: list[dict[str, Any]], config: StudyConfig, lookup: RowLookup | None = None, tuning: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The study summary written to ``summary.json``.

    Args:
        rows: results rows; for each run id the last row counts (a resumed study may have
            re-run a failed cell), and only ``status: ok`` rows enter the statistics.
        config: the study's config (names, order, margins, correction).
        lookup: ``lookup(row)`` returns that run's test labels and predictions (None when
            not kept); without them intervals cover the seeds' spread only.
        tuning: the ``tune:`` searches (:func:`polytask.study.tune.load_tunings`): the values
            chosen per strategy and fraction, and what the search cost.
    """
    latest: dict[str, dict] = {}
    for r in rows:
        latest[r["run_id"]] = r
    ok = [r for r in latest.values() if r.get("status") == "ok" and r.get("test") is not None and math.isfinite(r["test"])]
    kept = {r["run_id"] for r in ok}
    failed = [
        {"run_id": r["run_id"], "error": r.get("error") if r.get("status") != "ok" else f"its test metric is not finite ({r.get('test')})"}
        for r in latest.values()
        if r["run_id"] not in kept
    ]
    cells_by = Cells(ok, lookup, config.analysis.bootstrap)
    keys = list(cells_by.by_cell)
    tasks = ordered([k[0] for k in keys], config.targets)
    strategies = ordered([k[1] for k in keys], config.strategies)
    fractions = sorted({k[2] for k in keys})

    cells, comparisons = [], []
    for task in tasks:
        for fraction in fractions:
            if not any((task, s, fraction) in cells_by.by_cell for s in strategies):
                continue  # a partial study, or a cell whose every run failed
            margin = _margin(config, cells_by, task, fraction)
            for strategy in strategies:
                key = (task, strategy, fraction)
                if key not in cells_by.by_cell:
                    continue
                cell = _cell(cells_by, key, strategies, margin)
                if strategy != "scratch":
                    c = cells_by.compare(key, (task, cell["reference"], fraction), margin)
                    if c is not None:
                        comparisons.append((cell, c))
                cells.append(cell)
    # The study answer's comparisons against a strategy other than the cell's reference are
    # claims too: they join the cells' family, so every verdict in the summary is corrected together.
    joint = joint_comparisons(config, cells, cells_by, tasks, fractions, strategies)
    extra = [g for _, _, group in joint for g in group if g["against"]["strategy"] != g["cell"]["reference"]]
    _verdicts(comparisons, config.analysis.correction, extra)
    for _, _, group in joint:
        for g in group:
            if g["against"]["strategy"] == g["cell"]["reference"]:
                g["p"], g["p_tost"] = g["cell"]["p_value"], g["cell"]["p_equivalence"]

    return {
        "study": config.name,
        "test": TEST_NAME,
        "alpha": ALPHA,
        "correction": config.analysis.correction,
        "sign_convention": (
            "delta_vs_reference, delta_vs_scratch and delta_m_percent: positive = better than the cell's reference / scratch / scratch, "
            "in the metric's units / in percent"
        ),
        "tasks": tasks,
        "strategies": strategies,
        "fractions": fractions,
        "cells": cells,
        "recommendations": recommend(config, cells, cells_by, tasks, fractions),
        "study_answer": study_answer(joint, cells, tasks, config.analysis.correction),
        "by_strategy": _by_strategy(cells, tasks, strategies),
        "delta_m": _delta_m(cells, tasks, strategies, fractions),
        "cost": _cost(ok, config, strategies, tuning or []),
        "pretraining": _pretraining(ok, config),
        "tuning": tuning or [],
        # Augmentation is part of the comparison's conditions: the same for every strategy.
        "augment": {n: dict(t.augment) for n, t in config.tasks.items() if t.augment},
        "warnings": _version_warnings(ok),
        "runs": {"ok": len(ok), "failed": len(failed), "planned": config.seeds * len(config.targets) * len(config.fractions) * len(config.strategies)},
        "failed": failed,
    }


def _margin(config: StudyConfig, cells_by: Cells, task: str, fraction: float) -> float:
    """The task's practical margin: the config's, else its metric's default (0.01, or 1%
    of scratch's mean for error metrics)."""
    given = config.tasks[task].margin if task in config.tasks else None
    if given is not None:
        return float(given)
    base = cells_by.scores((task, "scratch", fraction))
    any_key = next(k for k in cells_by.by_cell if k[0] == task and k[2] == fraction)
    scores = base or cells_by.scores(any_key)  # the caller checked that the task has rows here
    return scores.metric.default_margin(float(np.mean(list(scores.by_seed.values()))))


def _cell(cells_by: Cells, key: tuple, strategies: list[str], margin: float) -> dict[str, Any]:
    task, strategy, fraction = key
    runs = cells_by.by_cell[key]
    scores = cells_by.scores(key)
    interval = cell_interval(scores, cells_by.reps, seeded(*key))
    labels = [r.get("train_labels", 0) + r.get("val_labels", 0) for r in runs.values() if "train_labels" in r]
    cell = {
        "task": task,
        "strategy": strategy,
        "fraction": fraction,
        "metric": scores.metric.key,
        "mean": interval.mean,
        "std": interval.sd,
        "ci95": list(clip_interval(interval.bounds(0.95), scores.metric) or []) or None,
        "n": interval.n,
        "seeds": sorted(runs),
        "test_rows_resampled": interval.row_var is not None,
        "labels_used": float(np.mean(labels)) if labels else None,
        "reference": reference(strategy, strategies) if strategy != "scratch" else None,
        "margin": margin,
        "delta_vs_reference": None,
        "delta_vs_scratch": None,
        "n_paired": None,
        "p_value": None,
        "p_equivalence": None,
        "verdict": "baseline" if strategy == "scratch" else "inconclusive",
        "train_seconds": float(np.mean([r["train_seconds"] for r in runs.values()])),
        "pretrain_seconds": float(np.mean([r.get("pretrain_seconds") or 0.0 for r in runs.values()])),
        "backbone_params": int(np.mean([r.get("backbone_params", 0) for r in runs.values()])),
        "head_params": int(np.mean([r.get("head_params", 0) for r in runs.values()])),
    }
    selection = _selection(runs.values())
    if selection:
        cell["selection"] = selection
    return cell


def _verdicts(comparisons: list[tuple[dict, Comparison]], correction: str, extra: list[dict]) -> None:
    """Fill each compared cell's difference, interval, p-values (corrected) and verdict, and the
    corrected ``p`` and ``p_tost`` of the ``extra`` comparisons (dicts with a ``comparison``)."""
    every = [c for _, c in comparisons] + [g["comparison"] for g in extra]
    raw_p = [c.p for c in every]
    raw_tost = [c.p_tost for c in every]
    p_adj, tost_adj = (holm(raw_p), holm(raw_tost)) if correction == "holm" else (raw_p, raw_tost)
    n = len(comparisons)
    for g, p, pt in zip(extra, p_adj[n:], tost_adj[n:]):
        g["p"], g["p_tost"] = p, pt
    for (cell, c), p, pt in zip(comparisons, p_adj, tost_adj):
        span = get_metric(cell["metric"]).high - get_metric(cell["metric"]).low
        clip = span if math.isfinite(span) else None
        cell.update(
            delta_vs_reference=c.diff.mean,
            delta_ci95=list(c.ci(0.95, clip) or []) or None,
            delta_ci90=list(c.ci(0.90, clip) or []) or None,
            n_paired=c.n,
            p_value=p,
            p_value_raw=c.p,
            p_equivalence=pt,
            p_equivalence_raw=c.p_tost,
            verdict=verdict(c, p, pt),
        )
        if c.reason:
            cell["inconclusive_reason"] = c.reason
        if cell["verdict"] == "inconclusive":
            seeds, note = seeds_to_settle(c)
            cell["settle"] = {"seeds": seeds, "note": note}
        if c.n != cell["n"]:
            cell["note"] = f"compared on the {c.n} seed(s) shared with {cell['reference']} (the cell has {cell['n']})"
        if cell["reference"] == "scratch":
            cell["delta_vs_scratch"] = c.diff.mean


def _version_warnings(rows) -> list[str]:
    """One line per library whose version differs between the rows analysed."""
    seen: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        for lib, version in (r.get("versions") or {}).items():
            seen[lib][version] += 1
    return [
        f"runs were made {'on different devices' if lib == 'device' else f'with different {lib} versions'} "
        f"({', '.join(f'{v}: {n} run(s)' for v, n in sorted(counts.items()))}); their numbers may differ for that reason alone"
        for lib, counts in seen.items()
        if len(counts) > 1
    ]


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
    terms = [(1.0 if higher_is_better(metrics[t]) else -1.0) * (strategy_means[t] - scratch_means[t]) / abs(scratch_means[t]) for t in strategy_means]
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


def _pretraining(rows, config: StudyConfig) -> dict[str, Any]:
    """In-study pretraining, counted once per (target, seed, fraction it used) whichever
    strategies reuse it, and shown apart from their training; a self-supervised source's
    once per (source, target, seed), every fraction reading it."""
    several = len(config.targets) > 1
    done: dict[tuple, float] = {}
    users: set[str] = set()
    for r in rows:
        if (r.get("pretrain_seconds") or 0.0) > 0:
            ssl = ssl_source(config, r["strategy"])
            key = (ssl, r["task"], r["seed"]) if ssl else (None, r["task"], r["seed"], r["fraction"] if several else 1.0)
            done[key] = float(r["pretrain_seconds"])
            users.add(r["strategy"])
    return {
        "count": len(done),
        "seconds_total": float(sum(done.values())),
        "seconds_mean": float(np.mean(list(done.values()))) if done else 0.0,
        "used_by": sorted(users),
    }


def _cost(rows, config: StudyConfig, strategies, tuning: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per strategy: what one model costs to train (its own training; the pretraining it
    reuses is in ``pretraining``), and what serving every target takes.

    Serving all ``T`` targets takes one model per target for single-task strategies (``T``
    backbones) and one shared backbone with ``T`` heads for a joint ``mtl`` model.
    """
    out = []
    for strategy in strategies:
        rs = [r for r in rows if r["strategy"] == strategy]
        if not rs:
            continue
        models: dict[str, dict] = {}
        for r in rs:
            models.setdefault(r.get("model_id") or r["run_id"], r)
        tasks = sorted({r["task"] for r in rs})
        per_task = {t: next(r for r in rs if r["task"] == t) for t in tasks}
        shared = strategy.partition(":")[0] == "mtl"
        if shared:
            serve = per_task[tasks[0]]["backbone_params"] + sum(r["head_params"] for r in per_task.values())
        else:
            serve = sum(r["backbone_params"] + r["head_params"] for r in per_task.values())
        out.append(
            {
                "strategy": strategy,
                "models": len(models),
                "train_seconds_per_model": float(np.mean([r["train_seconds"] for r in models.values()])),
                "train_seconds_total": float(sum(r["train_seconds"] for r in models.values())),
                "uses_pretraining": any((r.get("pretrain_seconds") or 0.0) > 0 for r in rs),
                "tune_seconds": float(sum(t["seconds"] for t in tuning if t["strategy"] == strategy)),
                "trainable_params": int(np.mean([r["trainable_params"] for r in models.values()])),
                "serve_params_all_targets": int(serve),
                "backbone_passes_per_input": 1 if shared else len(tasks),
            }
        )
    return out
