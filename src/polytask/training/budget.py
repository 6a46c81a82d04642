"""A run's time budget (``train.max_minutes``): a deadline the engine checks as it trains.

The study sets it around each job (:func:`time_budget`); :func:`check_budget` raises
:class:`~polytask.core.errors.TimeBudgetError` once it has passed, which the study records
as the run's failure. Each process has its own deadline: a worker runs one job at a time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from polytask.core.errors import TimeBudgetError

_deadline: tuple[float, float] | None = None  # (monotonic deadline, minutes)


@contextlib.contextmanager
def time_budget(minutes: float | None) -> Iterator[None]:
    """Give what runs inside ``minutes`` minutes (None: no limit).

    Inside another budget (an in-study pretraining that a run triggers), the time spent
    here does not count against the outer one: each training has its own budget.
    """
    global _deadline
    before, start = _deadline, time.monotonic()
    _deadline = (start + 60.0 * minutes, minutes) if minutes is not None else None
    try:
        yield
    finally:
        _deadline = (before[0] + time.monotonic() - start, before[1]) if before is not None else None


def check_budget() -> None:
    """Raise :class:`TimeBudgetError` when the current run's deadline has passed."""
    if _deadline is not None and time.monotonic() > _deadline[0]:
        raise TimeBudgetError(f"the run took longer than its budget, train.max_minutes = {_deadline[1]:g}")
