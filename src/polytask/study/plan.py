"""The study grid: ``targets x strategies x fractions x seeds``, each cell a run with a stable id.

Cells are executed as jobs: one job trains one model. For most strategies that is one
cell; a joint strategy (``mtl``) trains one model for every target, so its job fills the
cells of all targets at one fraction and seed.
"""

from __future__ import annotations

from dataclasses import dataclass

from polytask.config import StudyConfig
from polytask.strategies import is_joint


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid."""

    task: str
    strategy: str
    fraction: float
    seed: int

    @property
    def run_id(self) -> str:
        """Stable identifier, the key for resuming: ``task/strategy/fraction/seedK``."""
        return f"{self.task}/{self.strategy}/{self.fraction:g}/seed{self.seed}"


@dataclass(frozen=True)
class Job:
    """One model to train: the cells of ``tasks`` for one strategy, fraction and seed."""

    strategy: str
    fraction: float
    seed: int
    tasks: tuple[str, ...]

    @property
    def specs(self) -> list[RunSpec]:
        """The cells this job fills."""
        return [RunSpec(t, self.strategy, self.fraction, self.seed) for t in self.tasks]

    @property
    def model_id(self) -> str:
        """Identifier of the one model the job trains (shared by its cells' rows)."""
        return f"{self.strategy}/{self.fraction:g}/seed{self.seed}" if len(self.tasks) > 1 else self.specs[0].run_id

    @property
    def label(self) -> str:
        """What progress displays show while the job runs."""
        return self.specs[0].run_id if len(self.tasks) == 1 else f"{self.model_id} ({len(self.tasks)} targets)"


def plan_jobs(config: StudyConfig) -> list[Job]:
    """Every job of the study, seed-major so each seed's pretrained layers are reused soon."""
    jobs = []
    for seed in range(config.seeds):
        for fraction in config.fractions:
            for strategy in config.strategies:
                if is_joint(strategy):
                    jobs.append(Job(strategy, fraction, seed, tuple(config.targets)))
                else:
                    jobs.extend(Job(strategy, fraction, seed, (task,)) for task in config.targets)
    return jobs


def plan_runs(config: StudyConfig) -> list[RunSpec]:
    """Every cell of the study, in the order its jobs run."""
    return [spec for job in plan_jobs(config) for spec in job.specs]
