"""A study's inputs: load and check every task's data, fingerprint it, prepare tensors.

:class:`StudyInputs` is the data half of :class:`polytask.study.runner.Study`: it loads
each task (from the config or the arrays given), infers its kind, checks shapes, leaks,
shared files and what ``rep_grad`` needs, hashes what the study's numbers depend on, and
turns a task into tensors for one seed and fraction. The backbones it checks against are
:class:`polytask.study.models.StudyModels`'s.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from polytask.config import DataConfig, SSLSourceConfig, StudyConfig
from polytask.core.digest import content_key, tensor_digest, value_digest
from polytask.core.errors import ConfigError, PolytaskWarning
from polytask.core.tasks import Task, infer_task, task_notes
from polytask.data.arrays import TEXT_SHAPE, TaskData, check_task_data, is_text
from polytask.data.loaders import load_data, source_key
from polytask.data.ondisk import ArrayFolder, is_on_disk
from polytask.data.overlap import test_leaks
from polytask.data.prepare import ModelInputs, PreparedTask, as_model_input, fit_scaling, model_input_shape, model_inputs, prepare_task
from polytask.data.splits import MIN_VAL_PER_CLASS, MIN_VAL_ROWS
from polytask.methods.backbones import is_pretrained
from polytask.methods.weighting import uses_rep_grad
from polytask.strategies import uses_transfer_source
from polytask.study.fingerprint import data_digest, module_digest, pretrained_digest, study_fingerprint
from polytask.study.models import UserBackbone

# The folder of a study that holds what it prepares once (decoded images, converted inputs).
PREPARED = "prepared"


class StudyInputs:
    """Loading, checking and preparing a study's data (mixed into :class:`~polytask.study.runner.Study`).

    Attributes:
        config: the study's settings.
        data_override: in-memory arrays per task name, instead of the config's ``data:``.
        backbone: the user's own shared layers or backbone name, if any.
    """

    config: StudyConfig
    data_override: dict[str, TaskData]
    backbone: UserBackbone | None
    notes: list[str]
    _loaded: tuple[dict[str, TaskData], dict[str, Task]] | None
    _shapes: dict[str, tuple]
    _model_inputs: dict[tuple[str, str | None], ModelInputs]
    _split_keys: dict[str, str]
    _val_floor: dict[str, int]
    _fingerprint: str
    _fingerprint_parts: dict[str, Any]
    _store: Path | None

    def use_folder(self, out: str | Path) -> None:
        """Keep what the study prepares once in ``out/prepared``: image files decoded to
        memory-mapped arrays (when the data has not loaded yet), converted inputs of tasks
        read from disk, and token ids. Runs then read their rows from those files."""
        self._store = Path(out) / PREPARED

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
                d = load_data(tcfg.data, self._store)
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
            self._load_ssl_sources()
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

    def input_shape(self, task: str) -> tuple:
        """The plain shape backbones for ``task`` are built for (its runs' ``input_shape``);
        :meth:`new_backbone` adds the embeddings of a table's code columns for that shape."""
        self.load()
        return self._shapes[task]

    def _load_unlabeled(self) -> dict[str, TaskData]:
        """Unlabelled inputs given as a data source of their own, checked against their task.

        A table with a layout (categorical columns, or missing values to impute) on either
        side is refused: ``domain-adapt`` scales such inputs with their own statistics as
        plain numbers, while the task's rows are encoded with the layout of its own
        training rows, so the columns would not mean the same. ``unlabeled: true`` (the
        task's own training inputs) works for any table.
        """
        raw, _ = self.load()
        size = self.config.model.image_size
        out = {}
        for name, tcfg in self.config.tasks.items():
            if isinstance(tcfg.unlabeled, DataConfig):
                d = load_data(tcfg.unlabeled)
                if d.table is not None or raw[name].table is not None:
                    whose = f"{d.origin} has" if d.table is not None else f"task '{name}' has"
                    raise ConfigError(
                        f"field 'tasks.{name}.unlabeled': {whose} categorical columns or missing values to impute, but domain-adapt "
                        "scales unlabeled inputs from a file of their own as plain numbers, not with the task's table layout; "
                        "use unlabeled: true (the task's own training inputs), or numeric inputs without missing values on both sides"
                    )
                shape = model_input_shape(d, size)
                if shape != self._shapes[name]:
                    raise ConfigError(f"field 'tasks.{name}.unlabeled': inputs of shape {shape}, but task '{name}' has inputs of shape {self._shapes[name]}")
                out[name] = d
        return out

    def _load_ssl_sources(self) -> None:
        """The training inputs of self-supervised sources with ``data`` of their own, loaded,
        checked (the targets' input shape; none of them a target's test row) and prepared
        as the runs' inputs are (resized, tokenized, scaled with their own statistics)."""
        raw, _ = self.load()
        self._ssl_data, self._ssl_inputs = {}, {}
        size = self.config.model.image_size
        for alias, source in self.config.sources.items():
            if not isinstance(source, SSLSourceConfig) or source.data is None:
                continue
            d = load_data(source.data)
            if d.table is not None:
                raise ConfigError(f"field 'sources.{alias}.data': a table with categorical columns or missing values; self-supervised data must be numbers")
            where = f"field 'sources.{alias}.data'"
            for target in self.config.targets:
                shape = model_input_shape(d, size)
                if shape != self._shapes[target]:
                    raise ConfigError(f"{where}: inputs of shape {shape}, but target '{target}' has inputs of shape {self._shapes[target]}")
            if not self.config.allow_overlap:
                unlabelled = TaskData(d.x_train, np.zeros(len(d.x_train)), d.x_train[:0], np.zeros(0), origin=d.origin)
                for target, other, rows, total in test_leaks({**raw, f"ssl:{alias}": unlabelled}, self.config.targets):
                    if other == f"ssl:{alias}":
                        raise ConfigError(
                            f"{where}: {rows} of the {total} test rows of target '{target}' are among its inputs; a model pretrained on them has seen them"
                        )
            encode = self.encoder(None) if is_text(d.x_train) else None
            x = as_model_input(d.x_train, size, encode)
            self._ssl_data[alias] = d
            self._ssl_inputs[alias] = fit_scaling(x, tuple(d.x_train.shape[1:]), size).scaled(x)

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
                ssl = cfg.sources.get(arg)
                if isinstance(ssl, SSLSourceConfig):  # its settings, and the content of its own data
                    own = data_digest(self._ssl_data[arg]) if arg in self._ssl_data else None
                    sources[arg] = value_digest([ssl.model_dump(mode="json", exclude={"data"}), own])
                else:
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
        """Every task must fit the backbone; shared backbones need one input shape, and one
        set of code columns to embed (:meth:`_check_codes_agree`)."""
        size = self.config.model.image_size
        shapes = {n: model_input_shape(d, size) for n, d in raw.items()}
        self._shapes = shapes
        shared = set(self.config.strategies) != {"scratch"}
        if shared and len(set(shapes.values())) > 1:
            listed = ", ".join(f"'{n}' {s}" for n, s in shapes.items())
            hint = "; set model.image_size so image tasks share one size" if any(len(s) == 3 and s != TEXT_SHAPE for s in shapes.values()) else ""
            raise ConfigError(f"tasks have different input shapes ({listed}) but share one backbone{hint}")
        self._codes = self._check_codes_agree(raw, shared)
        self._code_notes = set()
        for shape in set(shapes.values()):
            self.new_backbone(shape)

    def _check_codes_agree(self, raw: dict[str, TaskData], shared: bool) -> dict[tuple, tuple[list[str], tuple[tuple[int, int], ...]]]:
        """Per input shape, its tasks and the embeddings of their code columns (the layout's
        ``(levels + 1, dim)``; tasks without code columns have none).

        Tasks that share a backbone must have the same code columns, names and levels, so
        that a code means one level in the shared embedding (the label columns of one CSV
        have them). In a study of ``scratch`` alone each task has its own backbone, but
        backbones are built per input shape: tasks of one shape need the same embeddings.

        Raises:
            ConfigError: one line naming the tasks and their code columns.
        """
        groups: dict[tuple, list[str]] = {}
        for name in raw:
            groups.setdefault(() if shared else self._shapes[name], []).append(name)
        out: dict[tuple, tuple[list[str], tuple[tuple[int, int], ...]]] = {}
        for names in groups.values():
            coded = {n: raw[n].table.coded if raw[n].table is not None else () for n in names}
            embeddings = {n: raw[n].table.embeddings if raw[n].table is not None else () for n in names}
            if len(set(coded.values() if shared else embeddings.values())) > 1:
                listed = "; ".join(f"'{n}': {', '.join(f'{c.name} ({len(c.levels)} levels)' for c in cs) or 'none'}" for n, cs in coded.items())
                why = "share one backbone" if shared else f"have inputs of one shape, {self._shapes[names[0]]}, which a study builds one backbone for"
                raise ConfigError(
                    f"tasks {', '.join(repr(n) for n in names)} {why} but embed different categorical code columns ({listed}); "
                    "read them from one CSV (its label columns share one table layout), or set data.onehot_max so their columns are one-hot"
                )
            if embeddings[names[0]]:
                out[self._shapes[names[0]]] = (names, embeddings[names[0]])
        return out

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

    def prepare(self, task: str, seed: int, fraction: float, hide_labels: bool = False, source: str | None = None) -> PreparedTask:
        """Tensors of ``task`` for one seed and training fraction (see :func:`prepare_task`).

        ``source`` names the pretrained backbone whose tokenizer encodes text tasks.
        """
        raw, tasks = self.load()
        key = self._split_keys.get(task)
        encode = self.encoder(source) if is_text(raw[task].x_train) else None
        size = self.config.model.image_size
        inputs = self.model_inputs(task, source)
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
            inputs=inputs,
        )

    def model_inputs(self, task: str, source: str | None = None) -> ModelInputs | None:
        """``task``'s images resized or texts tokenized (by ``source``'s tokenizer) once for
        the study, cached in this process (workers forked later share it); None for numbers
        and tables, whose conversion costs nothing worth keeping.

        With a study folder (:meth:`use_folder`), the converted inputs of a task read from
        disk and token ids are written to ``prepared/`` and read memory-mapped, in a folder
        named by the study's fingerprint and the conversion (so a changed input, backbone
        or tokenizer never reads another's arrays)."""
        raw, _ = self.load()
        data = raw[task]
        text = is_text(data.x_train)
        if data.table is not None or not (text or data.x_train.ndim >= 3):
            return None
        key = (task, source if text else None)
        if key not in self._model_inputs:
            encode = self.encoder(source) if text else None
            folder = None
            if self._store is not None and (text or is_on_disk(data.x_train)):
                probe = tensor_digest(encode(list(data.x_train[:8]))) if text else None
                folder = ArrayFolder(self._store, "inputs-" + value_digest([self.fingerprint, task, source, self.config.model.image_size, probe]))
            self._model_inputs[key] = model_inputs(data, self.config.model.image_size, encode, folder)
        return self._model_inputs[key]


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
        # NaN (a missing value a table imputes per run) equals NaN: label columns of one CSV
        # with missing features still share their rows. Text (object arrays) has no NaN.
        if u is v:
            return True
        if u.shape != v.shape:
            return False
        if is_on_disk(u) and is_on_disk(v):
            return content_key(u) == content_key(v)  # chunk by chunk, never a full-size comparison
        return np.array_equal(u, v, equal_nan=u.dtype != object and v.dtype != object)

    return same(a.x_train, b.x_train) and same(a.x_val, b.x_val) and same(a.x_test, b.x_test)
