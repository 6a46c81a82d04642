"""A study's rows grouped by cell (task, strategy, fraction), and what every part of the
analysis asks of a cell: its reference, whether a user could run it, what one model costs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from polytask.config import StudyConfig
from polytask.core.metrics import get_metric
from polytask.insights.comparison import Comparison, RowPredictions, Scores, compare, seeded
from polytask.strategies import STRATEGIES

DOMAIN_ADAPT = "domain-adapt"
DA_REFERENCE = "domain-adapt:source-only"
# The A/A control (strategy ``aa-control``): scratch again with its own initialization and
# batch order. Its verdicts measure how often the machinery calls noise a difference.
CONTROL = "aa-control"

RowLookup = Callable[[dict[str, Any]], "RowPredictions | None"]


def ordered(values, order: list) -> list:
    return sorted(set(values), key=lambda v: (order.index(v) if v in order else len(order), v))


def reference(strategy: str, strategies: list[str]) -> str:
    """What a strategy's verdict compares it with: scratch, or for a domain adaptation method
    the study's ``domain-adapt:source-only`` (the same source training without adaptation)."""
    base, _, method = strategy.partition(":")
    if base == DOMAIN_ADAPT and method != "source-only" and DA_REFERENCE in strategies:
        return DA_REFERENCE
    return "scratch"


def labels_withheld(config: StudyConfig, task: str) -> bool:
    """Whether the target's labels are withheld (``unlabeled:``): only strategies that never
    read them are what the user could run; the others are references."""
    t = config.tasks.get(task)
    return bool(t is not None and t.unlabeled not in (None, False))


def can_run(strategy: str, withheld: bool) -> bool:
    """Whether a user could run ``strategy`` for a target (with its labels withheld: only a
    strategy that never reads them; a strategy this process does not know is assumed to)."""
    if strategy == CONTROL:
        return False
    spec = STRATEGIES.get(strategy.partition(":")[0])
    return not (spec is None or spec.reads_target_labels) if withheld else True


class Cells:
    """Rows grouped by cell, with their scores (and test-row predictions, loaded once)."""

    def __init__(self, rows: list[dict[str, Any]], lookup: RowLookup | None, reps: int):
        self.by_cell: dict[tuple, dict[int, dict]] = defaultdict(dict)
        for r in rows:
            self.by_cell[(r["task"], r["strategy"], r["fraction"])][r["seed"]] = r
        self.lookup = lookup
        self.reps = reps
        self._scores: dict[tuple, Scores] = {}

    def scores(self, key: tuple) -> Scores | None:
        if key not in self.by_cell:
            return None
        if key not in self._scores:
            runs = self.by_cell[key]
            metric = get_metric(next(iter(runs.values()))["metric"])
            kept = {s: self.lookup(r) for s, r in runs.items()} if self.lookup else {}
            self._scores[key] = Scores(metric, {s: float(r["test"]) for s, r in runs.items()}, {s: v for s, v in kept.items() if v is not None})
        return self._scores[key]

    def compare(self, a: tuple, b: tuple, margin: float) -> Comparison | None:
        sa, sb = self.scores(a), self.scores(b)
        if sa is None or sb is None:
            return None
        return compare(sa, sb, margin, self.reps, seeded(*a, *b))


def cost_of(cell: dict[str, Any]) -> float:
    """What one model of a cell costs to train: its training plus the pretraining it needs."""
    return cell["train_seconds"] + cell["pretrain_seconds"]
