"""Typed, frozen study configuration.

A study is described by a YAML file (or the same structure built in Python).
Every model rejects unknown keys, so a typo fails loudly with the field's name
instead of being silently ignored. Paths are resolved relative to the config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from polytask.core.errors import ConfigError
from polytask.core.metrics import METRICS

TaskKind = Literal["classification", "binary", "regression"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Frozen):
    """Where a task's data comes from: exactly one of ``npz``, ``csv`` or ``builtin``.

    Attributes:
        npz: NPZ file with ``x_train, y_train, x_test, y_test`` and optional ``x_val, y_val``.
        csv: CSV file; ``target`` names the label column, ``features`` the input columns
            (default: every other column not in ``exclude``). Without ``test`` a
            stratified, seeded test split of ``test_size`` is drawn.
        text: CSV column holding text: the task's input is that text (tokenized by
            the text backbone), instead of numeric ``features``.
        builtin: name of a built-in dataset (``polytask datasets``); ``target`` picks the
            label for datasets that carry several (``multi-mnist``: ``left`` or ``right``).
        test: CSV file holding the test rows (same columns as ``csv``).
        test_size: fraction held out as test when no test split is given, drawn from the
            file's content: every task read from one file holds out the same rows.
        stratify: stratify that test split by this task's label column instead. Only for
            a file no other task of the study reads (each column would split differently).
        max_train, max_test: keep at most this many training (test) rows, drawn with a
            fixed seed from the data source alone, so tasks reading one source (label
            columns of one file, one builtin's targets) keep the same rows. For quick
            studies on large data; the same rows in every study.
        crop: pixels removed from every border of each image before any resizing
            (MNIST's digits sit in a 20x20 box centred on a 28x28 canvas: ``crop: 4``
            makes them fill the frame like scikit-learn's digits do).
    """

    npz: Path | None = None
    csv: Path | None = None
    builtin: str | None = None
    target: str | None = None
    text: str | None = None
    features: list[str] | None = None
    test: Path | None = None
    test_size: float = Field(0.25, gt=0, lt=1)
    stratify: bool = False
    exclude: list[str] | None = None
    crop: int = Field(0, ge=0)
    max_train: int | None = Field(None, ge=2)
    max_test: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        given = [k for k in ("npz", "csv", "builtin") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of npz, csv, builtin (got {given or 'none'})")
        if self.csv is not None and not self.target:
            raise ValueError("a csv data source needs 'target': the label column")
        if self.text is not None and self.csv is None:
            raise ValueError("'text' names a column of a csv data source; builtin text datasets need no 'text'")
        if self.text is not None and self.features:
            raise ValueError("give either 'text' (one text column) or 'features' (numeric columns), not both")
        return self

    def resolved(self, base: Path) -> DataConfig:
        """Return a copy with file paths made absolute against ``base``."""
        update = {k: (base / v) for k in ("npz", "csv", "test") if (v := getattr(self, k)) is not None}
        return self.model_copy(update=update)


class TaskConfig(_Frozen):
    """One task: its data, its role in the study and (optionally) its kind.

    ``role: target`` tasks are reported; ``role: source`` tasks only feed pretraining and
    joint training. ``kind`` is inferred from the labels when omitted.

    Attributes:
        metric: the task's metric (:mod:`polytask.core.metrics`): ``accuracy``,
            ``balanced_accuracy``, ``f1_macro``, ``roc_auc``, ``average_precision``,
            ``log_loss`` for classes; ``rmse``, ``mae``, ``r2`` for regression. It selects
            the epoch, and every delta, interval and verdict is in its units and direction.
        margin: the practical margin of equivalence, in the metric's units: differences
            within it are too small to matter. Default: 0.01 for bounded scores, 1% of
            scratch's value for error metrics (RMSE, MAE, log loss).
        augment: augmentation options for this task's training batches
            (:func:`polytask.data.augment.build_augmenter`; the kind, image, text or
            tabular, follows the data), the same for every strategy. Off when omitted.
        unlabeled: target-domain inputs without labels for ``domain-adapt``: a data
            source (its training inputs are used, any labels ignored), or ``true`` to
            use this task's own training inputs with their labels hidden from it.
    """

    data: DataConfig | None = None
    role: Literal["target", "source"] = "target"
    kind: TaskKind | None = None
    metric: str | None = None
    margin: float | None = Field(None, gt=0)
    augment: dict[str, Any] | None = None
    unlabeled: DataConfig | bool | None = None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str | None) -> str | None:
        if v is not None and v not in METRICS:
            raise ValueError(f"unknown metric '{v}' (known: {', '.join(METRICS.names())})")
        return v


class MLPConfig(_Frozen):
    """Fully connected backbone: ``hidden`` layer widths, ReLU, dropout."""

    hidden: list[int] = Field(default_factory=lambda: [256, 256], min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)


class CNNConfig(_Frozen):
    """Convolutional backbone: conv-BN-ReLU-maxpool stages of ``channels``, then a ``hidden`` layer."""

    channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=1)
    hidden: int = Field(128, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)


class GRUConfig(_Frozen):
    """Text backbone trained from scratch: hashed word ids, embedding, bidirectional GRU."""

    vocab_size: int = Field(32768, ge=16)
    embedding: int = Field(64, ge=1)
    hidden: int = Field(64, ge=1)
    layers: int = Field(1, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)


class TextConfig(_Frozen):
    """How every text backbone tokenizes: at most ``max_length`` tokens per text."""

    max_length: int = Field(64, ge=2)


class ImageNetConfig(_Frozen):
    """ImageNet backbones (``efficientnet-lite0``, ``timm:``) upsample images to ``resize``."""

    resize: int | None = Field(64, ge=16)


class ModelConfig(BaseModel):
    """Shared layers (the backbone), how tasks share them, and the heads.

    Attributes:
        backbone: registered backbone name (``mlp``, ``cnn``, ``gru`` for text;
            ``efficientnet-lite0``, ``minilm`` with pretrained weights) or ``hf:<name>``,
            ``timm:<name>``, ``run:<path>`` (:mod:`polytask.methods.backbones.pretrained`). A
            pretrained one is what ``feature-extraction`` and ``fine-tune`` start from;
            ``scratch`` trains the same architecture from a random initialization.
        image_size: resize every image task to this square size, so datasets of
            different sizes can share one backbone.
        architecture: how the ``mtl`` strategy shares layers (``hard``: one backbone and a
            linear head per task). Its options go in a section named after it, e.g.
            ``architecture: mmoe`` with ``mmoe: {experts: 4}``. Single-task strategies
            always use one backbone and one head.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    backbone: str = "mlp"
    image_size: int | None = Field(None, ge=4)
    architecture: str = "hard"
    mlp: MLPConfig = MLPConfig()
    cnn: CNNConfig = CNNConfig()
    gru: GRUConfig = GRUConfig()
    text: TextConfig = TextConfig()
    imagenet: ImageNetConfig = ImageNetConfig()

    @model_validator(mode="after")
    def _option_sections(self) -> ModelConfig:
        for key, options in (self.model_extra or {}).items():
            if not isinstance(options, dict):
                raise ValueError(f"'{key}' must be a mapping of architecture options, got {options!r}")
        return self

    def architecture_options(self, name: str | None = None) -> dict:
        """Options given for architecture ``name`` (default: the configured one)."""
        return dict((self.model_extra or {}).get(name or self.architecture, {}))


class TrainConfig(_Frozen):
    """Rules of the one training engine, the same for every strategy.

    Attributes:
        max_epochs: upper bound on epochs; an epoch covers the largest task once.
        batch_size: samples per task per step.
        lr: AdamW learning rate (for new heads and for training from scratch).
        weight_decay: AdamW weight decay.
        patience: stop after this many epochs without a validation improvement.
        min_steps_per_epoch: an epoch (one validation check) is at least this many steps.
            Without it a 50-sample target gets one step per epoch and stops after a few
            dozen updates, while the same target inside a multi-task model gets as many
            steps as the largest task: an unfair budget that flatters multi-task learning.
        backbone_lr_ratio: fine-tuning learning rate of pretrained shared layers, as a
            fraction of ``lr`` (new heads use ``lr``).
    """

    max_epochs: int = Field(100, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(10, ge=1)
    min_steps_per_epoch: int = Field(20, ge=1)
    backbone_lr_ratio: float = Field(0.1, gt=0, le=1)


class FineTuneConfig(BaseModel):
    """Recipe of the ``fine-tune`` strategies (config key ``fine-tune``).

    Attributes:
        layers: ``all``, or the number of the backbone's last stages that train (the
            rest stay frozen; 0 trains the head only).
        unfreeze: ``gradual``: start with the head alone and unfreeze one more stage
            from the top every ``unfreeze_every`` epochs (ULMFiT).
        lr_decay: layer-wise learning-rate decay: the top stage learns at
            ``backbone_lr_ratio * lr * lr_decay``, the one below at ``... * lr_decay^2``
            (1: one rate for the whole backbone).
        lp_ft: first train the head alone on the frozen backbone for ``lp_epochs``
            epochs, then fine-tune everything from that head (Kumar et al. 2022).
        freeze_bn: keep BatchNorm statistics (and affine parameters) of the backbone fixed.
        regularizer: ``l2-sp``, ``delta``, ``bss`` or ``lwf``
            (:mod:`polytask.methods.finetuning.regularizers`); hyperparameters in a section named
            after it, e.g. ``l2-sp: {alpha: 0.1}``.
        lora: LoRA on the backbone (``{r: 8, alpha: 16, target_modules: [...]}``; needs
            ``peft``); only the adapters and the head train; merged into the weights
            after training.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    layers: Literal["all"] | int = "all"
    unfreeze: Literal["none", "gradual"] = "none"
    unfreeze_every: int = Field(1, ge=1)
    lr_decay: float = Field(1.0, gt=0, le=1)
    lp_ft: bool = False
    lp_epochs: int = Field(5, ge=1)
    freeze_bn: bool = False
    regularizer: str | None = None
    lora: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _sections(self) -> FineTuneConfig:
        if isinstance(self.layers, int) and self.layers < 0:
            raise ValueError(f"'layers' must be 'all' or a number of stages >= 0, got {self.layers}")
        for key, hp in (self.model_extra or {}).items():
            if not isinstance(hp, dict):
                raise ValueError(f"'{key}' must be a mapping of hyperparameters, got {hp!r}")
        if self.lora is not None and (self.regularizer in ("l2-sp", "delta")):
            raise ValueError(f"lora renames the backbone's weights, so '{self.regularizer}' cannot match them to the pretrained ones; drop one")
        if self.unfreeze == "gradual" and self.layers != "all":
            raise ValueError("unfreeze: gradual already decides which stages train; leave 'layers' at 'all'")
        return self

    def hparams(self, name: str) -> dict:
        """Hyperparameters given for regularizer ``name``."""
        return dict((self.model_extra or {}).get(name, {}))


class DomainAdaptConfig(BaseModel):
    """Settings of the ``domain-adapt:<method>`` strategies (config key ``domain-adapt``).

    Attributes:
        validator: how a checkpoint is chosen without target labels
            (:mod:`polytask.methods.adaptation.validators`: ``source-val``, ``dev``, ``snd``,
            ``entropy``, ``im``).
        <method>: hyperparameters of one method, e.g. ``dann: {trade_off: 1.0}``.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    validator: str = "dev"

    @model_validator(mode="after")
    def _sections(self) -> DomainAdaptConfig:
        for key, hp in (self.model_extra or {}).items():
            if not isinstance(hp, dict):
                raise ValueError(f"'{key}' must be a mapping of hyperparameters, got {hp!r}")
        return self

    def hparams(self, method: str) -> dict:
        """Hyperparameters given for ``method``."""
        return dict((self.model_extra or {}).get(method, {}))


class MTLConfig(BaseModel):
    """How the ``mtl`` strategy balances its tasks.

    ``weighting`` names a method of :mod:`polytask.methods.weighting`; its hyperparameters go in
    a section named after it, e.g. ``mtl: {weighting: cagrad, cagrad: {c: 0.5}}``. The
    strategy ``mtl:<method>`` runs another method with its section's hyperparameters, so
    one study can compare several side by side.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    weighting: str = "ew"
    rep_grad: bool = False
    sampling: Literal["uniform", "proportional", "temperature"] = "uniform"
    temperature: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _sections(self) -> MTLConfig:
        for key, hp in (self.model_extra or {}).items():
            if not isinstance(hp, dict):
                raise ValueError(f"'{key}' must be a mapping of hyperparameters, got {hp!r}")
        return self

    def hparams(self, method: str) -> dict:
        """The hyperparameters given for ``method`` (empty: its paper's defaults)."""
        return dict((self.model_extra or {}).get(method, {}))


class AnalysisConfig(_Frozen):
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


# Tunable settings of the training rules, searched on a log scale.
TUNABLE_TRAIN = ("lr", "weight_decay", "backbone_lr_ratio")


class TuneConfig(_Frozen):
    """A hyperparameter search per strategy, before the seeds run (config key ``tune``; needs
    ``optuna``, the ``polytask[tune]`` extra).

    Every strategy gets the same number of trials, each a run on the tuning seed (its own
    validation carve and training subset, never evaluated) scored on validation only, with
    a seeded TPE sampler. The chosen values are stored in the study folder
    (``tuning/<strategy>/<fraction>.json``), reused on resume, and applied to every seed
    of that strategy and fraction. Shared pretraining is not tuned.

    Attributes:
        trials: trials per strategy, fraction and model (per target for single-task
            strategies; one for a shared ``mtl`` model).
        seed: the tuning seed; must not be one of the study's seeds ``0..seeds-1``.
        space: what is searched, each as ``[low, high]``: ``lr``, ``weight_decay``,
            ``backbone_lr_ratio`` (fine-tuning) on a log scale; ``task_weights`` (static
            task weights of plain ``mtl``, log scale); ``<method>.<hyperparameter>`` of a
            weighting or domain adaptation method (e.g. ``cagrad.c: [0.1, 0.9]``), linear.
        strategies: the strategies tuned (default: all but ``aa-control``, which takes
            scratch's values).
    """

    trials: int = Field(20, ge=1)
    seed: int = Field(1000, ge=0)
    space: dict[str, list[float]] = Field(default_factory=lambda: {"lr": [1e-4, 1e-2], "weight_decay": [1e-6, 1e-2]}, min_length=1)
    strategies: list[str] | None = None

    @field_validator("space")
    @classmethod
    def _ranges(cls, v: dict[str, list[float]]) -> dict[str, list[float]]:
        for key, bounds in v.items():
            if len(bounds) != 2 or not bounds[0] < bounds[1]:
                raise ValueError(f"tune.space.{key}: expected [low, high] with low < high, got {bounds}")
            log = key in TUNABLE_TRAIN or key == "task_weights"
            if log and bounds[0] <= 0:
                raise ValueError(f"tune.space.{key}: searched on a log scale, so low must be > 0 (got {bounds[0]})")
            if not log and "." not in key:
                raise ValueError(f"tune.space: unknown key '{key}' (known: {', '.join(TUNABLE_TRAIN)}, task_weights, <method>.<hyperparameter>)")
        return v


class ColumnsConfig(_Frozen):
    """Several label columns of one CSV, one task per column (e.g. a multilabel dataset).

    Every task is named after its column and holds out the same test rows.
    """

    csv: Path
    targets: list[str] = Field(min_length=1)
    features: list[str] | None = None
    text: str | None = None
    test: Path | None = None
    test_size: float = Field(0.25, gt=0, lt=1)
    role: Literal["target", "source"] = "target"
    kind: TaskKind | None = None


def tasks_from_columns(csv: str | Path, targets: list[str], **options: Any) -> dict[str, dict]:
    """Task entries for ``tasks:``, one per label column of ``csv``.

    Args:
        csv: the CSV file.
        targets: label columns; each becomes a task of that name.
        **options: ``features``, ``test``, ``test_size``, ``role``, ``kind`` as in
            :class:`ColumnsConfig`.

    Example:
        >>> sorted(tasks_from_columns("genes.csv", ["a", "b"], features=["x1", "x2"]))
        ['a', 'b']
    """
    spec = ColumnsConfig(csv=Path(csv), targets=targets, **options)
    out = {}
    for column in spec.targets:
        data = {"csv": str(spec.csv), "target": column, "test_size": spec.test_size}
        if spec.text is not None:
            data["text"] = spec.text
        elif spec.features is not None:
            data["features"] = list(spec.features)
        else:
            # The other label columns are labels, not inputs.
            data["exclude"] = [c for c in spec.targets if c != column]
        if spec.test is not None:
            data["test"] = str(spec.test)
        out[column] = {"data": data, "role": spec.role, **({"kind": spec.kind} if spec.kind else {})}
    return out


class StudyConfig(_Frozen):
    """A whole study: the grid ``targets x strategies x fractions x seeds``.

    ``tasks_from_columns:`` (a list of :class:`ColumnsConfig` mappings) adds one task per
    listed label column to ``tasks``.

    Attributes:
        strategies: registered strategies; ``mtl:<method>`` picks a weighting method,
            ``feature-extraction:<source>`` and ``fine-tune:<source>`` a pretrained
            backbone to start from (a pretrained backbone's name, or a key of ``sources``).
        sources: names for pretrained backbones given by prefix, e.g.
            ``{mylm: "hf:/models/my-bert"}``, so strategies can say ``fine-tune:mylm``.
        save_models: keep each run's trained backbone under ``<out>/models/`` so a later
            study can start from it (``run:<out>/<task>/<strategy>/seed<k>``).
        validation: ``shrink`` (default): each run validates on a share of the validation
            split that shrinks with its fraction (at least 5 rows per class, 30 for
            regression), so a low-label run does not pick its epoch on many more labels
            than it trains on; ``fixed``: every run validates on the whole split.
        allow_overlap: run even though some test rows of a target are training or
            validation inputs of another task (refused by default: a model trained on that
            task has seen them, so the target's test score is not a test).
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
    sources: dict[str, str] = Field(default_factory=dict)
    analysis: AnalysisConfig = AnalysisConfig()
    tune: TuneConfig | None = None
    save_models: bool = False
    validation: Literal["shrink", "fixed"] = "shrink"
    allow_overlap: bool = False

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
                raise ValueError(f"tasks_from_columns[{i}]: {_describe(e.errors()[0])}") from None
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
    def _source_names(cls, v: dict[str, str]) -> dict[str, str]:
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
        needs_others = [s for s in self.strategies if s != "scratch"]
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
        return self.model_copy(update={"tasks": tasks})


def error_line(loc: str, msg: str, given: Any = None, show_given: bool = True) -> str:
    """One line for one problem: the field's path (none for the whole config), what was
    wrong, and the value given when it is worth showing."""
    shown = f" (got {given!r})" if show_given else ""
    return f"field '{loc}': {msg}{shown}" if loc else f"{msg}{shown}"


def _describe(err: dict[str, Any]) -> str:
    """One line for the first pydantic error: where, what was wrong, what was expected."""
    loc = ".".join(str(p) for p in err.get("loc", ()) if not str(p).startswith("function-"))
    if err.get("type") == "extra_forbidden":
        parent, _, key = loc.rpartition(".")
        return f"unknown key '{key}'" + (f" in '{parent}'" if parent else " at top level")
    msg = err.get("msg", "invalid value").removeprefix("Value error, ")
    given = err.get("input")
    return error_line(loc, msg, given, show_given=not (isinstance(given, dict) or err.get("type") == "missing"))


def validate(raw: dict[str, Any], base: Path | None = None, *, source: str = "config") -> StudyConfig:
    """Build a :class:`StudyConfig` from plain data, turning validation errors into one line.

    Args:
        raw: the parsed YAML mapping.
        base: folder that relative data paths are resolved against.
        source: name used in messages (usually the config file's path).

    Raises:
        ConfigError: on any unknown key, wrong type or out-of-range value.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of config keys, got {type(raw).__name__}")
    try:
        cfg = StudyConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source}: {_describe(e.errors()[0])}") from None
    return cfg.resolved(base) if base is not None else cfg


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a YAML study config; data paths are taken relative to it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    return validate(raw, path.parent.resolve(), source=str(path))
