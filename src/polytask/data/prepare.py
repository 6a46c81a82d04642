"""Turn loaded arrays into the tensors one run trains on.

Per run: carve validation from train (seeded), take the run's fraction of train
(seeded, stratified, nested across fractions), resize images, encode a table's
categorical columns and impute its missing values (:mod:`polytask.data.tabular`), and
standardize inputs, all fitted on the training rows the run actually has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polytask.core.digest import array_digest, content_key, value_digest
from polytask.core.inputs import TEXT_SHAPE
from polytask.core.mapped import CHUNK_BYTES
from polytask.core.targets import encode_targets
from polytask.core.tasks import Task
from polytask.data.arrays import TaskData, is_text
from polytask.data.ondisk import ArrayFolder, is_on_disk, write_array
from polytask.data.preprocess import InputTransform, as_model_input, image_transform, numeric_transform, table_transform
from polytask.data.rows import StoredRows, image_scale, token_width
from polytask.data.splits import MIN_VAL_ROWS, holdout, rng_for, subsample, validation_subset
from polytask.data.tabular import TableEncoder, TableLayout, array_chunks, column_moments, fit_table, row_chunks

VAL_SIZE = 0.2


@dataclass(frozen=True)
class Split:
    """Inputs and encoded targets of one split (inputs in memory, or read from disk by
    batch: :class:`~polytask.data.rows.StoredRows`)."""

    x: torch.Tensor | StoredRows
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class PreparedTask:
    """A task ready for the engine: train, validation and test tensors."""

    task: Task
    train: Split
    val: Split
    test: Split
    table: TableLayout | None = None
    # The preprocessing fitted on this run's training rows, for a saved model to repeat.
    transform: InputTransform | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample, a plain tuple (a table's code columns are in
        ``table.embeddings``)."""
        return tuple(self.train.x.shape[1:])


def model_input_shape(data: TaskData, image_size: int | None = None) -> tuple:
    """The shape a backbone is built for, known before any run, a plain tuple:
    :data:`TEXT_SHAPE` for text, else the shape of one prepared sample (images resized to
    ``image_size``; a table's width, its code columns included)."""
    if is_text(data.x_train):
        return TEXT_SHAPE
    return tuple(as_model_input(np.array(data.x_train[:1]), image_size).shape[1:])


@dataclass(frozen=True)
class ModelInputs:
    """A task's inputs converted for the backbone once (images resized, texts tokenized),
    for every run to take its rows from. Work that does not depend on the run is done once
    per study and task; scaling, which does, stays per run.

    Attributes:
        train, val, test: the converted splits (``val`` None when the task has none):
            tensors in memory, or memory-mapped arrays (:attr:`key` set) that runs read
            batch by batch through :class:`~polytask.data.rows.StoredRows`.
        pad_id: the pad token of token ids (None for numbers): a run's selection is
            trimmed to its longest text, as tokenizing only its rows would pad it.
        key: for mapped arrays, the digest naming their folder (their content).
    """

    train: torch.Tensor | np.ndarray
    val: torch.Tensor | np.ndarray | None
    test: torch.Tensor | np.ndarray
    pad_id: int | None = None
    key: str | None = None

    @property
    def stored(self) -> bool:
        """Whether the converted inputs stay on disk."""
        return self.key is not None

    def rows(self, x: torch.Tensor, rows: np.ndarray | None) -> torch.Tensor:
        """Rows ``rows`` of converted split ``x`` (all for None), trimmed of all-pad columns."""
        out = x if rows is None else x[torch.as_tensor(rows, dtype=torch.long)]
        if self.pad_id is None or out.ndim != 2 or out.shape[1] == 0:
            return out
        used = (out != self.pad_id).any(dim=0).nonzero()
        width = int(used.max()) + 1 if len(used) else 1
        return out[:, :width]

    def stored_rows(self, train_rows: np.ndarray, val_from: str, val_rows: np.ndarray) -> list[StoredRows]:
        """A run's train, validation and test inputs read from the mapped arrays: its rows,
        and the scale fitted on its training rows (images) or each split's width (tokens)."""
        picks = [("train", self.train, train_rows), (val_from, getattr(self, val_from), val_rows), ("test", self.test, np.arange(len(self.test)))]
        if self.pad_id is not None:
            return [StoredRows(x, f"{self.key}:{n}", r, width=token_width(x, r, self.pad_id)) for n, x, r in picks]
        scale = image_scale(self.train, train_rows)
        return [StoredRows(x, f"{self.key}:{n}", r, scale=scale) for n, x, r in picks]


