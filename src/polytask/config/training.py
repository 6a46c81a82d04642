"""How runs train: the engine's rules, fine-tuning, domain adaptation, multi-task
balancing, and tuning."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from polytask.config.base import Frozen, WithSections


class TrainConfig(Frozen):
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
        device: where runs train: ``auto`` (CUDA, then MPS, then the CPU), ``cpu``,
            ``cuda``, ``cuda:N`` or ``mps``; ``--device`` overrides it. Not part of the
            study's fingerprint: each result row records the device it ran on, and the
            analysis warns when a study's rows come from different devices.
        precision: ``32`` (float32), ``bf16-mixed`` or ``16-mixed`` (``torch.autocast``;
            16-mixed also scales the loss so that float16 gradients do not underflow).
            Parameters, optimizer state and combined task gradients stay in float32.
        max_minutes: the time budget of each training: a run (an in-study pretraining it
            starts from has a budget of its own); a run that takes longer stops and is
            recorded ``failed`` with the reason, and the study goes on. Not part of the fingerprint (a finished run's numbers do not
            depend on it): rerun with a larger budget to run the failed ones again.
    """

    max_epochs: int = Field(100, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(10, ge=1)
    min_steps_per_epoch: int = Field(20, ge=1)
    backbone_lr_ratio: float = Field(0.1, gt=0, le=1)
    device: str = "auto"
    precision: Literal["32", "bf16-mixed", "16-mixed"] = "32"
    max_minutes: float | None = Field(None, gt=0)

    @field_validator("device")
    @classmethod
    def _device_name(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v):
            raise ValueError("must be auto, cpu, cuda, cuda:N or mps")
        return v

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class FineTuneConfig(WithSections):
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
        if self.lora is not None and (self.regularizer in ("l2-sp", "delta")):
            raise ValueError(f"lora renames the backbone's weights, so '{self.regularizer}' cannot match them to the pretrained ones; drop one")
        if self.unfreeze == "gradual" and self.layers != "all":
            raise ValueError("unfreeze: gradual already decides which stages train; leave 'layers' at 'all'")
        return self


class DomainAdaptConfig(WithSections):
    """Settings of the ``domain-adapt:<method>`` strategies (config key ``domain-adapt``).

    Attributes:
        validator: how a checkpoint is chosen without target labels
            (:mod:`polytask.methods.adaptation.validators`: ``source-val``, ``dev``, ``snd``,
            ``entropy``, ``im``).
        <method>: hyperparameters of one method, e.g. ``dann: {trade_off: 1.0}``.
    """

    validator: str = "dev"


class MTLConfig(WithSections):
    """How the ``mtl`` strategy balances its tasks.

    ``weighting`` names a method of :mod:`polytask.methods.weighting`; its hyperparameters go in
    a section named after it, e.g. ``mtl: {weighting: cagrad, cagrad: {c: 0.5}}``. The
    strategy ``mtl:<method>`` runs another method with its section's hyperparameters, so
    one study can compare several side by side.
    """

    weighting: str = "ew"
    rep_grad: bool = False
    sampling: Literal["uniform", "proportional", "temperature"] = "uniform"
    temperature: float = Field(2.0, gt=0)


TUNABLE_TRAIN = ("lr", "weight_decay", "backbone_lr_ratio")


class TuneConfig(Frozen):
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
