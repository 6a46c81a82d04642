"""The whole study: tasks, strategies, fractions, seeds, and how results are analysed."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from polytask.config.base import Frozen, describe
from polytask.config.data import DataConfig, TaskConfig, tasks_from_columns
from polytask.config.model import ModelConfig
from polytask.config.training import DomainAdaptConfig, FineTuneConfig, MTLConfig, TrainConfig, TuneConfig


class AnalysisConfig(Frozen):
    """How results become verdicts (config key ``analysis``); changing it re-analyses a
    study without rerunning anything.

    Attributes:
        correction: ``holm`` (default): p-values of every non-baseline cell are adjusted
            for multiple comparisons (Holm), once for the difference tests and once for the
            equivalence tests; ``none``: raw p-values decide.
        bootstrap: resamples of the test rows for metrics that are not a mean of per-row
            terms (AUC, F1, RMSE, ...); per-row metrics need none.
    """

    correction: Literal["holm", "none"] = "holm"
    bootstrap: int = Field(400, ge=50)


class MlflowConfig(Frozen):
    """Where an MLflow sink logs (``tracking.mlflow``).

    Attributes:
        uri: the tracking server (``http://host:5000``, ``sqlite:///path.db``, ...); None:
            a local store in the study folder (``sqlite:///<out>/mlflow.db``).
        experiment: the experiment's name; default: the study's name.
    """

    uri: str | None = None
    experiment: str | None = None


class TrackingConfig(Frozen):
    """Where a study's runs are logged besides ``results.jsonl`` (config key ``tracking``):
    sinks that see every finished run, fed by the process driving the study. Not part of
    the fingerprint: tracking changes no number.

    Attributes:
        mlflow: an MLflow experiment per study, an MLflow run per polytask run (and a parent
            run for the study); None: no MLflow.
        tensorboard: TensorBoard event files under ``<out>/tensorboard/`` (needs the
            ``tensorboard`` package).
    """

    mlflow: MlflowConfig | None = None
    tensorboard: bool = False


# Tunable settings of the training rules, searched on a log scale.


class SSLSourceConfig(Frozen):
    """A transfer source learned without labels: shared layers pretrained self-supervised,
    which ``fine-tune:<name>`` and ``feature-extraction:<name>`` start from.

    Attributes:
        pretrain: the objective. ``autoencoder``: a linear decoder reconstructs the input
            from the backbone's features (squared error). ``masked``: the same from an input
            with a share ``mask_ratio`` of its entries zeroed, the error counted on the
            masked entries (a masked autoencoder at the input's resolution). ``simclr``:
            two augmented views of each input, a projection head, the NT-Xent loss at
            ``temperature`` (Chen et al., ICML 2020); views from the study's augmenters
            (``augment``, or a default per input kind).
        data: unlabelled inputs to learn from (any labels are ignored); default: the
            target's own training inputs, the seed's validation rows and every test row
            left out. Its rows must not be test rows of a target.
        max_epochs, lr, batch_size: the pretraining's own budget (default: ``train``'s).
        mask_ratio, temperature, projection: the objectives' settings.
        augment: SimCLR's view augmentations (options of the input kind's augmenter).
    """

    pretrain: Literal["autoencoder", "masked", "simclr"]
    data: DataConfig | None = None
    max_epochs: int | None = Field(None, ge=1)
    lr: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=2)
    mask_ratio: float = Field(0.5, gt=0, lt=1)
    temperature: float = Field(0.5, gt=0)
    projection: int = Field(64, ge=2)
    augment: dict[str, Any] | None = None


class StudyConfig(Frozen):
    """A whole study: the grid ``targets x strategies x fractions x seeds``.

    ``tasks_from_columns:`` (a list of :class:`ColumnsConfig` mappings) adds one task per
    listed label column to ``tasks``.

    Attributes:
        strategies: registered strategies; ``mtl:<method>`` picks a weighting method,
            ``feature-extraction:<source>`` and ``fine-tune:<source>`` a pretrained
            backbone to start from (a pretrained backbone's name, or a key of ``sources``).
        sources: names for pretrained backbones given by prefix, e.g.
            ``{mylm: "hf:/models/my-bert"}``, so strategies can say ``fine-tune:mylm``; or
            a source learned without labels (:class:`SSLSourceConfig`), e.g.
            ``{ssl: {pretrain: simclr}}`` for ``fine-tune:ssl``.
        save_models: keep each run's trained backbone under ``<out>/models/`` so a later
            study can start from it (``run:<out>/<task>/<strategy>/seed<k>``).
        validation: ``shrink`` (default): each run validates on a share of the validation
            split that shrinks with its fraction (at least 5 rows per class, 30 for
            regression), so a low-label run does not pick its epoch on many more labels
            than it trains on; ``fixed``: every run validates on the whole split.
        allow_overlap: run even though some test rows of a target are training or
            validation inputs of another task (refused by default: a model trained on that
            task has seen them, so the target's test score is not a test).
        tracking: MLflow and TensorBoard sinks (:class:`TrackingConfig`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = "study"
    seeds: int = Field(5, ge=1)
    fractions: list[float] = Field(default_factory=lambda: [1.0], min_length=1)
    tasks: dict[str, TaskConfig] = Field(min_length=1)
    model: ModelConfig = ModelConfig()
    strategies: list[str] = Field(default_factory=lambda: ["scratch", "feature-extraction", "fine-tune", "mtl"], min_length=1)
    train: TrainConfig = TrainConfig()
    mtl: MTLConfig = MTLConfig()
    fine_tune: FineTuneConfig = Field(FineTuneConfig(), alias="fine-tune")
    domain_adapt: DomainAdaptConfig = Field(DomainAdaptConfig(), alias="domain-adapt")
    sources: dict[str, str | SSLSourceConfig] = Field(default_factory=dict)
    analysis: AnalysisConfig = AnalysisConfig()
    tune: TuneConfig | None = None
    save_models: bool = False
    validation: Literal["shrink", "fixed"] = "shrink"
    allow_overlap: bool = False
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="before")
    @classmethod
    def _expand_columns(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or "tasks_from_columns" not in raw:
            return raw
        raw = dict(raw)
        groups = raw.pop("tasks_from_columns")
        if not isinstance(groups, list):
            raise ValueError("'tasks_from_columns' must be a list of {csv, targets, ...} mappings")
        tasks = dict(raw.get("tasks") or {})
        for i, group in enumerate(groups):
            if not isinstance(group, dict):
                raise ValueError(f"tasks_from_columns[{i}] must be a mapping, got {group!r}")
            try:
                expanded = tasks_from_columns(**group)
            except ValidationError as e:
                raise ValueError(f"tasks_from_columns[{i}]: {describe(e.errors()[0])}") from None
            except TypeError as e:
                raise ValueError(f"tasks_from_columns[{i}]: {e}") from None
            for name, entry in expanded.items():
                if name in tasks:
                    raise ValueError(f"tasks_from_columns[{i}]: task '{name}' is already defined")
                tasks[name] = entry
        raw["tasks"] = tasks
        return raw

    @field_validator("fractions")
    @classmethod
    def _fractions_in_range(cls, v: list[float]) -> list[float]:
        for f in v:
            if not 0 < f <= 1:
                raise ValueError(f"fraction {f} is outside (0, 1]")
        return sorted(set(v))

    @field_validator("strategies")
    @classmethod
    def _unique_strategies(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    @field_validator("sources")
    @classmethod
    def _source_names(cls, v: dict[str, str | SSLSourceConfig]) -> dict[str, str | SSLSourceConfig]:
        for alias in v:
            if not alias or any(c in alias for c in "/: "):
                raise ValueError(f"source name '{alias}' must be non-empty without '/', ':' or spaces")
        return v

    @model_validator(mode="after")
    def _roles(self) -> StudyConfig:
        for name in self.tasks:
            if "/" in name or not name.strip():
                raise ValueError(f"task name '{name}' must be non-empty and contain no '/'")
        if not self.targets:
            raise ValueError("no task has role 'target': nothing to report")
        # A strategy starting from a source of ``sources:`` learns from that source, not from other tasks.
        needs_others = [s for s in self.strategies if s != "scratch" and s.partition(":")[2] not in self.sources]
        if needs_others and len(self.tasks) < 2:
            raise ValueError(f"strategies {needs_others} need at least two tasks (got one)")
        if self.tune is not None and self.tune.seed < self.seeds:
            raise ValueError(f"field 'tune.seed': {self.tune.seed} is one of the study's seeds 0..{self.seeds - 1}; the tuning seed must never be evaluated")
        if self.tune is not None:
            unknown = [s for s in self.tune.strategies or [] if s not in self.strategies]
            if unknown:
                raise ValueError(f"field 'tune.strategies': {unknown} are not strategies of this study ({', '.join(self.strategies)})")
        return self

    def mtl_method(self, strategy: str) -> str | None:
        """The weighting method an ``mtl`` strategy uses (None for other strategies)."""
        base, _, method = strategy.partition(":")
        return (method or self.mtl.weighting) if base == "mtl" else None

    @property
    def targets(self) -> list[str]:
        """Names of the tasks that are reported."""
        return [n for n, t in self.tasks.items() if t.role == "target"]

    def resolved(self, base: Path) -> StudyConfig:
        """Return a copy with every data path made absolute against ``base``."""
        tasks = {}
        for n, t in self.tasks.items():
            update = {"data": t.data.resolved(base)} if t.data else {}
            if isinstance(t.unlabeled, DataConfig):
                update["unlabeled"] = t.unlabeled.resolved(base)
            tasks[n] = t.model_copy(update=update)
        sources = {a: s.model_copy(update={"data": s.data.resolved(base)}) if isinstance(s, SSLSourceConfig) and s.data else s for a, s in self.sources.items()}
        return self.model_copy(update={"tasks": tasks, "sources": sources})
