"""Where a task's data comes from and what is predicted from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from polytask.config.base import Frozen, TaskKind
from polytask.core.metrics import METRICS

# A CSV's categorical column with at most this many levels in the training rows is one-hot
# encoded, one with more is embedded (``data.onehot_max``; see polytask.data.tabular).
ONEHOT_MAX_LEVELS = 16


class DataConfig(Frozen):
    """Where a task's data comes from: exactly one of ``npz``, ``csv``, ``images`` or ``builtin``.

    Attributes:
        npz: NPZ file with ``x_train, y_train, x_test, y_test`` and optional ``x_val, y_val``.
        csv: CSV or Parquet file (``parquet:`` is the same key; Parquet needs
            ``polytask[parquet]``); ``target`` names the label column, ``features`` the input columns
            (default: every other column not in ``exclude``). Without ``test`` a
            stratified, seeded test split of ``test_size`` is drawn.
        images: a folder of image files with one subfolder per class (the subfolder names,
            sorted, are the classes), or a CSV listing image files (column ``path``,
            relative to the CSV) with label columns (``target`` names one). ``test``: a
            folder or CSV of the same form; without it a test split of ``test_size`` is
            drawn from the files' content. Decoded once when the study loads.
        size: resize every image to ``size`` x ``size`` pixels when decoding (needed when
            the files differ in size).
        channels: 1 (grey) or 3 (RGB); default: 3 when any training image has colour.
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
        impute: ``median`` or ``most_frequent``: fill missing feature values (NaN, empty
            CSV cells) with that statistic of each run's training rows (categorical
            columns: their most frequent level), and add a 0/1 missing-value indicator
            column for every column with a missing value in the training rows. Without
            it a missing feature value is an error. For CSV and tabular NPZ sources.
        onehot_max: a CSV's string (categorical) column with at most this many levels in
            the training rows is one-hot encoded (plus an unknown column); one with more
            becomes integer codes that the ``mlp`` backbone embeds. 0 embeds every one.
    """

    npz: Path | None = None
    csv: Path | None = None
    images: Path | None = None
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
    impute: Literal["median", "most_frequent"] | None = None
    onehot_max: int = Field(ONEHOT_MAX_LEVELS, ge=0)
    path: str = "path"
    size: int | None = Field(None, ge=4)
    channels: Literal[1, 3] | None = None

    @model_validator(mode="before")
    @classmethod
    def _parquet_is_a_table(cls, raw: Any) -> Any:
        # ``parquet: file`` reads like ``csv: file`` (the reader knows Parquet by its bytes).
        if isinstance(raw, dict) and "parquet" in raw:
            if "csv" in raw:
                raise ValueError("give either 'csv' or 'parquet', not both")
            raw = {("csv" if k == "parquet" else k): v for k, v in raw.items()}
        return raw

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        given = [k for k in ("npz", "csv", "images", "builtin") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of npz, csv, images, builtin (got {given or 'none'})")
        if (self.size is not None or self.channels is not None) and self.images is None:
            raise ValueError("'size' and 'channels' are how an images data source is decoded")
        if self.csv is not None and not self.target:
            raise ValueError("a csv data source needs 'target': the label column")
        if self.text is not None and self.csv is None:
            raise ValueError("'text' names a column of a csv data source; builtin text datasets need no 'text'")
        if self.text is not None and self.features:
            raise ValueError("give either 'text' (one text column) or 'features' (numeric columns), not both")
        if self.impute is not None and (self.builtin is not None or self.text is not None):
            raise ValueError("'impute' fills missing values of tabular features (csv or npz), not of a builtin dataset or a text column")
        if self.onehot_max != ONEHOT_MAX_LEVELS and (self.csv is None or self.text is not None):
            raise ValueError("'onehot_max' sets how the categorical feature columns of a csv data source are encoded")
        return self

    def resolved(self, base: Path) -> DataConfig:
        """Return a copy with file paths made absolute against ``base``."""
        update = {k: (base / v) for k in ("npz", "csv", "images", "test") if (v := getattr(self, k)) is not None}
        return self.model_copy(update=update)


class TaskConfig(Frozen):
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


class ColumnsConfig(Frozen):
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
    impute: Literal["median", "most_frequent"] | None = None
    onehot_max: int | None = Field(None, ge=0)


def tasks_from_columns(csv: str | Path, targets: list[str], **options: Any) -> dict[str, dict]:
    """Task entries for ``tasks:``, one per label column of ``csv``.

    Args:
        csv: the CSV file.
        targets: label columns; each becomes a task of that name.
        **options: ``features``, ``test``, ``test_size``, ``role``, ``kind``, ``impute``,
            ``onehot_max`` as in :class:`ColumnsConfig` (the last two as in :class:`DataConfig`).

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
        if spec.impute is not None:
            data["impute"] = spec.impute
        if spec.onehot_max is not None:
            data["onehot_max"] = spec.onehot_max
        out[column] = {"data": data, "role": spec.role, **({"kind": spec.kind} if spec.kind else {})}
    return out
