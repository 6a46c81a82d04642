"""How often each task is drawn when tasks have datasets of different sizes.

``uniform``: every task equally often, whatever its size (small tasks are cycled).
``proportional``: in proportion to its number of training rows, as if all tasks' rows
were pooled and shuffled together. ``temperature``: ``p_t ∝ n_t^(1/T)``, between the
two (``T = 1`` is proportional, ``T → ∞`` uniform; Arivazhagan et al. 2019 and T5 use
it to stop a large task drowning the small ones without cycling them endlessly).
"""

from __future__ import annotations

import math

SAMPLINGS = ("uniform", "proportional", "temperature")


def task_probabilities(sizes: dict[str, int], sampling: str = "uniform", temperature: float = 2.0) -> dict[str, float]:
    """Probability of drawing each task's rows, summing to 1.

    Args:
        sizes: labelled training rows per task.
        sampling: one of :data:`SAMPLINGS`.
        temperature: ``T`` of ``temperature`` sampling (> 0).

    Example:
        >>> {k: round(p, 3) for k, p in task_probabilities({"a": 100, "b": 900}, "temperature", 2.0).items()}
        {'a': 0.25, 'b': 0.75}
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if any(n < 1 for n in sizes.values()):
        raise ValueError(f"every task needs training rows to be sampled, got {sizes}")
    power = {"uniform": 0.0, "proportional": 1.0, "temperature": 1.0 / temperature}[sampling]
    # Logs keep n^(1/T) finite for any size and temperature.
    logs = {k: power * math.log(n) for k, n in sizes.items()}
    top = max(logs.values())
    mass = {k: math.exp(v - top) for k, v in logs.items()}
    total = sum(mass.values())
    return {k: m / total for k, m in mass.items()}


def batch_plan(sizes: dict[str, int], probabilities: dict[str, float], batch_size: int) -> tuple[dict[str, int], dict[str, float]]:
    """Rows each task contributes to one step, and the scale of its loss.

    A step holds ``batch_size`` rows per task on average (``batch_size * T`` in all),
    split by ``probabilities``; a task gets at least 2 rows (BatchNorm needs two) and
    never more than it has. Each task's mean loss is scaled by ``T * p_t``: the mean
    over the mixed batch counts each task by its share, and uniform sampling
    (``p_t = 1/T``) keeps the plain sum of task losses.
    """
    t = len(sizes)
    rows = {k: max(2, min(n, round(batch_size * t * probabilities[k]))) for k, n in sizes.items()}
    scale = {k: t * probabilities[k] for k in sizes}
    return rows, scale