def model_inputs(
    data: TaskData,
    image_size: int | None = None,
    encode: Callable[[list[str]], torch.Tensor] | None = None,
    folder: ArrayFolder | None = None,
) -> ModelInputs:
    """Convert every split of ``data`` for the backbone (:func:`as_model_input`) once.

    With ``folder`` (named by a digest of the data and the conversion), the converted
    splits are written there chunk by chunk and read memory-mapped; inputs already on disk
    that need no conversion are read where they are.
    """
    text = is_text(data.x_train)
    pad = getattr(encode, "pad_id", 0) if text else None
    splits = {"train": data.x_train, "val": data.x_val, "test": data.x_test}
    if folder is None:
        return ModelInputs(*(as_model_input(x, image_size, encode) if x is not None else None for x in splits.values()), pad_id=pad)
    resized = image_size is not None and tuple(data.x_train.shape[-2:]) != (image_size, image_size)
    if not text and not resized and all(x is None or is_on_disk(x) for x in splits.values()):
        return ModelInputs(*splits.values(), key=folder.path.name)

    if not text:  # images: float32 rows of this shape, written about 16 MiB at a time
        shape = model_input_shape(data, image_size)
        step = max(1, CHUNK_BYTES // (4 * int(np.prod(shape))))

    def write(where: Path) -> dict[str, bool]:
        for name, x in splits.items():
            if x is None:
                continue
            if text:
                np.save(where / f"{name}.npy", encode(list(x)).numpy())
                continue
            chunks = (as_model_input(np.asarray(x[i : i + step]), image_size).numpy() for i in range(0, len(x), step))
            write_array(where / f"{name}.npy", chunks, len(x), shape, np.float32)
        return {name: True for name, x in splits.items() if x is not None}

    arrays = folder.write(write)
    return ModelInputs(arrays["train"], arrays.get("val"), arrays["test"], pad_id=pad, key=folder.path.name)


def standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Scale inputs with statistics of the training rows (:func:`fit_scaling`)."""
    fitted = fit_scaling(train)
    return [fitted.scaled(t) for t in (train, *others)]


def fit_scaling(train: torch.Tensor, shape: tuple[int, ...] | None = None, image_size: int | None = None) -> InputTransform:
    """The scaling of a run's inputs, fitted on its training tensors ``train``.

    Tabular columns are standardized (zero mean, unit variance; constant columns keep
    scale 1), with statistics summed in float64
    (:func:`~polytask.data.tabular.column_moments`). Images are only divided by the
    training maximum, so that zero (background) stays zero in every task: a per-task mean
    shift would give each dataset its own background level and hide from shared layers
    that two datasets look alike. Token ids are not scaled.

    Args:
        train: the run's training rows as the backbone reads them.
        shape, image_size: one image as loaded and the side it is resized to (recorded
            in the transform; default: the tensor's own shape, no resizing).
    """
    if not train.is_floating_point():
        return InputTransform("text")  # token ids: nothing to scale
    if train.ndim == 2:
        # Summed in float64 by fixed chunks of rows, as for a table on disk: same numbers.
        return numeric_transform(train.shape[1], *column_moments(lambda: array_chunks(train.numpy())))
    scale = train.abs().max()
    return image_transform(shape or tuple(train.shape[1:]), image_size, float(scale) if scale > 1e-8 else 1.0)


def prepare_task(
    data: TaskData,
    task: Task,
    seed: int,
    fraction: float = 1.0,
    image_size: int | None = None,
    split_key: str | None = None,
    hide_labels: bool = False,
    encode: Callable[[list[str]], torch.Tensor] | None = None,
    validation: str = "shrink",
    val_min_rows: int = MIN_VAL_ROWS,
    inputs: ModelInputs | None = None,
) -> PreparedTask:
    """Tensors for one run of ``task`` at ``seed`` using ``fraction`` of its training rows.

    The same ``seed`` gives the same validation carve and the same subset for every
    strategy, which is what makes comparisons across strategies paired.

    Args:
        data: the task's loaded arrays.
        task: its kind and metric.
        seed: the run's seed.
        fraction: share of the training rows (after the validation carve) to use.
        image_size: resize images to this side.
        split_key: names the random streams of the validation carve and the fraction.
            Tasks that share their inputs (several label columns of one file) pass one
            key so that they carve the same validation rows and take the same subsets,
            unstratified: a row is then never trained on for one task and validated on
            for another. Default: the task's name, stratified by its labels.
        hide_labels: keep every training row but mark the labels outside the fraction
            as missing, so the rows line up with the other tasks of the same inputs
            (training on one shared batch); the labelled rows are those ``fraction``
            would keep.
        encode: tokenizer of the text backbone, for text inputs.
        validation: ``shrink``: the validation split shrinks with the fraction (a nested
            prefix of the seed's validation rows, at least 5 rows per class, or
            ``val_min_rows`` for regression and shared carves), so a run at 5% of the
            labels does not select its epoch on many more labels than it trains on; the
            rows left out are used by no task. ``fixed``: every fraction validates on
            the whole validation split.
        val_min_rows: the floor of a shrunken validation split that is not stratified.
            Tasks sharing one carve must pass the same value to keep the same rows.
        inputs: the task's inputs already converted for the backbone
            (:func:`model_inputs`: resized images, token ids), computed once per study;
            the run takes its rows from them instead of converting its rows again. The
            tensors are the same either way.
    """
    stratify = task.kind != "regression" and split_key is None
    key = split_key or task.name
    y_tr = data.y_train
    # Rows are tracked as indices into the loaded arrays, so that inputs converted once for
    # the whole study (``inputs``) give the same tensors as converting this run's rows.
    tr_rows = np.arange(len(y_tr))
    if data.x_val is None:
        keep, held = holdout(y_tr, VAL_SIZE, rng_for(seed, key, "val"), stratify)
        va_from, va_rows, y_va = "train", held, y_tr[held]
        tr_rows, y_tr = keep, y_tr[keep]
    else:
        va_from, va_rows, y_va = "val", np.arange(len(data.y_val)), data.y_val
    if validation == "shrink":
        kept = validation_subset(y_va, fraction, rng_for(seed, key, "val-fraction"), stratify, val_min_rows)
        va_rows, y_va = va_rows[kept], y_va[kept]
    idx = subsample(y_tr, fraction, rng_for(seed, key, "fraction"), stratify)
    if hide_labels:
        hidden = np.ones(len(y_tr), dtype=bool)
        hidden[idx] = False
        y_tr = np.asarray(y_tr, dtype=np.float64).copy()
        y_tr[hidden] = np.nan
    else:
        tr_rows, y_tr = tr_rows[idx], y_tr[idx]
    # Regression targets are standardized with this run's training labels, like its inputs.
    task = task.scaled_to(y_tr)
    va_source = data.x_train if va_from == "train" else data.x_val
    image_shape = tuple(data.x_train.shape[1:])
    if data.x_train.ndim == 2 and not is_text(data.x_train) and is_on_disk(data.x_train):
        # A table on disk: read by rows, encoded and scaled batch by batch (a numeric table
        # without a layout is one of numeric columns only: standardized alike).
        layout = data.table or TableLayout(numeric=tuple(str(i) for i in range(data.x_train.shape[1])))
        scaling = fit_table_scaling(layout, data.x_train, tr_rows)
        picks = ((data.x_train, tr_rows), (va_source, va_rows), (data.x_test, np.arange(len(data.x_test))))
        tensors = [StoredRows(x, content_key(x), rows, table=scaling) for x, rows in picks]
        transform = scaling.transform
    elif data.table is not None:
        scaling, tensors = encode_table(data.table, data.x_train[tr_rows], va_source[va_rows], data.x_test)
        transform = scaling.transform
    elif inputs is not None and inputs.stored:
        tensors = inputs.stored_rows(tr_rows, va_from, va_rows)
        scale = tensors[0].scale
        transform = InputTransform("text") if scale is None else image_transform(image_shape, image_size, scale)
    else:
        if inputs is not None:
            va_all = inputs.train if va_from == "train" else inputs.val
            raw = [inputs.rows(x, rows) for x, rows in ((inputs.train, tr_rows), (va_all, va_rows), (inputs.test, None))]
        else:
            raw = [as_model_input(x, image_size, encode) for x in (data.x_train[tr_rows], va_source[va_rows], data.x_test)]
        transform = fit_scaling(raw[0], image_shape, image_size)
        tensors = [transform.scaled(t) for t in raw]
    splits = [Split(x, encode_targets(task, y)) for x, y in zip(tensors, (y_tr, y_va, data.y_test))]
    return PreparedTask(task, *splits, table=data.table, transform=transform)


@dataclass(frozen=True)
class TableScaling:
    """A run's table encoders (fitted on its training rows) and the standardization of its
    numeric columns: ``scaling(rows)`` turns rows as loaded into the tensor a backbone reads.
    One-hot, indicator and code columns keep their 0/1 and integer values."""

    encoder: TableEncoder
    mean: np.ndarray
    std: np.ndarray

    def __call__(self, rows: np.ndarray) -> torch.Tensor:
        return self.scale(self.encoder.transform(rows))

    def scale(self, encoded: np.ndarray) -> torch.Tensor:
        """Rows already encoded (:meth:`TableEncoder.transform`), their numeric columns standardized."""
        return self.transform.scaled(torch.as_tensor(encoded))

    @property
    def transform(self) -> InputTransform:
        """The same encoding and scaling as a record a saved model keeps."""
        return table_transform(self.encoder.layout, self.encoder, self.mean, self.std)

    def digest(self) -> str:
        enc = self.encoder
        return value_digest([array_digest(enc.fill_numeric, enc.fill_codes, self.mean, self.std), [array_digest(k) for k in enc.known or []]])


def fit_table_scaling(layout: TableLayout, x: np.ndarray, rows: np.ndarray | None = None) -> TableScaling:
    """Encoders and scaling fitted on the training rows ``rows`` of ``x`` (all for None),
    read a chunk at a time: imputed values and known levels
    (:func:`~polytask.data.tabular.fit_table`), then the mean and standard deviation of the
    encoded numeric columns (:func:`~polytask.data.tabular.column_moments`)."""
    rows = np.arange(len(x)) if rows is None else rows
    enc = fit_table(layout, x, rows)
    n = len(layout.numeric)
    if not n:
        return TableScaling(enc, np.empty(0, np.float32), np.empty(0, np.float32))
    # Two passes encoding the rows again (a table on disk is not held encoded); the chunks
    # are those encode_table sums for rows in memory, so the numbers are the same.
    return TableScaling(enc, *column_moments(lambda: row_chunks(x, rows, lambda c: enc.transform(c)[:, :n])))


def encode_table(layout: TableLayout, train: np.ndarray, *others: np.ndarray) -> tuple[TableScaling, list[torch.Tensor]]:
    """A table's rows as tensors, with encoders fitted on ``train`` (the run's training rows).

    Missing values are imputed and levels the training rows lack become unknown
    (:func:`~polytask.data.tabular.fit_table`); then the numeric columns are standardized
    with the training rows' statistics (:class:`TableScaling`, returned with the tensors).
    """
    enc = fit_table(layout, train)
    encoded = [enc.transform(x) for x in (train, *others)]  # once each: the moments read the encoded rows
    n = len(layout.numeric)
    moments = column_moments(lambda: array_chunks(encoded[0][:, :n])) if n else (np.empty(0, np.float32), np.empty(0, np.float32))
    scaling = TableScaling(enc, *moments)
    return scaling, [scaling.scale(e) for e in encoded]
