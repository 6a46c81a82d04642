"""Run a study: load and check the data, run every pending cell of the grid.

Results are appended to ``results.jsonl`` as runs finish, so an interrupted study loses
nothing finished and a rerun on the same folder resumes where it stopped.
"""

from __future__ import annotations

import io
import json
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from polytask.config import DataConfig, StudyConfig
from polytask.core.errors import ConfigError, PolytaskWarning
from polytask.core.io import write_atomic
from polytask.core.tasks import Task, infer_task, task_notes
from polytask.data.arrays import TEXT_SHAPE, TaskData, check_task_data, is_text
from polytask.data.augment import build_augmenter
from polytask.data.loaders import load_data, source_key
from polytask.data.overlap import test_leaks
from polytask.data.prepare import PreparedTask, as_model_input, prepare_task
from polytask.data.splits import MIN_VAL_PER_CLASS, MIN_VAL_ROWS
from polytask.methods.architectures.multitask import FeatureBackbone, MultiTaskModel
from polytask.methods.backbones.base import from_user_module
from polytask.methods.backbones.build import create_backbone
from polytask.methods.backbones.pretrained import check_name, is_pretrained, save_backbone, text_encoder
from polytask.methods.weighting import uses_rep_grad
from polytask.strategies import (
    FeatureCache,
    Preflight,
    RunContext,
    RunOutcome,
    check_strategy,
    get_strategy,
    is_joint,
    pretrain,
    transfer_source,
    uses_study_pretraining,
    uses_transfer_source,
)
from polytask.study.executor import run_local
from polytask.study.fingerprint import data_digest, module_digest, pretrained_digest, study_fingerprint, versions
from polytask.study.plan import Job, RunSpec, plan_jobs
from polytask.study.progress import StudyProgress
from polytask.study.resolve import load_config as resolve_file
from polytask.study.resolve import resolve, validate
from polytask.study.store import STUDY_FILE, ResultStore, save_predictions
from polytask.study.tune import TUNED_AS, apply, read_tuning, save_tuning, search, search_seed, searched, tuned_strategies

UserBackbone = nn.Module | Callable[[], nn.Module]


