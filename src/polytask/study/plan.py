"""The study grid: ``targets x strategies x fractions x seeds``, each cell a run with a stable id."""

from __future__ import annotations

from dataclasses import dataclass

from polytask.config import StudyConfig


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


def plan_runs(config: StudyConfig) -> list[RunSpec]:
    """Every run of the study, seed-major so each seed's pretrained layers are reused soon."""
    return [
        RunSpec(task, strategy, fraction, seed)
        for seed in range(config.seeds)
        for task in config.targets
        for fraction in config.fractions
        for strategy in config.strategies
    ]
