"""Run a study: load and check the data, run every pending cell of the grid.

Results are appended to ``results.jsonl`` as runs finish, so an interrupted study loses
nothing finished and a rerun on the same folder resumes where it stopped.

:class:`Study` loads and checks the data through :class:`~polytask.study.inputs.StudyInputs`
and builds the models its runs start from through :class:`~polytask.study.models.StudyModels`;
here are the grid, each job's run, the in-study pretraining's cache and the ``tune:`` searches.
"""

from __future__ import annotations

import copy
import io
import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from polytask.config import StudyConfig
from polytask.core.errors import ConfigError, storage_error
from polytask.core.io import write_atomic
from polytask.core.tasks import Task
from polytask.data.arrays import TaskData
from polytask.data.splits import holdout, rng_for
from polytask.methods.backbones import check_name
from polytask.strategies import FeatureCache, RunContext, RunOutcome, get_strategy, is_joint, pretrain, pretrain_ssl, ssl_source, uses_study_pretraining
from polytask.study.executor import run_local
from polytask.study.fingerprint import versions
from polytask.study.inputs import StudyInputs, input_groups, validation_floors
from polytask.study.models import StudyModels, UserBackbone
from polytask.study.plan import Job, RunSpec, plan_jobs
from polytask.study.progress import StudyProgress
from polytask.study.ray_executor import check_executor, run_ray
from polytask.study.resolve import load_config as resolve_file
from polytask.study.resolve import resolve, validate
from polytask.study.store import STUDY_FILE, ResultStore, save_predictions
from polytask.study.tracking import Trackers
from polytask.study.tune import TUNED_AS, apply, read_tuning, save_tuning, search, search_seed, searched, tuned_strategies, tuning_path
from polytask.training.budget import time_budget
from polytask.training.devices import device_name, resolve_device, worker_gpus

# The strategy field of a self-supervised source's pretraining spec: pretrain-ssl:<source>.
SSL_PRETRAIN = "pretrain-ssl:"

# Loading the data and building the models live in polytask.study.inputs and
# polytask.study.models; these names stay importable from here.
__all__ = ["Study", "UserBackbone", "input_groups", "validation_floors"]