class Study:
    """A comparison of strategies on a set of tasks.

    Args:
        config: a :class:`StudyConfig` or the same structure as a plain dict.
        data: in-memory arrays per task name; a task given here needs no ``data:`` in
            the config.
        backbone: the user's own shared layers, as an ``nn.Module`` (re-initialized for
            every run), a zero-argument factory, or a backbone name; replaces
            ``model.backbone``. ``"module:package.module:callable"`` names a function
            returning a pretrained module (allowed here, not in config files).

    :meth:`run_grid` runs it; ``polytask.Study`` (:mod:`polytask.api`) adds ``run()``,
    which then analyses the folder and writes the report.

    Example:
        >>> from polytask import Study
        >>> study = Study.from_yaml("examples/mnist-to-digits.yaml")  # doctest: +SKIP
        >>> summary = study.run(out="runs/demo")  # doctest: +SKIP
    """

    def __init__(self, config: StudyConfig | dict, data: dict[str, TaskData] | None = None, backbone: UserBackbone | None = None):
        # The schema, then every name against the registries (a config from load_config or
        # validate has only been through the schema).
        self.config = resolve(config) if isinstance(config, StudyConfig) else validate(config)
        self.data_override = dict(data or {})
        if isinstance(backbone, str):
            try:
                check_name(backbone, where="backbone", allow_module=True)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        self.backbone = backbone
        self._loaded: tuple[dict[str, TaskData], dict[str, Task]] | None = None
        # What is worth telling the user about the tasks (guessed kinds, misleading metrics).
        self.notes: list[str] = []
        self._encoders: dict[str, Callable] = {}
        self._feature_cache = FeatureCache()

    @classmethod
    def from_yaml(cls, path: str | Path, **kwargs: Any) -> Study:
        """Load a study from a YAML config; data paths are relative to the file."""
        return cls(resolve_file(path), **kwargs)

    # ---- data -------------------------------------------------------------------------

    def load(self) -> tuple[dict[str, TaskData], dict[str, Task]]:
        """Load, type and check every task's data (once); raise :class:`ConfigError` on bad input."""
        if self._loaded is not None:
            return self._loaded
        raw, tasks = {}, {}
        unknown = set(self.data_override) - set(self.config.tasks)
        if unknown:
            raise ConfigError(f"data given for task(s) {sorted(unknown)} not in the config's tasks ({', '.join(self.config.tasks)})")
        self._check_shared_files()
        for name, tcfg in self.config.tasks.items():
            if name in self.data_override:
                d = self.data_override[name]
                if not isinstance(d, TaskData):
                    raise ConfigError(f"data for task '{name}' must be a polytask.data.TaskData, got {type(d).__name__}")
                if d.origin == "arrays":
                    d = TaskData(**{**d.__dict__, "origin": f"arrays for task '{name}'"})
            elif tcfg.data is None:
                raise ConfigError(f"field 'tasks.{name}.data': missing, and no in-memory data was given for task '{name}'")
            else:
                d = load_data(tcfg.data)
            tasks[name] = infer_task(name, d.y_train, tcfg.kind, tcfg.metric)
            check_task_data(d, tasks[name])
            raw[name] = d
        self.notes = []
        for name in tasks:
            self.notes += task_notes(tasks[name], raw[name], reported=self.config.tasks[name].role == "target")
        for note in self.notes:
            warnings.warn(note, PolytaskWarning, stacklevel=2)
        self._check_shapes(raw)
        self._check_leaks(raw)
        self._split_keys = input_groups(raw)
        self._val_floor = validation_floors(self._split_keys, tasks)
        self._check_rep_grad()
        self._loaded = raw, tasks  # what the checks below read through self.load()
        try:
            self.augmenters()  # bad augment options fail now, before any run
            unlabeled = self._load_unlabeled()
            self._fingerprint, self._fingerprint_parts = self._content_fingerprint(raw, tasks, unlabeled)
            self._preflight(tasks)
        except BaseException:
            self._loaded = None
            raise
        return self._loaded

    def resolved_config(self) -> StudyConfig:
        """The config with every task's kind written out, as inferred from its labels."""
        _, tasks = self.load()
        resolved = {n: t.model_copy(update={"kind": tasks[n].kind}) for n, t in self.config.tasks.items()}
        return self.config.model_copy(update={"tasks": resolved})

    @property
    def fingerprint(self) -> str:
        """Hash of what the study's numbers depend on (:mod:`polytask.study.fingerprint`)."""
        self.load()
        return self._fingerprint

    def _load_unlabeled(self) -> dict[str, TaskData]:
        """Unlabelled inputs given as a data source of their own, checked against their task."""
        size = self.config.model.image_size
        out = {}
        for name, tcfg in self.config.tasks.items():
            if isinstance(tcfg.unlabeled, DataConfig):
                d = load_data(tcfg.unlabeled)
                shape = TEXT_SHAPE if is_text(d.x_train) else tuple(as_model_input(d.x_train[:1], size).shape[1:])
                if shape != self._shapes[name]:
                    raise ConfigError(f"field 'tasks.{name}.unlabeled': inputs of shape {shape}, but task '{name}' has inputs of shape {self._shapes[name]}")
                out[name] = d
        return out

    def _content_fingerprint(self, raw: dict[str, TaskData], tasks: dict[str, Task], unlabeled: dict[str, TaskData]) -> tuple[str, dict[str, Any]]:
        """Hash the data, the user's module and named pretrained weights, by content."""
        cfg = self.config
        shape = self._shapes[cfg.targets[0]]
        backbone = None
        if self.backbone is not None and not isinstance(self.backbone, str):
            backbone = module_digest(self.new_backbone(shape))
        elif is_pretrained(self._study_backbone()):
            backbone = pretrained_digest(self.new_backbone(shape, pretrained=True))
        else:
            backbone = self._study_backbone()  # a registered architecture, perhaps named in Python
        sources = {}
        for s in cfg.strategies:
            arg = s.partition(":")[2]
            if arg and uses_transfer_source(s) and arg not in sources:
                sources[arg] = pretrained_digest(self.new_backbone(shape, pretrained=True, name=self._source(arg)))
        return study_fingerprint(cfg, raw, tasks, unlabeled={n: data_digest(d) for n, d in unlabeled.items()}, backbone=backbone, sources=sources)

    def _check_shared_files(self) -> None:
        """Tasks read from one file share its test split, which one column cannot stratify."""
        by_file: dict[str, list[str]] = {}
        for name, tcfg in self.config.tasks.items():
            if name not in self.data_override and tcfg.data is not None and tcfg.data.csv is not None and tcfg.data.test is None:
                by_file.setdefault(source_key(tcfg.data), []).append(name)
        for names in by_file.values():
            stratified = [n for n in names if self.config.tasks[n].data.stratify]
            if len(names) > 1 and stratified:
                raise ConfigError(
                    f"field 'tasks.{stratified[0]}.data.stratify': tasks {', '.join(repr(n) for n in names)} read the same file and share "
                    "one test split, which one label column cannot stratify; drop stratify"
                )

    def _check_leaks(self, raw: dict[str, TaskData]) -> None:
        """No target's test row may be a training input of another task (unless allowed)."""
        if self.config.allow_overlap or len(raw) < 2:
            return
        for target, other, rows, total in test_leaks(raw, self.config.targets):
            raise ConfigError(
                f"task '{target}': {rows} of {total} test rows are training or validation inputs of task '{other}', so a model "
                f"trained on '{other}' has seen them; give '{target}' test rows no task trains on, or set allow_overlap: true to proceed knowingly"
            )

    def _check_shapes(self, raw: dict[str, TaskData]) -> None:
        """Every task must fit the backbone; shared backbones need one input shape."""
        size = self.config.model.image_size
        shapes = {n: TEXT_SHAPE if is_text(d.x_train) else tuple(as_model_input(d.x_train[:1], size).shape[1:]) for n, d in raw.items()}
        self._shapes = shapes
        if set(self.config.strategies) != {"scratch"} and len(set(shapes.values())) > 1:
            listed = ", ".join(f"'{n}' {s}" for n, s in shapes.items())
            hint = "; set model.image_size so image tasks share one size" if any(len(s) == 3 and s != TEXT_SHAPE for s in shapes.values()) else ""
            raise ConfigError(f"tasks have different input shapes ({listed}) but share one backbone{hint}")
        for shape in set(shapes.values()):
            self.new_backbone(shape)

    def _check_rep_grad(self) -> None:
        """Gradients on the representation need every task on the same input rows."""
        cfg = self.config
        uses = [s for s in cfg.strategies if (m := cfg.mtl_method(s)) is not None and uses_rep_grad(m, cfg.mtl.rep_grad)]
        keys = {self._split_keys.get(n, n) for n in cfg.tasks}
        if uses and len(keys) > 1:
            own = [n for n in cfg.tasks if n not in self._split_keys]
            raise ConfigError(
                f"strategy '{uses[0]}' takes every task's gradient of the representation on one shared batch, so the tasks must share "
                f"their inputs (label columns of one file, or one builtin's targets); task(s) {', '.join(repr(n) for n in own) or 'of several groups'} "
                "have inputs of their own"
            )

    def new_backbone(self, input_shape: tuple, pretrained: bool = False, name: str | None = None) -> nn.Module:
        """Backbone ``name`` (default ``model.backbone``) for inputs of ``input_shape``.

        Randomly initialized unless ``pretrained``; the user's own module (``backbone=``)
        replaces ``model.backbone``.
        """
        if name is None and self.backbone is not None:
            if isinstance(self.backbone, str):
                return create_backbone(self.backbone, input_shape, self.config.model, pretrained=pretrained)
            return from_user_module(self.backbone, input_shape)
        return create_backbone(name or self.config.model.backbone, input_shape, self.config.model, pretrained=pretrained)

    def encoder(self, source: str | None = None) -> Callable | None:
        """Tokenizer of the text backbone ``source`` (default: the study's backbone), cached."""
        key = source or ""
        if key not in self._encoders:
            name = source or (self._study_backbone() if isinstance(self.backbone, str | None) else None)
            tok = text_encoder(name, self.config.model) if name else None
            if tok is None:
                tok = getattr(self.new_backbone(TEXT_SHAPE, name=source), "tokenizer", None)
            if not callable(tok):
                raise ConfigError(f"backbone '{name or 'of the study'}' has no tokenizer; text tasks need gru, minilm, hf:<name> or a module with .tokenizer")
            self._encoders[key] = tok
        return self._encoders[key]

    def prepare(self, task: str, seed: int, fraction: float, hide_labels: bool = False, source: str | None = None) -> PreparedTask:
        """Tensors of ``task`` for one seed and training fraction (see :func:`prepare_task`).

        ``source`` names the pretrained backbone whose tokenizer encodes text tasks.
        """
        raw, tasks = self.load()
        key = self._split_keys.get(task)
        encode = self.encoder(source) if is_text(raw[task].x_train) else None
        size = self.config.model.image_size
        return prepare_task(
            raw[task],
            tasks[task],
            seed,
            fraction,
            size,
            split_key=key,
            hide_labels=hide_labels,
            encode=encode,
            validation=self.config.validation,
            val_min_rows=self._val_floor.get(key, MIN_VAL_ROWS),
        )

    # ---- running ----------------------------------------------------------------------

    def _pretrain_fraction(self, fraction: float) -> float:
        """The fraction in-study pretraining for a run at ``fraction`` uses: the other
        targets' (sources always use all their rows). With one target it uses sources
        alone, so every fraction shares one pretraining."""
        return fraction if len(self.config.targets) > 1 else 1.0

    def _pretrained_path(self, out: Path, target: str, seed: int, fraction: float) -> Path:
        return out / "pretrained" / target / f"{self._pretrain_fraction(fraction):g}" / f"seed{seed}.pt"

    def _context(self, out: Path, spec: RunSpec, callbacks=(), targets: tuple[str, ...] = (), config: StudyConfig | None = None) -> RunContext:
        _, tasks = self.load()
        return RunContext(
            target=spec.task,
            targets=targets,
            fraction=spec.fraction,
            seed=spec.seed,
            config=config or self.config,
            tasks=tasks,
            input_shape=self._shapes[spec.task],
            prepare=lambda name, frac, hide=False, source=None: self.prepare(name, spec.seed, frac, hide, self._source(source)),
            new_backbone=self.new_backbone,
            pretrained=lambda source=None: self._pretrained(out, spec, callbacks, source),
            pretrained_heads=lambda source=None: self._pretrained_heads(out, spec, callbacks, source),
            augment=lambda source=None: self.augmenters(self._source(source)),
            feature_cache=self._feature_cache,
            callbacks=callbacks,
            input_groups=dict(self._split_keys),
        )

    def _source(self, source: str | None) -> str | None:
        """The backbone a strategy's ``:<source>`` names (aliases resolved); None: the study's."""
        return self.config.sources.get(source, source) if source else None

    def _named_start(self, source: str | None) -> str | None:
        """The pretrained backbone a transfer strategy starts from: ``source`` (aliases
        resolved), else the study's backbone when it has pretrained weights; None means
        layers pretrained inside the study."""
        name = self._source(source)
        if name is None and isinstance(self.backbone, str | None) and is_pretrained(self._study_backbone()):
            name = self._study_backbone()
        return name

    def _preflight(self, tasks: dict[str, Task]) -> None:
        """Every strategy's own check, before anything is written (see :class:`Preflight`)."""
        shape = self._shapes[self.config.targets[0]]

        def backbone(source: str | None = None) -> nn.Module:
            name = self._named_start(source)
            return self.new_backbone(shape, pretrained=True, name=name) if name else self.new_backbone(shape)

        for strategy in self.config.strategies:
            check_strategy(Preflight(strategy, self.config, tasks, backbone))

    def _study_backbone(self) -> str:
        return self.backbone if isinstance(self.backbone, str) else self.config.model.backbone

    def _pretrained(self, out: Path, spec: RunSpec, callbacks=(), source: str | None = None) -> tuple[nn.Module, float]:
        """The backbone a transfer strategy starts from, and the seconds its training took.

        A named ``source`` (or a ``model.backbone`` with pretrained weights) is loaded as
        shipped. Otherwise: shared layers pretrained on every task but ``spec.task`` for
        ``spec.seed`` (the other targets at the run's fraction, the sources in full),
        trained once per (target, seed, fraction) and cached in the study folder, so both
        transfer strategies start from the same weights (and, with one target, every
        fraction too).
        """
        self.load()
        shape = self._shapes[spec.task]
        name = self._named_start(source)
        if name is not None:
            return self.new_backbone(shape, pretrained=True, name=name), 0.0
        cached = self._pretrained_cache(out, spec, callbacks)
        backbone = self.new_backbone(shape)
        backbone.load_state_dict(cached["state"])
        return backbone, float(cached["seconds"])

    def _pretrained_cache(self, out: Path, spec: RunSpec, callbacks=()) -> dict[str, Any]:
        """The cached in-study pretraining of (target, seed, fraction): backbone and heads' states."""
        path = self._pretrained_path(out, spec.task, spec.seed, spec.fraction)
        cached = self._load_pretraining(path)
        if cached is None:
            pre = RunSpec(spec.task, "pretrain", self._pretrain_fraction(spec.fraction), spec.seed)
            state, heads, seconds = pretrain(self._context(out, pre, callbacks))
            cached = {"state": state, "heads": heads, "seconds": seconds, "fingerprint": self.fingerprint}
            buf = io.BytesIO()
            torch.save(cached, buf)
            write_atomic(path, buf.getvalue())  # a temporary file of its own: concurrent writers never collide
        return cached

    def _load_pretraining(self, path: Path) -> dict[str, Any] | None:
        """The pretraining cached at ``path`` for this study's fingerprint, or None."""
        if not path.exists():
            return None
        try:
            cached = torch.load(path, weights_only=True)
        except Exception:  # a torn or foreign file is simply not a cached pretraining
            return None
        ok = isinstance(cached, dict) and cached.get("fingerprint") == self.fingerprint and "heads" in cached and "state" in cached
        return cached if ok else None

    def _pretrained_heads(self, out: Path, spec: RunSpec, callbacks=(), source: str | None = None) -> nn.ModuleDict | None:
        """Heads of the tasks the in-study pretrained layers learned (None for named backbones)."""
        if self._named_start(source) is not None:
            return None
        _, tasks = self.load()
        cached = self._pretrained_cache(out, spec, callbacks)
        model = MultiTaskModel(self.new_backbone(self._shapes[spec.task]), [t for n, t in tasks.items() if n != spec.task])
        model.heads.load_state_dict(cached["heads"])
        return model.heads

    def augmenters(self, source: str | None = None) -> dict[str, Any]:
        """Each augmented task's augmenter; text ones use ``source``'s pad and mask ids."""
        raw, _ = self.load()
        out: dict[str, Any] = {}
        for name, tcfg in self.config.tasks.items():
            if not tcfg.augment:
                continue
            d = raw[name]
            pad_id = mask_id = None
            if is_text(d.x_train):
                kind = "text"
                tok = self.encoder(source)
                pad_id, mask_id = getattr(tok, "pad_id", 0), getattr(tok, "mask_id", None)
            else:
                kind = "image" if len(self._shapes[name]) == 3 else "tabular"
            try:
                out[name] = build_augmenter(kind, dict(tcfg.augment), pad_id=pad_id or 0, mask_id=mask_id)
            except ValueError as e:
                raise ConfigError(f"tasks.{name}.augment: {e}") from None
        return {k: v for k, v in out.items() if v is not None}

    def _save_backbone(self, out: Path, spec: RunSpec, backbone: nn.Module) -> None:
        """Keep a run's trained shared layers for ``run:<out>/<task>/<strategy>/seed<k>``."""
        path = out / "models" / spec.task / spec.strategy / f"{spec.fraction:g}" / f"seed{spec.seed}.pt"
        source = transfer_source(self.config, spec.strategy) if uses_transfer_source(spec.strategy) else None
        name = source or (self._study_backbone() if isinstance(self.backbone, str | None) else None)
        if name is None:
            return  # the user's own module: nothing a later study could rebuild by name
        if isinstance(backbone, FeatureBackbone):
            return
        save_backbone(path, backbone, name, self.config.model, self._shapes[spec.task])

    def execute(self, out: Path, spec: RunSpec, callbacks=()) -> dict[str, Any]:
        """Run one cell and return its row (a joint strategy's job runs whole; nothing is stored)."""
        job = Job(spec.strategy, spec.fraction, spec.seed, tuple(self.config.targets) if is_joint(spec.strategy) else (spec.task,))
        return next(r for r in self.execute_job(out, job, callbacks) if r["task"] == spec.task)

    def execute_job(self, out: Path, job: Job, callbacks=(), config: StudyConfig | None = None, keep: bool = True) -> list[dict[str, Any]]:
        """Train one job's model and return a row per cell; a failure fails every cell of it.

        Each cell's test predictions go to ``predictions/`` before its row is returned, so
        a stored row always has them.

        Args:
            out: the study folder.
            job: what to train.
            callbacks: engine callbacks (progress).
            config: settings for this job instead of the study's (a tuning trial); by
                default the study's, with the values ``tune:`` chose for the job.
            keep: save predictions (and models, with ``save_models``); a trial keeps none.
        """
        _, tasks = self.load()
        tuned = None
        if config is None:
            config, tuned = self._tuned(out, job, callbacks)
        rows = {
            spec.task: {
                "run_id": spec.run_id,
                "task": spec.task,
                "strategy": spec.strategy,
                "fraction": spec.fraction,
                "seed": spec.seed,
                "metric": tasks[spec.task].metric,
                "model_id": job.model_id,
                "fingerprint": self.fingerprint,
                "versions": versions(),
                **({"tuned": tuned} if tuned else {}),
            }
            for spec in job.specs
        }
        try:
            ctx = self._context(out, job.specs[0], callbacks, targets=job.tasks, config=config)
            result = get_strategy(job.strategy)(ctx)
            outcomes: dict[str, RunOutcome] = result if isinstance(result, dict) else {job.tasks[0]: result}
            for spec in job.specs:
                outcome = outcomes[spec.task]
                if keep and outcome.predictions is not None:
                    save_predictions(out, spec, self.fingerprint, outcome.predictions)
                rows[spec.task].update(outcome.record(), status="ok", error=None)
                if keep and self.config.save_models and outcome.backbone is not None:
                    self._save_backbone(out, spec, outcome.backbone)
        except (KeyboardInterrupt, ConfigError):
            raise
        except Exception as e:  # a failing run is recorded and the study goes on
            last = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
            where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
            error = f"{type(e).__name__}: {e}{where}".replace("\n", " ")
            for row in rows.values():
                row.update(status="failed", error=error)
                for k in ("test", "val"):
                    row.pop(k, None)
        finished = time.strftime("%Y-%m-%dT%H:%M:%S")
        return [{**row, "finished_at": finished} for row in rows.values()]

    def run_grid(self, out: str | Path | None = None, workers: int = 1, progress: bool = True) -> Path:
        """Run every pending cell of the grid, appending each row to ``results.jsonl`` as it
        finishes (the analysis and the report are :func:`polytask.finalize.finalize`'s).

        Args:
            out: study folder (default ``runs/<name>``); finished runs found there are kept.
            workers: processes running jobs in parallel (1: in this process).
            progress: show progress bars on stderr.

        Returns:
            The study folder.
        """
        out = Path(out) if out is not None else Path("runs") / self.config.name
        self.load()
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "config.yaml", yaml.safe_dump(self.resolved_config().model_dump(mode="json", by_alias=True), sort_keys=False))
        fingerprint = self.fingerprint
        record = {"fingerprint": fingerprint, "parts": self._fingerprint_parts, "versions": versions(), "notes": self.notes}
        write_atomic(out / STUDY_FILE, json.dumps(record, indent=2))
        store = ResultStore(out / "results.jsonl")
        pending = self.pending_jobs(store)
        with StudyProgress(total=sum(len(j.tasks) for j in pending), enabled=progress) as bar:
            for job in pending:  # every search before any seed runs (and before workers fork)
                self._tuned(out, job, [bar])
            if workers <= 1 or len(pending) <= 1:
                for job in pending:
                    bar.start_run(job.label)
                    for row in self.execute_job(out, job, callbacks=[bar]):
                        store.append(row)
                        bar.finish_run(row)
            else:
                self._run_parallel(out, pending, workers, store, bar)
        return out

    # ---- tuning -------------------------------------------------------------------------

    def _tuned(self, out: Path, job: Job, callbacks=()) -> tuple[StudyConfig, dict[str, Any] | None]:
        """The settings ``job`` runs with and the values ``tune:`` chose for it (searching
        first when the study folder holds no search for it yet)."""
        cfg = self.config
        if cfg.tune is None or TUNED_AS.get(job.strategy, job.strategy) not in tuned_strategies(cfg):
            return cfg, None
        strategy = TUNED_AS.get(job.strategy, job.strategy)
        key = "+".join(job.tasks)
        models = read_tuning(out, strategy, job.fraction, self.fingerprint)
        if key not in models:
            models[key] = self._search(out, Job(strategy, job.fraction, cfg.tune.seed, job.tasks), callbacks)
            save_tuning(out, strategy, job.fraction, self.fingerprint, models)
        best = models[key]["best"]
        return apply(cfg, job.strategy, best, len(cfg.tasks)), best

    def _search(self, out: Path, job: Job, callbacks=()) -> dict[str, Any]:
        """The ``tune:`` search for one model: trials on the tuning seed, scored on validation."""
        cfg = self.config
        _, tasks = self.load()
        first: dict[str, float] = {}
        pretrain = {"seconds": 0.0}

        def run_trial(params: dict[str, Any]) -> tuple[float | None, float]:
            rows = self.execute_job(out, job, callbacks, config=apply(cfg, job.strategy, params, len(cfg.tasks)), keep=False)
            if any(r["status"] != "ok" for r in rows):
                return None, 0.0
            pretrain["seconds"] = float(rows[0].get("pretrain_seconds") or 0.0)  # one shared pretraining, not tuned
            # Each target's validation metric, signed to higher-is-better and relative to its first value.
            scores = []
            for r in rows:
                signed = (1.0 if tasks[r["task"]].scorer.higher_is_better else -1.0) * r["val"]
                first.setdefault(r["task"], abs(r["val"]) or 1.0)
                scores.append(signed / first[r["task"]])
            return sum(scores) / len(scores), float(rows[0]["train_seconds"])

        progress = [c for c in callbacks if hasattr(c, "start_run")]

        def show(i: int) -> None:
            for c in progress:
                c.start_run(f"tuning {job.strategy} @ {job.fraction:g}: trial {i + 1}/{cfg.tune.trials}")

        space = searched(cfg, job.strategy)
        seed = search_seed(cfg.tune.seed, job.strategy, job.fraction, "+".join(job.tasks))
        record = search(run_trial, space, cfg.tune.trials, seed, len(cfg.tasks), progress=show)
        record.update(pretrain_seconds=pretrain["seconds"], space=space, seed=cfg.tune.seed)
        return record

    def planned_jobs(self) -> list[Job]:
        """Every job of the study (:func:`~polytask.study.plan.plan_jobs`)."""
        return plan_jobs(self.config)

    def pending_jobs(self, store: ResultStore) -> list[Job]:
        """The jobs with a cell that has no finished row under this study's fingerprint."""
        done = {r["run_id"] for r in store.rows() if r.get("status") == "ok" and r.get("fingerprint") == self.fingerprint}
        return [j for j in self.planned_jobs() if any(s.run_id not in done for s in j.specs)]

    def searches_needed(self, out: Path, jobs: list[Job]) -> list[tuple[str, float, str]]:
        """The ``tune:`` searches ``jobs`` need that the study folder does not hold yet:
        ``(strategy, fraction, model)``."""
        if self.config.tune is None:
            return []
        tuned = tuned_strategies(self.config)
        wanted = {(TUNED_AS.get(j.strategy, j.strategy), j.fraction, "+".join(j.tasks)) for j in jobs}
        return sorted(w for w in wanted if w[0] in tuned and w[2] not in read_tuning(Path(out), w[0], w[1], self.fingerprint))

    def pretrainings_needed(self, out: Path, jobs: list[Job]) -> list[RunSpec]:
        """The in-study pretrainings ``jobs`` need that the study folder does not hold yet,
        one per (target, seed, fraction they use)."""
        needs = {
            (s.task, s.seed, self._pretrain_fraction(s.fraction)) for j in jobs for s in j.specs if uses_study_pretraining(s.strategy, self.config)
        }
        specs = [RunSpec(t, "pretrain", f, s) for t, s, f in sorted(needs)]
        return [spec for spec in specs if not self._cached_pretraining(Path(out), spec)]

    def _cached_pretraining(self, out: Path, spec: RunSpec) -> bool:
        return self._load_pretraining(self._pretrained_path(out, spec.task, spec.seed, spec.fraction)) is not None

    def _run_parallel(self, out: Path, pending: list[Job], workers: int, store: ResultStore, bar: StudyProgress) -> None:
        """Run jobs in forked worker processes (:func:`polytask.study.executor.run_local`),
        the pretrainings they need first, storing each row as it arrives."""

        def deliver(rows: list[dict[str, Any]]) -> None:
            for row in rows:
                store.append(row)
                bar.finish_run(row)

        run_local(
            pretrain=lambda spec: self._pretrained(out, spec),
            execute=lambda job: self.execute_job(out, job),
            pretrainings=self.pretrainings_needed(out, pending),
            jobs=pending,
            workers=workers,
            deliver=deliver,
        )


