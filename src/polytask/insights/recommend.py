"""What to use: per task and fraction, the recommendation and how sure it is; with several
targets, the study-level answer (one shared model against a model per target)."""

from __future__ import annotations

import math
from typing import Any

from polytask.config import StudyConfig
from polytask.core.tasks import higher_is_better
from polytask.insights.cells import Cells, can_run, cost_of, labels_withheld
from polytask.insights.comparison import ALPHA, holm, verdict

# A cheaper strategy must cost under this share of the best one's to be recommended instead
# (wall times vary by several percent between runs, more on a shared machine).
CHEAPER = 0.8


def _fmt_ci(ci: list[float] | None) -> str:
    return f"[{ci[0]:+.3g}, {ci[1]:+.3g}]" if ci else "[undefined]"


def _settle_text(cell: dict[str, Any]) -> str:
    """How many seeds would settle an inconclusive cell, as a clause."""
    settle = cell.get("settle") or {}
    if settle.get("seeds"):
        return f"about {settle['seeds']} seeds would settle it ({settle['note']})"
    return settle.get("note", "")


def recommend(config: StudyConfig, cells, cells_by: Cells, tasks, fractions) -> list[dict[str, Any]]:
    """Per task and fraction: what to use, how sure that is, and why."""
    out = []
    for task in tasks:
        withheld = labels_withheld(config, task)
        for fraction in fractions:
            here = [c for c in cells if c["task"] == task and c["fraction"] == fraction]
            runnable = [c for c in here if can_run(c["strategy"], withheld)]
            base = {"task": task, "fraction": fraction}
            if not runnable:
                why = "the target's labels are withheld and no strategy that works without them ran" if withheld else "no strategy ran"
                out.append({**base, "best": None, "highest_mean": None, "confidence": "inconclusive", "reason": why})
                continue
            sign = 1.0 if higher_is_better(runnable[0]["metric"]) else -1.0
            best = max(runnable, key=lambda c: sign * c["mean"])
            unit = best["metric"]
            note = " (the target's labels are withheld: only strategies that never read them are candidates)" if withheld else ""
            # A clearly cheaper strategy that is non-inferior to the best (within the margin) wins.
            cheaper = []
            for c in runnable:
                if c is best or cost_of(c) >= CHEAPER * cost_of(best):
                    continue
                cmp = cells_by.compare((task, c["strategy"], fraction), (task, best["strategy"], fraction), best["margin"])
                if cmp is not None and cmp.p_noninferior is not None and cmp.p_noninferior < ALPHA:
                    cheaper.append((c, cmp))
            if cheaper:
                pick, cmp = min(cheaper, key=lambda t: cost_of(t[0]))
                ci = cmp.ci(0.90)
                reason = (
                    f"{pick['strategy']} ({pick['mean']:.4g}) is not worse than the best mean, {best['strategy']} ({best['mean']:.4g}), "
                    f"by more than the margin ±{best['margin']:.3g} (difference {cmp.diff.mean:+.3g} {unit}, 90% CI {_fmt_ci(list(ci) if ci else None)}), "
                    f"and costs {1 - cost_of(pick) / max(cost_of(best), 1e-9):.0%} less to train "
                    f"({cost_of(pick):.3g} s against {cost_of(best):.3g} s per model, pretraining included)"
                )
                out.append({**base, "best": pick["strategy"], "highest_mean": best["strategy"], "confidence": "clear", "reason": reason + note})
                continue
            confidence, reason = _standing(best, [c for c in runnable if c is not best], unit)
            out.append({**base, "best": best["strategy"], "highest_mean": best["strategy"], "confidence": confidence, "reason": reason + note})
    return out


def _standing(best: dict[str, Any], others: list[dict[str, Any]], unit: str) -> tuple[str, str]:
    """How sure the best mean is as an answer, and the sentence that says so."""
    if best["verdict"] == "baseline":
        reason = f"scratch has the highest mean ({best['mean']:.4g} {unit})"
        # A verdict against another reference (domain adaptation against source-only) says
        # nothing about scratch.
        elsewhere = [c for c in others if c["reference"] != "scratch"]
        undecided = [c["strategy"] for c in others if c["reference"] == "scratch" and c["verdict"] in ("inconclusive", "better")]
        parts = [f"not settled against: {', '.join(undecided)} (inconclusive)"] if undecided else []
        parts += [f"{c['strategy']} was compared with {c['reference']}, not with scratch" for c in elsewhere]
        if not others:
            return "clear", reason
        if not parts:
            return "clear", reason + "; every other strategy is worse or equivalent"
        return "inconclusive", reason + "; " + "; ".join(parts)
    if best["delta_vs_reference"] is None:
        return (
            "inconclusive",
            f"{best['strategy']} has the highest mean ({best['mean']:.4g} {unit}); the study has no {best['reference']} runs to compare it with",
        )
    vs = f"{best['delta_vs_reference']:+.4g} {unit} vs {best['reference']}, 95% CI {_fmt_ci(best.get('delta_ci95'))}"
    if best["verdict"] == "better":
        return "clear", f"{best['strategy']} has the highest mean ({best['mean']:.4g} {unit}) and beats {best['reference']} ({vs})"
    if best["verdict"] == "equivalent":
        return (
            "clear",
            f"{best['strategy']} has the highest mean ({best['mean']:.4g} {unit}), equivalent to {best['reference']} within ±{best['margin']:.3g} ({vs})",
        )
    settle = _settle_text(best)
    return "inconclusive", (
        f"inconclusive: {best['strategy']} has the highest mean ({best['mean']:.4g} {unit}) but is neither shown better than "
        f"{best['reference']} nor equivalent to it ({vs})" + (f"; {settle}" if settle else "")
    )


