"""``polytask update --data NEW.yaml``: new labelled data for a saved model, the forgetting
guard, and the regression gate that decides whether the updated model replaces it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from polytask.config.base import Frozen
from polytask.config.data import DataConfig
from polytask.config.training import TrainConfig


class UpdateTaskConfig(Frozen):
    """New rows of one task: an old task of the model (more data), or a new one (a new head).

    ``data`` is read as in a study (``npz``, ``csv``, ``images`` or ``builtin``): its training
    rows are trained on, its test split is the update's gate split for this task.
    """

    data: DataConfig


class GuardConfig(Frozen):
    """How the update keeps what the model knew (:mod:`polytask.methods.continual`).

    Attributes:
        method: ``rehearsal`` (train again on the sample of old training rows the model
            directory keeps), ``lwf`` (distil the current model's old-task outputs on the
            new inputs) or ``ewc`` (hold each weight near its value in proportion to its
            Fisher information on the kept old rows).
        lam: the weight of the ``lwf`` or ``ewc`` penalty (default: 1 for lwf, 100 for ewc).
        temperature: ``lwf``'s softmax temperature.
        fisher_rows: old rows per task ``ewc`` estimates the Fisher information on.
    """

    method: Literal["rehearsal", "lwf", "ewc"] = "rehearsal"
    lam: float | None = Field(None, ge=0)
    temperature: float = Field(2.0, gt=0)
    fisher_rows: int = Field(200, ge=1)


class GateConfig(Frozen):
    """The regression gate: the updated model must not be worse than the current one.

    Attributes:
        margin: non-inferiority margin in each task's metric units: the candidate may be
            at most this much worse (one-sided, at ``alpha``) on every old task and on the
            new data.
        alpha: one-sided level of the paired bootstrap's bound.
        resamples: paired bootstrap resamples of the gate rows.

    The gate split of new rows is their source's test split (an NPZ's ``x_test``, a table's
    ``test`` file or ``test_size`` share): never trained on, and kept with the model, so
    later updates are judged on it too.
    """

    margin: float = Field(0.02, gt=0)
    alpha: float = Field(0.05, gt=0, lt=0.5)
    resamples: int = Field(2000, ge=100)


class UpdateConfig(Frozen):
    """An update of a saved model (``polytask update MODEL_DIR --data NEW.yaml``).

    Attributes:
        tasks: new labelled rows per task (old tasks and new ones).
        guard: the forgetting guard.
        gate: the regression gate.
        train: training settings of the update (its learning rate is the continued
            training's: lower than from scratch).
        seed: fixes the gate split's resampling, batch order and a new head's initialization.
    """

    tasks: dict[str, UpdateTaskConfig]
    guard: GuardConfig = GuardConfig()
    gate: GateConfig = GateConfig()
    train: TrainConfig = TrainConfig(max_epochs=20, batch_size=64, lr=5e-4, patience=4)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _some_task(self) -> UpdateConfig:
        if not self.tasks:
            raise ValueError("tasks: give at least one task with new data")
        return self

    def resolved(self, base: Path) -> UpdateConfig:
        """A copy with data paths made absolute against ``base``."""
        return self.model_copy(update={"tasks": {n: t.model_copy(update={"data": t.data.resolved(base)}) for n, t in self.tasks.items()}})