def validation_floors(split_keys: dict[str, str], tasks: dict[str, Task]) -> dict[str, int]:
    """Per group of tasks sharing one carve, the fewest rows its shrunken validation split
    keeps: enough for each task of the group (5 rows per class, 30 for regression), so the
    group keeps one set of rows."""
    floors: dict[str, int] = {}
    for name, key in split_keys.items():
        t = tasks[name]
        floor = MIN_VAL_ROWS if t.kind == "regression" else MIN_VAL_PER_CLASS * (2 if t.kind == "binary" else t.n_outputs)
        floors[key] = max(floors.get(key, 0), floor)
    return floors


def input_groups(raw: dict[str, TaskData]) -> dict[str, str]:
    """Split keys of tasks that share their inputs: the same train, validation and test rows.

    Returns ``{task: key}`` for every task whose inputs equal another's (several label
    columns of one file, or one builtin with several targets), the key naming the group's
    first task; tasks with inputs of their own are left out.
    """
    keys: dict[str, str] = {}
    names = list(raw)
    for i, a in enumerate(names):
        if a in keys:
            continue
        for b in names[i + 1 :]:
            if b not in keys and _same_inputs(raw[a], raw[b]):
                keys[a] = keys[b] = f"inputs:{a}"
    return keys


def _same_inputs(a: TaskData, b: TaskData) -> bool:
    def same(u, v) -> bool:
        if u is None or v is None:
            return u is None and v is None
        return u is v or (u.shape == v.shape and np.array_equal(u, v))

    return same(a.x_train, b.x_train) and same(a.x_val, b.x_val) and same(a.x_test, b.x_test)


