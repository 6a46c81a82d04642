"""``polytask update``: continue training a saved model on new labelled data, keep what it
knew with a forgetting guard, and replace it only when a regression gate says so.

The flow (:func:`update_model`):

1. New rows per task are read as the model reads inputs (its saved preprocessing) and split,
   by their content, into a gate split (``gate.gate_size``, never trained on) and training
   rows (a fifth of which choose the epoch).
2. The candidate is the current model trained further on them (a new task gets a new head)
   with the guard: ``rehearsal`` adds the old training rows the directory keeps, ``lwf``
   distils the current model's old-task outputs, ``ewc`` holds the weights the old tasks
   rely on (:mod:`polytask.methods.continual`).
3. The gate compares candidate and current model row by row on rows neither trained on
   (:mod:`polytask.lifecycle.gate`, one-sided at ``gate.alpha``): on every old task's kept
   gate rows and on each updated task's new gate split, the candidate must be non-inferior
   within ``gate.margin``; a new task's head must beat a model trained from scratch on the
   same rows.
4. Every decision is written with its numbers to ``versions/<n>-accepted|refused/decision.json``.
   An accepted candidate replaces the model; the files it replaced are kept in that
   version's ``previous/`` folder, which :func:`rollback` restores byte for byte.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polytask.config.data import DataConfig
from polytask.config.update import UpdateConfig
from polytask.core.digest import array_digest, file_digest
from polytask.core.errors import ConfigError
from polytask.core.io import write_atomic
from polytask.core.targets import encode_targets, task_loss
from polytask.core.tasks import Task, infer_task, labelled
from polytask.data.loaders import load_data, read_csv_file
from polytask.data.prepare import PreparedTask, Split, fit_scaling
from polytask.data.preprocess import InputTransform, as_model_input
from polytask.data.splits import holdout, rng_for
from polytask.lifecycle.drift import REFERENCE, features, read_reference, sample_rows, save_reference
from polytask.lifecycle.gate import paired_difference
from polytask.lifecycle.memory import MEMORY, REHEARSAL_ROWS, Memory, Rows, sample
from polytask.lifecycle.modeldir import META, WEIGHTS, build_model, read_meta, save_model_dir, task_record
from polytask.lifecycle.predictor import SavedModel
from polytask.methods.architectures.multitask import MultiTaskModel
from polytask.methods.continual import EWC, SelfDistillation, fisher_diagonal
from polytask.training.engine import fit, seed_everything
from polytask.training.evaluate import predict

VERSIONS = "versions"
MODEL_FILES = (WEIGHTS, META, REFERENCE, MEMORY)
VAL_SHARE = 0.2


# ---- reading the new rows -------------------------------------------------------------


def reads_like(spec: DataConfig, model: SavedModel, task: str) -> str:
    """The task of the model whose inputs (and preprocessing) task ``task`` reads: itself
    when the model has it; for a new task from a table, an old task reading the same
    columns (a new label column of the same table: its head reads the same encoded rows).

    Raises:
        ConfigError: a new task from a table whose columns no old task reads.
    """
    if task in model.tasks or spec.csv is None:
        return task
    columns = set(read_csv_file(spec.csv).columns)
    for t, transform in model.transforms.items():
        wanted = transform.columns or ()
        if wanted and set(wanted) <= columns and (spec.text is not None) == (transform.kind == "text"):
            return t
    raise ConfigError(
        f"task '{task}' is new, and {spec.csv} has none of the column sets the model's tasks read "
        f"({'; '.join(', '.join(t.columns) for t in model.transforms.values() if t.columns) or 'they read arrays'}): "
        "a new head reads the inputs of an old task (the same table's columns), or array and image inputs"
    )


def read_rows(spec: DataConfig, model: SavedModel, task: str) -> tuple[Any, np.ndarray, Any, np.ndarray]:
    """The training and test rows of ``spec`` (inputs as the model's task ``task`` reads them:
    a table by the saved column names, arrays and images as loaded) and their labels as given.

    The test rows are the source's own test split (an NPZ's ``x_test``, a table's ``test``
    file, else its ``test_size`` share drawn from the file's content, as in a study): they
    become the update's gate split, never trained on.
    """
    if spec.csv is not None:
        frames = {"train": read_csv_file(spec.csv)}  # CSV, or Parquet by its magic bytes
        if spec.test is not None:
            frames["test"] = read_csv_file(spec.test)
        for name, frame in frames.items():
            if spec.target not in frame.columns:
                file = spec.csv if name == "train" else spec.test
                raise ConfigError(f"{file}: no column '{spec.target}' for target (columns: {', '.join(map(str, frame.columns))})")
        if "test" not in frames:
            frame = frames["train"]
            y = frame[spec.target].to_numpy()
            keep, held = holdout(y, spec.test_size, rng_for(0, "content:" + file_digest(spec.csv), "test"), stratify=False)
            frames = {"train": frame.iloc[keep], "test": frame.iloc[held]}
        return (*(v for f in frames.values() for v in (model.rows(f, task), f[spec.target].to_numpy())),)
    data = load_data(spec)
    if data.x_val is not None:
        return np.concatenate([data.x_train, data.x_val]), np.concatenate([data.y_train, data.y_val]), data.x_test, data.y_test
    return data.x_train, data.y_train, data.x_test, data.y_test


def class_values(model_task: dict[str, Any], y: np.ndarray, where: str) -> np.ndarray:
    """Labels as the saved task's label values (string labels through its class names)."""
    names = model_task.get("class_names")
    if names:
        index = {n: i for i, n in enumerate(names)}
        unknown = sorted({str(v) for v in y if isinstance(v, str) and v not in index})
        if unknown:
            raise ConfigError(f"{where}: label {unknown[0]!r} is not a class of the model ({', '.join(names)})")
        return np.array([index[v] if isinstance(v, str) else np.nan for v in y], dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    classes = model_task.get("classes")
    if model_task["kind"] != "regression" and classes is not None:
        have = y[labelled(y, model_task["kind"])]
        unknown = sorted(set(have.tolist()) - set(map(float, classes)))
        if unknown:
            raise ConfigError(f"{where}: label {unknown[0]:g} is not a class of the model ({', '.join(f'{c:g}' for c in classes)}); add it as a new task")
    return y


def new_transform(model: SavedModel, x: np.ndarray) -> InputTransform:
    """The preprocessing of a new task's array inputs, fitted on its training rows, read
    at the size the model's other inputs are read."""
    size = model.input_shape[-1] if x.ndim in (3, 4) else None
    return fit_scaling(as_model_input(np.asarray(x, dtype=np.float32), size), tuple(x.shape[1:]), size)


# ---- the update ---------------------------------------------------------------------------


def update_model(model_dir: str | Path, config: UpdateConfig, out: str | Path | None = None) -> dict[str, Any]:
    """Train a candidate on ``config``'s new rows and keep it only if the gate accepts it.

    Args:
        model_dir: the model directory.
        config: the update (``NEW.yaml``).
        out: write the updated model to this directory instead (a copy of ``model_dir``
            is updated; ``model_dir`` is left as it is).

    Returns:
        The decision record (also in ``versions/<n>-<decision>/decision.json``).

    Raises:
        ConfigError: data the model cannot read, a model the update cannot extend.
    """
    folder = Path(model_dir)
    dest = _check_out(folder, Path(out) if out is not None else None)
    current = SavedModel(folder)
    if not isinstance(current.model, MultiTaskModel):
        raise ConfigError(
            f"{folder}: updating needs a model with one backbone and a head per task (architecture 'hard'); this one is {current.meta['build']['architecture']}"
        )
    memory = Memory.read(folder)
    meta = current.meta
    seed = config.seed
    new_tasks: dict[str, Task] = {}
    transforms: dict[str, InputTransform] = {}
    splits: dict[str, dict[str, Rows]] = {}
    drift: list[str] = []
    class_names: dict[str, tuple[str, ...]] = {}
    for name, tcfg in config.tasks.items():
        reads = reads_like(tcfg.data, current, name)
        x_new, y_new, x_gate, y_gate = read_rows(tcfg.data, current, reads)
        where = f"tasks.{name}.data"
        if name in current.tasks:
            task, transform = current.tasks[name], current.transforms[name]
            y_new, y_gate = (class_values(meta["tasks"][name], y, where) for y in (y_new, y_gate))
        else:
            if reads == name and (isinstance(x_new, list) or np.asarray(x_new).dtype == object):
                raise ConfigError(f"{where}: a new task's head reads array or image inputs, or the inputs of an old task")
            if not np.issubdtype(np.asarray(y_new).dtype, np.number):  # string labels, as a table has them
                class_names[name] = tuple(sorted({str(v) for v in y_new if isinstance(v, str)}))
                record = {"kind": "classification", "class_names": list(class_names[name])}
                y_new, y_gate = (class_values(record, y, where) for y in (y_new, y_gate))
            task = infer_task(name, np.asarray(y_new)).scaled_to(np.asarray(y_new))
            transform = current.transforms[reads] if reads != name else new_transform(current, np.asarray(x_new))
            new_tasks[name] = task
        own = name in new_tasks and reads == name  # a new task with preprocessing of its own
        x, xg = (transform(v) if own else current.transform(v, reads) for v in (x_new, x_gate))
        if transform.kind != "text" and tuple(x.shape[1:]) != current.input_shape:
            raise ConfigError(f"{where}: inputs become {tuple(x.shape[1:])} for the backbone, which reads {current.input_shape}")
        y, yg = encode_targets(task, np.asarray(y_new)), encode_targets(task, np.asarray(y_gate))
        fit_rows, val = holdout(np.asarray(y_new), VAL_SHARE, rng_for(seed, name, "update-val"), task.kind != "regression")
        splits[name] = {"train": Rows(x[fit_rows], y[fit_rows]), "val": Rows(x[val], y[val]), "gate": Rows(xg, yg)}
        transforms[name] = transform
        if name in current.tasks and (folder / REFERENCE).is_file():
            drift.append(current.drift_of(x, name)["line"])
    tasks = {**current.tasks, **new_tasks}
    candidate = copy.deepcopy(current.model).train()
    seed_everything(seed)
    for name, task in new_tasks.items():
        candidate.heads[name] = nn.Linear(candidate.backbone.out_features, task.n_outputs)
    data = {n: _prepared(tasks[n], s["train"], s["val"], s["gate"]) for n, s in splits.items()}
    old = [t for t in current.tasks]
    penalty = None
    guard = config.guard
    if guard.method == "rehearsal":
        for t in old:
            kept = memory.train.get(t)
            if kept is None or len(kept) < 2:
                continue
            fit_rows, val = holdout(_labels_of(tasks[t], kept.y), VAL_SHARE, rng_for(seed, t, "rehearsal-val"), tasks[t].kind != "regression")
            if t in data:
                d = data[t]
                data[t] = _prepared(
                    tasks[t], Rows(d.train.x, d.train.y).plus(kept.take(fit_rows)), Rows(d.val.x, d.val.y).plus(kept.take(val)), Rows(d.test.x, d.test.y)
                )
            else:
                data[t] = _prepared(tasks[t], kept.take(fit_rows), kept.take(val), kept.take(val[:1]))
    elif guard.method == "lwf":
        penalty = SelfDistillation(
            current.model, old, [t for t in old if tasks[t].kind == "regression"], lam=1.0 if guard.lam is None else guard.lam, temperature=guard.temperature
        )
    else:
        penalty = EWC(current.model, _fisher(current.model, memory, tasks, guard.fisher_rows, seed), lam=100.0 if guard.lam is None else guard.lam)
    fit(candidate, data, config.train, seed, select=list(splits), penalty=penalty)
    candidate.eval()
    comparisons = _gate(current.model, candidate, tasks, memory, splits, new_tasks, config, current)
    accepted = all(c["passed"] for c in comparisons)
    record = {
        "decision": "accepted" if accepted else "refused",
        "from_version": meta.get("version", 0),
        "to_version": meta.get("version", 0) + 1 if accepted else meta.get("version", 0),
        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "guard": guard.model_dump(),
        "gate": config.gate.model_dump(),
        "tasks": {n: {"new": n in new_tasks, "train_rows": len(s["train"]) + len(s["val"]), "gate_rows": len(s["gate"])} for n, s in splits.items()},
        "comparisons": comparisons,
        "drift": drift,
    }
    if dest != folder:  # written only now: an update that stops early leaves no half-made directory
        shutil.copytree(folder, dest)
        folder = dest
    version_dir = _next_version(folder, record["decision"])
    if accepted:  # the files it replaces are kept, and the decision written, before any is replaced
        previous = version_dir / "previous"
        previous.mkdir(parents=True)
        for name in MODEL_FILES:
            if (folder / name).is_file():
                write_atomic(previous / name, (folder / name).read_bytes())
    write_atomic(version_dir / "decision.json", json.dumps(record, indent=2))
    if accepted:
        _write_candidate(folder, current, candidate, tasks, new_tasks, transforms, memory, splits, record, seed, class_names)
    record["version_dir"] = str(version_dir)
    return record


def _labels_of(task: Task, y: torch.Tensor) -> np.ndarray:
    return y.numpy() if task.kind == "classification" else np.zeros(len(y))


def _prepared(task: Task, train: Rows, val: Rows, gate: Rows) -> PreparedTask:
    return PreparedTask(task, Split(train.x, train.y), Split(val.x, val.y), Split(gate.x, gate.y))


def _fisher(model: nn.Module, memory: Memory, tasks: dict[str, Task], rows: int, seed: int) -> dict[str, torch.Tensor]:
    """EWC's Fisher information of the current model on the kept old training rows."""

    def samples():
        for t, kept in memory.train.items():
            if t not in tasks:
                continue
            for i in sample(len(kept), seed, rows):
                yield kept.x[i], kept.y[i], lambda m, x, y, t=t: task_loss(tasks[t], m(x, t), y)

    return fisher_diagonal(model, samples())


def _gate(
    current: nn.Module, candidate: nn.Module, tasks: dict[str, Task], memory: Memory, splits, new_tasks, config: UpdateConfig, saved: SavedModel
) -> list[dict[str, Any]]:
    """Every comparison the gate makes, each with its numbers and whether it passed."""
    gate = config.gate
    out = []

    def compare(task: str, rows: Rows, on: str, a: nn.Module, b: nn.Module, superiority: bool) -> None:
        prepared = _prepared(tasks[task], rows, rows, rows)
        pa, pb = predict(a, prepared, prepared.test), predict(b, prepared, prepared.test)
        seed = int(array_digest(np.asarray([len(rows), config.seed]))[:8], 16)
        d = paired_difference(tasks[task].scorer, pa.truth, pa.pred, pb.pred, gate.resamples, gate.alpha, seed)
        bound = 0.0 if superiority else -gate.margin
        passed = d["lower"] > bound
        rule = "better than a model from scratch" if superiority else f"not worse than the current model by more than {gate.margin:g}"
        against = "a model from scratch" if superiority else "the current model"
        out.append({"task": task, "on": on, "against": against, "metric": tasks[task].metric, "rule": rule, **d, "bound": bound, "passed": bool(passed)})

    for t in saved.tasks:
        kept = memory.gate.get(t)
        if kept is not None and len(kept):
            compare(t, kept, "kept gate rows", candidate, current, False)
    for t, s in splits.items():
        if t not in new_tasks:
            compare(t, s["gate"], "gate split of the new rows", candidate, current, False)
            continue
        scratch = _scratch_model(saved, tasks[t], config)
        fit(scratch, {t: _prepared(tasks[t], s["train"], s["val"], s["gate"])}, config.train, config.seed, select=t)
        compare(t, s["gate"], "gate split of the new rows", candidate, scratch.eval(), True)
    return out


def _scratch_model(saved: SavedModel, task: Task, config: UpdateConfig) -> MultiTaskModel:
    """The same backbone, randomly initialized, with one head: the baseline a new head must beat."""
    seed_everything(config.seed)
    meta = {**saved.meta, "heads": [task.name], "tasks": {task.name: task_record(task)}, "build": {**saved.meta["build"], "features": False}}
    return build_model(meta, backbone=None if saved.meta["build"]["backbone"] else copy.deepcopy(saved.backbone_module))


def _write_candidate(folder: Path, current: SavedModel, candidate, tasks, new_tasks, transforms, memory: Memory, splits, record, seed, class_names) -> None:
    meta = copy.deepcopy(current.meta)
    meta.pop("format", None)
    for name, task in new_tasks.items():
        meta["tasks"][name] = {**task_record(task, class_names.get(name)), "role": "target", "input": transforms[name].to_record()}
        meta["heads"].append(name)
        meta["targets"].append(name)
    meta["version"] = record["to_version"]
    meta.setdefault("updates", []).append({k: record[k] for k in ("at", "to_version", "guard", "tasks")})
    meta["metrics"] = {
        **meta.get("metrics", {}),
        **{c["task"]: {"gate": c["candidate"]} for c in record["comparisons"] if c["on"] == "gate split of the new rows"},
    }
    save_model_dir(folder, candidate, meta)
    for name, s in splits.items():
        train = s["train"].plus(s["val"])
        kept = memory.train[name].plus(train) if name in memory.train else train
        memory.train[name] = kept.take(sample(len(kept), seed, REHEARSAL_ROWS))
        memory.gate[name] = memory.gate[name].plus(s["gate"]) if name in memory.gate else s["gate"]
    memory.save(folder)
    if new_tasks and (folder / REFERENCE).is_file():
        reference = read_reference(folder)
        for name in new_tasks:
            rows = splits[name]["train"]
            reference[name] = features(candidate, rows.x[torch.as_tensor(sample_rows(len(rows), seed))], transforms[name].kind)
        save_reference(folder, reference)


def _next_version(folder: Path, decision: str) -> Path:
    root = folder / VERSIONS
    root.mkdir(exist_ok=True)
    n = 1 + max((int(p.name.split("-")[0]) for p in root.iterdir() if p.name.split("-")[0].isdigit()), default=0)
    path = root / f"{n:03d}-{decision}"
    path.mkdir()
    return path


def _check_out(model_dir: Path, out: Path | None) -> Path:
    """Where the updated model goes: ``model_dir`` itself, or a new directory ``out``."""
    read_meta(model_dir)
    if out is None or out.resolve() == model_dir.resolve():
        return model_dir
    if out.exists():
        raise ConfigError(f"--out '{out}' exists; expected a new directory for the updated model")
    return out


def rollback(model_dir: str | Path) -> dict[str, Any]:
    """Restore the model the last accepted update replaced, byte for byte; recorded as a version.

    Raises:
        ConfigError: no accepted update to undo.
    """
    folder = Path(model_dir)
    meta = read_meta(folder)
    live = meta.get("version", 0)
    root = folder / VERSIONS
    found = None
    for p in sorted(root.glob("*-accepted")) if root.is_dir() else []:
        record = json.loads((p / "decision.json").read_text())
        if record.get("to_version") == live and (p / "previous").is_dir():
            found = (p, record)
    if found is None:
        raise ConfigError(f"{folder}: no accepted update to roll back (version {live})")
    path, record = found
    for name in MODEL_FILES:
        src = path / "previous" / name
        if src.is_file():
            write_atomic(folder / name, src.read_bytes())
        elif (folder / name).is_file():
            (folder / name).unlink()
    back = {
        "decision": "rollback",
        "from_version": live,
        "to_version": record["from_version"],
        "restored_from": str(path / "previous"),
        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    version_dir = _next_version(folder, "rollback")
    write_atomic(version_dir / "decision.json", json.dumps(back, indent=2))
    return {**back, "version_dir": str(version_dir)}


def decision_lines(record: dict[str, Any]) -> list[str]:
    """The decision in plain lines: each comparison, the drift found."""
    lines = []
    for c in record.get("comparisons", []):
        lines.append(
            f"{'ok' if c['passed'] else 'FAILED'}: {c['task']} on the {c['on']} ({c['rows']} rows), {c['metric']}: candidate {c['candidate']:.4f}, "
            f"{c['against']} {c['current']:.4f}; difference {c['difference']:+.4f}, one-sided {1 - record['gate']['alpha']:.0%} lower bound "
            f"{c['lower']:+.4f} (must exceed {c['bound']:+.4f}: {c['rule']})"
        )
    return lines + [f"drift: {d}" for d in record.get("drift", [])]