class Study(StudyInputs, StudyModels):
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
        # Inputs converted once per task (StudyInputs.model_inputs), and the code columns
        # of table inputs with the backbones already noted as reading them as numbers
        # (set when the data loads; StudyModels).
        self._model_inputs: dict[tuple[str, str | None], Any] = {}
        self._codes: dict[tuple, tuple[list[str], tuple[tuple[int, int], ...]]] = {}
        self._code_notes: set[str] = set()
        # Self-supervised sources' own data, loaded with the study, and as model inputs.
        self._ssl_data: dict[str, TaskData] = {}
        self._ssl_inputs: dict[str, torch.Tensor] = {}
        self._store: Path | None = None
        # The sinks the driving process logs finished runs to (set up by run_grid).
        self.trackers: Trackers | None = None

    @classmethod
    def from_yaml(cls, path: str | Path, **kwargs: Any) -> Study:
        """Load a study from a YAML config; data paths are relative to the file."""
        return cls(resolve_file(path), **kwargs)

    # ---- running ----------------------------------------------------------------------

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

    def _pretrained_cache(self, out: Path, spec: RunSpec, callbacks=()) -> dict[str, Any]:
        """The cached in-study pretraining of (target, seed, fraction): backbone and heads' states."""
        path = self._pretrained_path(out, spec.task, spec.seed, spec.fraction)
        cached = self._load_pretraining(path)
        if cached is None:
            pre = RunSpec(spec.task, "pretrain", self._pretrain_fraction(spec.fraction), spec.seed)
            with time_budget(self.config.train.max_minutes):
                state, heads, seconds = pretrain(self._context(out, pre, callbacks))
            cached = {"state": state, "heads": heads, "seconds": seconds, "fingerprint": self.fingerprint}
            buf = io.BytesIO()
            torch.save(cached, buf)
            write_atomic(path, buf.getvalue())  # a temporary file of its own: concurrent writers never collide
        return cached

    def _ssl_cache(self, out: Path, spec: RunSpec, alias: str, callbacks=()) -> dict[str, Any]:
        """The layers self-supervised source ``alias`` learned for (target, seed): trained once
        and cached in the study folder (``pretrained-ssl/<alias>/<target>/seed<k>.pt``).

        Its inputs: the source's ``data`` (training inputs, as loaded and checked with the
        study), else the target's own training inputs for this seed: every training row
        (labels unused, whatever the run's fraction), never the seed's validation rows or a
        test row. A fifth of them, drawn per seed, choose the pretraining's epoch.
        """
        path = self._ssl_path(out, alias, spec.task, spec.seed)
        cached = self._load_pretraining(path, need_heads=False)
        if cached is not None:
            return cached
        source = self.config.sources[alias]
        if source.data is None:
            x = self.prepare(spec.task, spec.seed, 1.0).train.x
        else:
            x = self._ssl_inputs[alias]
        x = x if isinstance(x, torch.Tensor) else x[torch.arange(len(x))]
        keep, held = holdout(np.zeros(len(x)), 0.2, rng_for(spec.seed, alias, "ssl-val"), stratify=False)
        augment = self._ssl_augmenter(spec.task, source) if source.pretrain == "simclr" else None
        ctx = self._context(out, RunSpec(spec.task, f"{SSL_PRETRAIN}{alias}", 1.0, spec.seed), callbacks)
        with time_budget(self.config.train.max_minutes):
            state, seconds = pretrain_ssl(ctx, source, x[torch.as_tensor(keep)], x[torch.as_tensor(held)], augment)
        cached = {"state": state, "seconds": seconds, "fingerprint": self.fingerprint}
        buf = io.BytesIO()
        torch.save(cached, buf)
        write_atomic(path, buf.getvalue())
        return cached

    def execute(self, out: Path, spec: RunSpec, callbacks=()) -> dict[str, Any]:
        """Run one cell and return its row (a joint strategy's job runs whole; nothing is stored)."""
        job = Job(spec.strategy, spec.fraction, spec.seed, tuple(self.config.targets) if is_joint(spec.strategy) else (spec.task,))
        return next(r for r in self.execute_job(out, job, callbacks) if r["task"] == spec.task)

    def input_shape(self, task: str) -> tuple:
        """The shape of one sample of ``task`` as its backbone reads it (after loading)."""
        self.load()
        return self._shapes[task]

    def train_job(self, out: Path, job: Job, callbacks=(), config: StudyConfig | None = None) -> dict[str, RunOutcome]:
        """Train one job's model through its strategy; the outcome of each of its cells
        (a joint strategy's cells share one model). Errors propagate."""
        ctx = self._context(out, job.specs[0], callbacks, targets=job.tasks, config=config)
        transforms, run_tasks, prepare = {}, {}, ctx.prepare

        def prepare_and_note(name: str, *args, **kwargs):
            prepared = prepare(name, *args, **kwargs)
            transforms[name], run_tasks[name] = prepared.transform, prepared.task
            return prepared

        ctx.prepare = prepare_and_note
        result = get_strategy(job.strategy)(ctx)
        outcomes = result if isinstance(result, dict) else {job.tasks[0]: result}
        for o in outcomes.values():
            o.transforms, o.run_tasks = dict(transforms), dict(run_tasks)
        return outcomes

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
            config, tuned = self.tuned_config(out, job, callbacks)
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
                "versions": {**versions(), "device": device_name(resolve_device(self.config.train.device))},
                **({"tuned": tuned} if tuned else {}),
            }
            for spec in job.specs
        }
        try:
            with time_budget(config.train.max_minutes):
                outcomes = self.train_job(out, job, callbacks, config)
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

    def run_grid(self, out: str | Path | None = None, workers: int = 1, progress: bool = True, executor: str = "local", address: str | None = None) -> Path:
        """Run every pending cell of the grid, appending each row to ``results.jsonl`` as it
        finishes (the analysis and the report are :func:`polytask.finalize.finalize`'s).

        Args:
            out: study folder (default ``runs/<name>``); finished runs found there are kept.
            workers: processes running jobs in parallel (1: in this process); local executor only.
            progress: show progress bars on stderr.
            executor: ``local`` (this machine, ``workers`` processes) or ``ray`` (each job a
                Ray task: :func:`polytask.study.ray_executor.run_ray`).
            address: with ``ray``, ``HOST:PORT`` of the cluster's head (None: ``RAY_ADDRESS``,
                else a Ray instance started on this machine for the study).

        Returns:
            The study folder.
        """
        check_executor(executor, workers, address)
        self.trackers = Trackers(self.config)  # a sink whose package is missing: one line, before anything is written
        out = Path(out) if out is not None else Path("runs") / self.config.name
        self.use_folder(out)
        self.load()
        if executor == "local":  # on Ray the workers' devices count, checked on the cluster
            resolve_device(self.config.train.device)  # a device this machine lacks fails before anything is written
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise storage_error(out, e) from None
        write_atomic(out / "config.yaml", yaml.safe_dump(self.resolved_config().model_dump(mode="json", by_alias=True), sort_keys=False))
        fingerprint = self.fingerprint
        record = {"fingerprint": fingerprint, "parts": self._fingerprint_parts, "versions": versions(), "notes": self.notes}
        write_atomic(out / STUDY_FILE, json.dumps(record, indent=2))
        store = ResultStore(out / "results.jsonl")
        finished = [r for r in store.rows() if r.get("status") == "ok" and r.get("fingerprint") == fingerprint]
        self.trackers.start(self.config, fingerprint, out)
        for row in finished:  # finished before tracking was on, or while a sink was down
            self.trackers.log(row)
        pending = self.pending_jobs(store)
        with StudyProgress(total=sum(len(j.tasks) for j in pending), enabled=progress) as bar:
            deliver = self._deliver(store, bar, {r["run_id"] for r in finished})
            for job in pending:  # every search before any seed runs (and before workers fork)
                self.tuned_config(out, job, [bar])
            if executor == "ray":
                if pending:
                    self._run_on_ray(out, pending, deliver, address)
            elif workers <= 1 or len(pending) <= 1:
                for job in pending:
                    bar.start_run(job.label)
                    deliver(self.execute_job(out, job, callbacks=[bar]))
            else:
                self._run_parallel(out, pending, workers, deliver)
        return out

    def _deliver(self, store: ResultStore, bar: StudyProgress, done: set[str]) -> Callable[[list[dict[str, Any]]], None]:
        """What stores a job's rows as they arrive: each appended to ``results.jsonl``,
        shown and tracked, except a cell in ``done`` (the run ids the folder holds a
        finished row of). A job with several cells (one model for every target) runs again
        whole when a study stopped between storing its rows; the cells it had stored keep
        their one row."""

        def deliver(rows: list[dict[str, Any]]) -> None:
            for row in rows:
                if row["run_id"] in done:
                    bar.finish_run(row)
                    continue
                store.append(row)
                bar.finish_run(row)
                self.trackers.log(row)
                if row.get("status") == "ok":
                    done.add(row["run_id"])

        return deliver

    # ---- tuning -------------------------------------------------------------------------

    def tuned_config(self, out: Path, job: Job, callbacks=()) -> tuple[StudyConfig, dict[str, Any] | None]:
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
        needs = {(s.task, s.seed, self._pretrain_fraction(s.fraction)) for j in jobs for s in j.specs if uses_study_pretraining(s.strategy, self.config)}
        specs = [RunSpec(t, "pretrain", f, s) for t, s, f in sorted(needs)]
        return [spec for spec in specs if not self._cached_pretraining(Path(out), spec)]

    def starts_needed(self, out: Path, jobs: list[Job]) -> list[RunSpec]:
        """Every pretraining ``jobs`` start from that the study folder does not hold yet: the
        in-study ones (``pretrain``) and the self-supervised sources' (``pretrain-ssl:<name>``),
        which executors run before the jobs (:meth:`pretrain_start`)."""
        ssl = [RunSpec(task, f"{SSL_PRETRAIN}{alias}", 1.0, seed) for alias, task, seed in self.ssl_pretrainings_needed(out, jobs)]
        return self.pretrainings_needed(out, jobs) + ssl

    def pretrain_start(self, out: Path, spec: RunSpec) -> None:
        """Train and cache the layers ``spec`` (one of :meth:`starts_needed`) names."""
        if spec.strategy.startswith(SSL_PRETRAIN):
            self._ssl_cache(out, spec, spec.strategy.removeprefix(SSL_PRETRAIN))
        else:
            self._pretrained_cache(out, spec)

    def ssl_pretrainings_needed(self, out: Path, jobs: list[Job]) -> list[tuple[str, str, int]]:
        """The self-supervised pretrainings ``jobs`` need that the study folder does not hold
        yet, one per (source, target, seed)."""
        needs = {(alias, s.task, s.seed) for j in jobs for s in j.specs if (alias := ssl_source(self.config, s.strategy))}
        return [n for n in sorted(needs) if self._load_pretraining(self._ssl_path(Path(out), *n), need_heads=False) is None]

    def _ssl_path(self, out: Path, alias: str, task: str, seed: int) -> Path:
        return out / "pretrained-ssl" / alias / task / f"seed{seed}.pt"

    def _cached_pretraining(self, out: Path, spec: RunSpec) -> bool:
        return self._load_pretraining(self._pretrained_path(out, spec.task, spec.seed, spec.fraction)) is not None

    def _run_parallel(self, out: Path, pending: list[Job], workers: int, deliver: Callable[[list[dict[str, Any]]], None]) -> None:
        """Run jobs in forked worker processes (:func:`polytask.study.executor.run_local`),
        the pretrainings they need first, ``deliver`` storing each job's rows as they arrive."""
        # Images resized and texts tokenized once here, before the workers fork: they share
        # the converted inputs instead of each converting them again.
        for task in self.config.tasks:
            self.model_inputs(task)
        run_local(
            pretrain=lambda spec: self.pretrain_start(out, spec),
            execute=lambda job: self.execute_job(out, job),
            pretrainings=self.starts_needed(out, pending),
            jobs=pending,
            workers=workers,
            deliver=deliver,
            gpus=worker_gpus(self.config.train.device, workers),
        )

    def _run_on_ray(self, out: Path, pending: list[Job], deliver: Callable[[list[dict[str, Any]]], None], address: str | None) -> None:
        """Run jobs as Ray tasks (:func:`polytask.study.ray_executor.run_ray`), the
        pretrainings they need first, ``deliver`` storing each job's rows as they arrive."""
        shipped = self._portable()
        run_ray(
            pretrain=shipped.pretrain_start,
            execute=shipped.execute_job,
            pretrainings=self.starts_needed(out, pending),
            jobs=pending,
            deliver=deliver,
            folder=out,
            inputs=lambda job: self._job_inputs(out, job),
            needs=self._job_pretrainings,
            address=address,
            device=self.config.train.device,
        )

    def _portable(self) -> Study:
        """A copy of this study for workers that may be on other machines: its data loaded
        (they read no data files), no cached features or tokenizers, and a CUDA device without
        its index (Ray gives each task its own GPU, which the task sees as ``cuda``)."""
        self.load()
        shipped = copy.copy(self)
        shipped._feature_cache = FeatureCache()
        shipped._encoders = {}
        shipped._model_inputs = {}
        shipped._store = None  # workers elsewhere cannot read this machine's files: the data travels
        shipped.trackers = None  # the driver alone logs to the tracking sinks
        shipped.notes = list(self.notes)
        if self.config.train.device.startswith("cuda:"):
            shipped.config = self.config.model_copy(update={"train": self.config.train.model_copy(update={"device": "cuda"})})
        return shipped

    def _job_pretrainings(self, job: Job) -> list[RunSpec]:
        """The pretrainings ``job``'s cells start from (as :meth:`starts_needed` names them)."""
        study = [RunSpec(s.task, "pretrain", self._pretrain_fraction(s.fraction), s.seed) for s in job.specs if uses_study_pretraining(s.strategy, self.config)]
        ssl = [RunSpec(s.task, f"{SSL_PRETRAIN}{alias}", 1.0, s.seed) for s in job.specs if (alias := ssl_source(self.config, s.strategy))]
        return study + ssl

    def _job_inputs(self, out: Path, job: Job) -> list[str]:
        """The files of the study folder ``job`` reads (relative paths): the cached pretrainings
        its cells start from (in-study and self-supervised) and its ``tune:`` search, those that exist."""
        paths = [self._pretrained_path(out, s.task, s.seed, s.fraction) for s in job.specs if uses_study_pretraining(s.strategy, self.config)]
        paths += [self._ssl_path(out, alias, s.task, s.seed) for s in job.specs if (alias := ssl_source(self.config, s.strategy))]
        paths.append(tuning_path(out, TUNED_AS.get(job.strategy, job.strategy), job.fraction))
        return sorted({p.relative_to(out).as_posix() for p in paths if p.is_file()})
