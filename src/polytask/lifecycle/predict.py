"""``polytask predict``: a saved model's predictions for a file of inputs, as a CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from polytask.core.errors import ConfigError
from polytask.core.io import write_atomic
from polytask.lifecycle.inputs import read_inputs
from polytask.lifecycle.predictor import SavedModel, load

# Inputs with more rows than this show a progress bar.
PROGRESS_ROWS = 2048


def predictions_frame(
    model: SavedModel,
    x,
    names: list[str],
    tasks: list[str],
    proba: bool = False,
    batch_size: int = 256,
    console: Console | None = None,
    check_drift: bool = False,
) -> tuple[pd.DataFrame, list[str]]:
    """A row per input: its name, each task's prediction (a label, or a value), then with
    ``proba`` each class's probability as ``<task>:p(<label>)``; with ``check_drift`` a
    sentence per task on the inputs' drift, from the same preprocessed inputs."""
    columns: dict[str, np.ndarray | list[str]] = {"input": names}
    drift: list[str] = []
    show = console is not None and len(names) > PROGRESS_ROWS
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console, transient=True, disable=not show
    ) as bar:
        for task in tasks:
            job = bar.add_task(f"predicting {task}", total=len(names))
            inputs = model.transform(x, task)
            outputs = model.outputs_of(inputs, task, batch_size=batch_size, progress=lambda n, j=job: bar.advance(j, n))
            if check_drift:
                drift.append(model.drift_of(inputs, task)["line"])
            spec = model.tasks[task]
            if spec.kind == "regression":
                values = model.values(outputs, task)
                for k in range(values.shape[1]):
                    columns[task if values.shape[1] == 1 else f"{task}:{k}"] = values[:, k]
                continue
            p = model.probabilities(outputs, task)
            labels = model.labels(task)
            columns[task] = np.asarray(labels, dtype=object)[p.argmax(axis=1)]
            if proba:
                for k, label in enumerate(labels):
                    columns[f"{task}:p({label})"] = p[:, k]
    return pd.DataFrame(columns), drift


def predict_file(
    model_dir: Path,
    inputs: list[Path],
    out: Path,
    tasks: list[str] | None = None,
    proba: bool = False,
    device: str = "cpu",
    batch_size: int = 256,
    console: Console | None = None,
    check_drift: bool = False,
) -> tuple[int, list[str]]:
    """Write the predictions of the model in ``model_dir`` for ``inputs`` to ``out`` (atomically).

    Returns:
        The number of rows predicted, and with ``check_drift`` one sentence per task on
        whether the inputs look like the training rows (:mod:`polytask.lifecycle.drift`).

    Raises:
        ConfigError: an unknown task, unreadable inputs, or inputs of another shape,
            columns or type than the model reads.
    """
    model = load(model_dir, device=device)
    tasks = list(tasks or model.targets)
    for t in tasks:
        if t not in model.tasks:
            raise ConfigError(f"--task '{t}': this model predicts {', '.join(model.tasks)}")
    if out.is_dir():
        raise ConfigError(f"--out '{out}' is a folder; expected a CSV file to write")
    x, names = read_inputs(list(inputs), model.transforms[tasks[0]])
    frame, lines = predictions_frame(model, x, names, tasks, proba, batch_size, console, check_drift)
    write_atomic(out, frame.to_csv(index=False))
    return len(frame), lines
