"""Plan, run and resume studies; the results store."""

from polytask.study.plan import RunSpec, plan_runs
from polytask.study.store import ResultStore

__all__ = ["ResultStore", "RunSpec", "plan_runs"]
