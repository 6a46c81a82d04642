"""A run's time budget: a deadline checked as it trains; nested budgets count apart."""

from __future__ import annotations

import pytest

from polytask.core.errors import TimeBudgetError
from polytask.training import budget


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = _Clock()
    monkeypatch.setattr(budget.time, "monotonic", c)
    return c


def test_the_deadline_passes_after_the_budget(clock):
    budget.check_budget()  # no budget: never
    with budget.time_budget(0.5):
        clock.now += 29.0
        budget.check_budget()
        clock.now += 2.0
        with pytest.raises(TimeBudgetError, match=r"train.max_minutes = 0.5"):
            budget.check_budget()
    budget.check_budget()  # left: no budget again


def test_time_inside_a_nested_budget_does_not_count_against_the_outer_one(clock):
    with budget.time_budget(1.0):
        clock.now += 50.0
        with budget.time_budget(1.0):  # a pretraining the run triggers: a minute of its own
            clock.now += 55.0
            budget.check_budget()
        clock.now += 9.0  # the run itself: 59 s
        budget.check_budget()
        clock.now += 2.0
        with pytest.raises(TimeBudgetError):
            budget.check_budget()