def joint_comparisons(config: StudyConfig, cells, cells_by: Cells, tasks, fractions, strategies) -> list[tuple[float, str, list[dict]]]:
    """Per fraction and joint strategy (``mtl``, ``mtl:<method>``): each target's comparison
    of the shared model with the best per-target strategy there (by mean) that the user can run."""
    joint = [s for s in strategies if s.partition(":")[0] == "mtl"]
    if len(tasks) < 2 or not joint:
        return []
    out = []
    for fraction in fractions:
        for strategy in joint:
            group = []
            for task in tasks:
                here = {c["strategy"]: c for c in cells if c["task"] == task and c["fraction"] == fraction}
                if strategy not in here:
                    break
                sign = 1.0 if higher_is_better(here[strategy]["metric"]) else -1.0
                options = [c for s, c in here.items() if s.partition(":")[0] != "mtl" and can_run(s, labels_withheld(config, task))]
                if not options:
                    break
                alt = max(options, key=lambda c: sign * c["mean"])
                cmp = cells_by.compare((task, strategy, fraction), (task, alt["strategy"], fraction), here[strategy]["margin"])
                if cmp is None:
                    break
                group.append({"task": task, "cell": here[strategy], "against": alt, "comparison": cmp})
            if len(group) == len(tasks):
                out.append((fraction, strategy, group))
    return out


def study_answer(joint: list[tuple[float, str, list[dict]]], cells, tasks, correction: str) -> list[dict[str, Any]]:
    """With several targets: one shared model for all of them against a model per target.

    Each target's verdict is the summary's one verdict for that comparison (the cell's own when
    the best per-target strategy is the cell's reference; else corrected with the cells, see
    :func:`summarize`). "Equivalent on every task" and "non-inferior on every task" are
    intersection-union tests (the largest of the tasks' p-values, no correction across tasks),
    Holm-adjusted across the shared models and fractions.
    """
    raw_eq = [max(_none_as_one(g["comparison"].p_tost) for g in group) for _, _, group in joint]
    raw_ni = [max(_none_as_one(g["comparison"].p_noninferior) for g in group) for _, _, group in joint]
    p_eq, p_ni = (holm(raw_eq), holm(raw_ni)) if correction == "holm" else (raw_eq, raw_ni)
    out = []
    for (fraction, strategy, group), pe, pn in zip(joint, p_eq, p_ni):
        per_task = [
            {
                "task": g["task"],
                "against": g["against"]["strategy"],
                "verdict": verdict(g["comparison"], g["p"], g["p_tost"]),
                "delta": g["comparison"].diff.mean,
                "ci90": list(g["comparison"].ci(0.90) or []) or None,
                "p_value": g["p"],
                "p_equivalence_raw": g["comparison"].p_tost,
                "p_noninferior_raw": g["comparison"].p_noninferior,
            }
            for g in group
        ]
        alternatives = {g["task"]: g["against"] for g in group}
        out.append(_shared_model_answer(fraction, strategy, per_task, alternatives, cells, tasks, pe, pn))
    return out


def _none_as_one(p: float | None) -> float:
    return 1.0 if p is None else p


def _shared_model_answer(fraction, strategy, per_task, alternatives, cells, tasks, p_equivalence: float, p_noninferior: float) -> dict[str, Any]:
    shared = {c["task"]: c for c in cells if c["strategy"] == strategy and c["fraction"] == fraction}
    shared_seconds = shared[tasks[0]]["train_seconds"]  # one model for every target
    separate_seconds = sum(cost_of(alternatives[t]) for t in tasks)
    shared_params = shared[tasks[0]]["backbone_params"] + sum(shared[t]["head_params"] for t in tasks)
    separate_params = sum(alternatives[t]["backbone_params"] + alternatives[t]["head_params"] for t in tasks)
    verdicts = {p["task"]: p["verdict"] for p in per_task}
    if p_equivalence < ALPHA:
        answer, verdict_all = "equivalent within the margin on every task", "equivalent"
    elif p_noninferior < ALPHA:
        better = [p["task"] for p in per_task if p["verdict"] == "better"]
        answer = "not worse than a model per target by more than the margin on any task" + (f", better on {', '.join(better)}" if better else "")
        verdict_all = "non-inferior"
    else:
        worse = [t for t, v in verdicts.items() if v == "worse"]
        unsure = [t for t, v in verdicts.items() if v == "inconclusive"]
        parts = ([f"worse on {', '.join(worse)}"] if worse else []) + ([f"inconclusive on {', '.join(unsure)}"] if unsure else [])
        answer, verdict_all = "; ".join(parts) or "mixed", "worse" if worse else "inconclusive"
    ratio = separate_params / shared_params if shared_params else math.nan
    cost = (
        f"serving it takes {shared_params:,} parameters and one forward pass per input against {separate_params:,} and {len(tasks)} "
        f"({ratio:.1f}x as many); training took {shared_seconds:.3g} s against {separate_seconds:.3g} s for the {len(tasks)} separate models"
    )
    return {
        "fraction": fraction,
        "strategy": strategy,
        "verdict": verdict_all,
        "answer": f"one {strategy} model for all {len(tasks)} targets: {answer}; {cost}",
        "recommended": verdict_all in ("equivalent", "non-inferior"),
        "p_equivalence": p_equivalence,
        "p_noninferior": p_noninferior,
        "per_task": per_task,
        "train_seconds": {"shared": shared_seconds, "per_target": separate_seconds},
        "serve_params": {"shared": int(shared_params), "per_target": int(separate_params)},
    }
