"""Tables as users have them: categorical columns and missing values.

A table's layout is fixed once per study, from every training row of its source; what
depends on the rows a run trains on is fitted in each run (:func:`fit_table`, called by
:func:`polytask.data.prepare.prepare_task`).

- A **categorical** column (strings in a CSV) with at most ``onehot_max`` levels
  (:data:`ONEHOT_MAX_LEVELS` by default) is one-hot encoded: a block of one column per
  level plus an "unknown" column. A column with more levels becomes one column of integer
  codes, ``1..n`` for its levels and ``0`` for unknown, which the ``mlp`` backbone feeds to a
  learned embedding: the input shape stays a plain ``(width,)``, and the study passes the
  layout's :attr:`TableLayout.embeddings` to the backbone as its ``embeddings`` option
  (:meth:`polytask.study.models.StudyModels.new_backbone`).
- With ``impute``, a missing value is filled per run: numeric columns with the median or
  the most frequent value of the run's training rows, categorical columns with their most
  frequent level (for either strategy: a category has no median). Every column with a
  missing value in the training rows gets a 0/1 missing-value indicator column.

Rows as loaded (``TaskData.x_*``) are already laid out as the backbone reads them, with
NaN where a value is missing: numeric columns, one-hot blocks, indicator columns, code
columns last. A run's encoders are then fitted on its own training rows only: the levels
it knows (a level its training rows lack is unknown in its validation and test rows, as
a level that only occurs in test rows always is), the values it imputes, and the scaling.

Why the layout comes from all training rows and not from each run's: the study builds one
backbone per input shape and checks every task's shape before any run, so the width a
backbone reads must not depend on the seed or the fraction. Taking the levels of every
training row (never a test row) fixes the width for the study: one-hot width = levels of
the full training rows + 1 unknown column; indicators for every column with a missing
value there. A level that a run's training rows lack keeps its column, all zeros in that
run's training rows; in its validation and test rows the level goes to the unknown column
(or code 0), exactly as an encoder fitted on that run's rows alone would treat it. So no
value of a run's validation or test rows, and no test row at all, reaches its encoders.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from polytask.config.data import ONEHOT_MAX_LEVELS
from polytask.core.errors import ConfigError
from polytask.core.mapped import read_rows

if TYPE_CHECKING:
    import pandas as pd

# Embedding width per coded column: 1.6 * (levels + 1) ** 0.56 (fastai's rule), within [2, 32].
EMBEDDING_MAX_DIM = 32


def embedding_dim(n_levels: int) -> int:
    """Width of the embedding of a coded column with ``n_levels`` levels (plus unknown)."""
    return int(max(2, min(EMBEDDING_MAX_DIM, round(1.6 * (n_levels + 1) ** 0.56))))


@dataclass(frozen=True)
class Category:
    """A categorical column and its levels in the training rows (sorted)."""

    name: str
    levels: tuple[str, ...]


@dataclass(frozen=True)
class TableLayout:
    """Columns of a table as the backbone reads them, fixed for a study.

    In this order: ``numeric`` columns (standardized per run), a one-hot block per
    ``onehot`` column (unknown, then its levels), a 0/1 missing-value indicator per
    ``indicators`` column, and a code column per ``coded`` column (last).

    Attributes:
        impute: ``median`` or ``most_frequent``: how a run fills missing values; None
            when the data has none to fill.
    """

    numeric: tuple[str, ...] = ()
    onehot: tuple[Category, ...] = ()
    indicators: tuple[str, ...] = ()
    coded: tuple[Category, ...] = ()
    impute: str | None = None
    _starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        starts, at = [], len(self.numeric)
        for c in self.onehot:
            starts.append(at)
            at += 1 + len(c.levels)
        object.__setattr__(self, "_starts", tuple(starts))

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(1 + len(c.levels) for c in self.onehot) + len(self.indicators) + len(self.coded)

    @property
    def embeddings(self) -> tuple[tuple[int, int], ...]:
        """``(n_levels + 1, dim)`` per coded column, in column order: the ``mlp`` backbone's
        ``embeddings`` option for the last ``len(coded)`` columns."""
        return tuple((len(c.levels) + 1, embedding_dim(len(c.levels))) for c in self.coded)

    @property
    def shape(self) -> tuple[int]:
        """The input shape a backbone is built for, ``(width,)``: a plain tuple, code columns
        included (which columns to embed is :attr:`embeddings`, a backbone option)."""
        return (self.width,)

    def block(self, i: int) -> slice:
        """Columns of the ``i``-th one-hot block (its unknown column first)."""
        return slice(self._starts[i], self._starts[i] + 1 + len(self.onehot[i].levels))

    @property
    def code_columns(self) -> slice:
        return slice(self.width - len(self.coded), self.width)


def _levels(values: pd.Series) -> pd.Series:
    """Categorical values as strings, NaN where missing."""
    return values.map(lambda v: v if isinstance(v, str) else str(v), na_action="ignore")


def feature_kinds(frames: dict[str, tuple[str, pd.DataFrame]], features: list[str]) -> list[str]:
    """The categorical columns among ``features``, checked across files.

    Args:
        frames: ``{split: (file name for messages, the file's feature columns)}``, train first.

    Raises:
        ConfigError: for a column mixing numbers with a few text values (a missing-value
            marker such as ``?``), or numeric in one file and not in the other.
    """
    import pandas as pd

    (train_file, train), *others = frames.values()
    categorical = [c for c in features if not pd.api.types.is_numeric_dtype(train[c])]
    for file, frame in frames.values():
        for c in features:
            if pd.api.types.is_numeric_dtype(frame[c]):
                continue
            if c not in categorical:
                raise ConfigError(f"{file}: feature column '{c}' is not numeric, but it is in {train_file}")
            values = frame[c].dropna().astype(str).str.strip()
            numbers = pd.to_numeric(values, errors="coerce").notna()
            text = values[~numbers]
            if len(values) and numbers.mean() >= 0.9 and text.nunique() <= 2:
                shown = ", ".join(repr(t) for t in sorted(text.unique()))
                raise ConfigError(
                    f"{file}: feature column '{c}' is not numeric: {int(numbers.sum())} of its values are numbers, {len(text)} are text ({shown}); "
                    "leave missing values empty (and set impute), or spell a category's levels as text"
                )
    return categorical


def check_missing(file: str, frame: pd.DataFrame, features: list[str], impute: str | None) -> None:
    """Without ``impute``, a missing feature value is an error naming the column."""
    if impute is not None:
        return
    counts = frame[features].isna().sum()
    missing = counts[counts > 0]
    if len(missing):
        c = missing.index[0]
        raise ConfigError(
            f"{file}: feature column '{c}' has {int(missing.iloc[0])} missing (NaN) values; expected finite features, "
            "or set impute: median | most_frequent in the task's data section"
        )


@dataclass
class TableSummary:
    """What a table's layout needs from its training rows, gathered a batch of rows at a
    time (:meth:`add`): each categorical column's levels and count of values, and which
    columns miss a value somewhere or everywhere."""

    columns: list[str]
    categorical: list[str]
    levels: dict[str, set] = field(default_factory=dict)
    values: dict[str, int] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    present: set[str] = field(default_factory=set)

    def add(self, frame: pd.DataFrame) -> None:
        for c in self.categorical:
            values = _levels(frame[c]).dropna()
            self.levels.setdefault(c, set()).update(values.unique())
            self.values[c] = self.values.get(c, 0) + len(values)
        for c in self.columns:
            na = frame[c].isna()
            if na.any():
                self.missing.add(c)
            if not na.all():
                self.present.add(c)

    def layout(self, file: str, impute: str | None, onehot_max: int = ONEHOT_MAX_LEVELS) -> TableLayout:
        """The layout (see :func:`table_layout`)."""
        numeric = tuple(str(c) for c in self.columns if c not in self.categorical)
        onehot, coded = [], []
        for c in self.categorical:
            levels = tuple(sorted(self.levels.get(c, ())))
            if not levels:
                raise ConfigError(f"{file}: feature column '{c}' has no value in the training rows; leave it out of the features")
            if len(levels) > ONEHOT_MAX_LEVELS and len(levels) == self.values[c]:
                raise ConfigError(
                    f"{file}: feature column '{c}' has a different value in each of its {self.values[c]} training rows: an identifier or "
                    "free text, not a category; leave it out of the features (exclude: or features:)"
                )
            (onehot if len(levels) <= onehot_max else coded).append(Category(str(c), levels))
        empty = [c for c in self.columns if c not in self.categorical and c not in self.present]
        if empty:
            raise ConfigError(f"{file}: feature column '{empty[0]}' has no value in the training rows; leave it out of the features")
        indicators = tuple(str(c) for c in self.columns if c in self.missing) if impute else ()
        return TableLayout(numeric, tuple(onehot), indicators, tuple(coded), impute)


def table_layout(file: str, train: pd.DataFrame, categorical: list[str], impute: str | None, onehot_max: int = ONEHOT_MAX_LEVELS) -> TableLayout:
    """The layout of a table, from its training rows (every row a run may train or validate on).

    Raises:
        ConfigError: for a column without any value in the training rows, or a
            categorical column with a different value in every training row (an
            identifier or free text, not a category).
    """
    summary = TableSummary(list(train.columns), list(categorical))
    summary.add(train)
    return summary.layout(file, impute, onehot_max)


def layout_record(layout: TableLayout) -> dict:
    """``layout`` as plain JSON data (:func:`layout_from_record` reads it back)."""
    return {
        "numeric": list(layout.numeric),
        "onehot": [[c.name, list(c.levels)] for c in layout.onehot],
        "indicators": list(layout.indicators),
        "coded": [[c.name, list(c.levels)] for c in layout.coded],
        "impute": layout.impute,
    }


def layout_from_record(r: dict) -> TableLayout:
    return TableLayout(
        tuple(r["numeric"]),
        tuple(Category(n, tuple(levels)) for n, levels in r["onehot"]),
        tuple(r["indicators"]),
        tuple(Category(n, tuple(levels)) for n, levels in r["coded"]),
        r["impute"],
    )


def table_rows(layout: TableLayout, frame: pd.DataFrame) -> np.ndarray:
    """Rows of ``frame`` laid out as ``layout`` says: float32, NaN where a value is missing.

    A level outside the layout's (one that no training row has) is unknown: the one-hot
    block's first column, or code 0.
    """
    n = len(frame)
    out = np.empty((n, layout.width), dtype=np.float32)
    out[:, : len(layout.numeric)] = frame[list(layout.numeric)].to_numpy(np.float32) if layout.numeric else np.empty((n, 0))

    def codes(c: Category) -> np.ndarray:
        index = {level: i + 1 for i, level in enumerate(c.levels)}
        values = _levels(frame[c.name])
        return np.array([np.nan if not isinstance(v, str) else index.get(v, 0) for v in values], dtype=np.float64)

    for i, c in enumerate(layout.onehot):
        out[:, layout.block(i)] = one_hot(codes(c), len(c.levels))
    at = layout.width - len(layout.coded) - len(layout.indicators)
    for j, name in enumerate(layout.indicators):
        out[:, at + j] = frame[name].isna().to_numpy()
    for j, c in enumerate(layout.coded):
        out[:, layout.code_columns.start + j] = codes(c)
    return out


def one_hot(codes: np.ndarray, n_levels: int) -> np.ndarray:
    """``[N] -> [N, 1 + n_levels]``: code ``k`` sets column ``k`` (0: unknown); NaN, a missing value, gives a row of NaN."""
    out = np.zeros((len(codes), n_levels + 1), dtype=np.float32)
    known = ~np.isnan(codes)
    out[np.flatnonzero(known), codes[known].astype(np.int64)] = 1.0
    out[~known] = np.nan
    return out


def block_codes(block: np.ndarray) -> np.ndarray:
    """The inverse of :func:`one_hot`: the code of each row of a block, NaN where missing."""
    codes = block.argmax(axis=1).astype(np.float64)
    codes[np.isnan(block).any(axis=1)] = np.nan
    return codes


def numeric_layout(x_train: np.ndarray, impute: str) -> TableLayout:
    """The layout of a numeric array (an NPZ's ``x_train``) with ``impute``: an indicator
    column for each of its columns with a missing value."""
    names = tuple(str(i) for i in range(x_train.shape[1]))
    missing = np.isnan(x_train).any(axis=0)
    return TableLayout(names, indicators=tuple(n for n, m in zip(names, missing) if m), impute=impute)


def numeric_rows(layout: TableLayout, x: np.ndarray) -> np.ndarray:
    """Rows of a numeric array laid out as ``layout`` says (its indicator columns appended)."""
    ind = [int(n) for n in layout.indicators]
    return np.concatenate([x.astype(np.float32), np.isnan(x[:, ind]).astype(np.float32)], axis=1)


@dataclass(frozen=True)
class TableEncoder:
    """What one run fitted on its training rows: the values it imputes and the levels it knows.

    ``transform`` keeps the layout's width: only values change (filled, or unknown).

    Attributes:
        fill_numeric: per numeric column, the value filling a missing one (None: no impute).
        fill_codes: per categorical column, the level code filling a missing one.
        known: per categorical column, the level codes the run's training rows have
            (sorted); any other code becomes 0, unknown. None without categorical columns.
    """

    layout: TableLayout
    fill_numeric: np.ndarray | None = None
    fill_codes: np.ndarray | None = None
    known: list[np.ndarray] | None = None

    def codes(self, x: np.ndarray) -> np.ndarray:
        """``[N, n_categorical]`` level codes (NaN where missing), one-hot columns first."""
        lay = self.layout
        cols = [block_codes(x[:, lay.block(i)]) for i in range(len(lay.onehot))]
        cols += [x[:, lay.code_columns.start + j].astype(np.float64) for j in range(len(lay.coded))]
        return np.stack(cols, axis=1) if cols else np.empty((len(x), 0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        lay = self.layout
        out = np.array(x, dtype=np.float32, copy=True)
        if self.fill_numeric is not None:
            _fill(out[:, : len(lay.numeric)], self.fill_numeric)
        if self.known is not None:
            codes = self.codes(x)
            if self.fill_codes is not None:
                _fill(codes, self.fill_codes)
            for j, levels in enumerate(self.known):
                codes[:, j] = np.where(np.isin(codes[:, j], levels), codes[:, j], 0.0)
            for i, c in enumerate(lay.onehot):
                out[:, lay.block(i)] = one_hot(codes[:, i], len(c.levels))
            out[:, lay.code_columns] = codes[:, len(lay.onehot) :]
        return out


def _fill(x: np.ndarray, values: np.ndarray) -> None:
    """Replace the NaN of each column of ``x`` (in place) with that column's value."""
    r, c = np.nonzero(np.isnan(x))
    x[r, c] = values[c]


# Bytes of a run's training columns held at once while fitting its encoders: numeric
# columns are read from the rows in groups that fit (a table on disk is never read whole).
FIT_BYTES = 256 << 20


def fit_table(layout: TableLayout, x_train: np.ndarray, rows: np.ndarray | None = None) -> TableEncoder:
    """Fit a run's encoders on its training rows (laid out by ``layout``): ``x_train``, or
    its rows ``rows`` (a table on disk, read a chunk of rows at a time).

    scikit-learn does the fitting, one group of columns at a time (its statistics are per
    column): ``SimpleImputer(strategy=layout.impute)`` for numeric columns,
    ``SimpleImputer(strategy="most_frequent")`` for level codes, and ``OrdinalEncoder`` for
    the levels the run knows; a column without any value in the run's rows is filled with 0
    (code 0: unknown).
    """
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OrdinalEncoder

    rows = np.arange(len(x_train)) if rows is None else rows
    enc = TableEncoder(layout)
    fill_numeric = fill_codes = known = None
    n_num = len(layout.numeric)
    if layout.impute is not None and n_num:
        per_group = max(1, FIT_BYTES // max(1, 4 * len(rows)))
        stats = []
        for start in range(0, n_num, per_group):
            cols = np.concatenate(list(row_chunks(x_train, rows, lambda c, a=start: c[:, a : min(a + per_group, n_num)])))
            stats.append(SimpleImputer(strategy=layout.impute, keep_empty_features=True).fit(cols).statistics_)
        fill_numeric = np.nan_to_num(np.concatenate(stats), nan=0.0)
    if layout.onehot or layout.coded:
        codes = np.concatenate(list(row_chunks(x_train, rows, enc.codes)))
        if layout.impute is not None:
            imputer = SimpleImputer(strategy="most_frequent", keep_empty_features=True).fit(codes)
            fill_codes = np.nan_to_num(imputer.statistics_, nan=0.0)
            codes = imputer.transform(codes)
        known = list(OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, dtype=np.int64).fit(codes).categories_)
    return TableEncoder(layout, fill_numeric, fill_codes, known)


# Rows per chunk of a table's rows: fixed, so that sums over chunks are the same numbers
# whether the rows are on disk or in memory.
TABLE_CHUNK_ROWS = 1 << 14


def row_chunks(x: np.ndarray, rows: np.ndarray, f=lambda c: c) -> Iterator[np.ndarray]:
    """``f`` of rows ``rows`` of ``x``, :data:`TABLE_CHUNK_ROWS` rows at a time (a mapped
    ``x`` is read with ``pread``: :func:`~polytask.core.mapped.read_rows`)."""
    for i in range(0, len(rows), TABLE_CHUNK_ROWS):
        yield f(read_rows(x, rows[i : i + TABLE_CHUNK_ROWS]))


def array_chunks(a: np.ndarray) -> Iterator[np.ndarray]:
    """Consecutive :data:`TABLE_CHUNK_ROWS`-row views of ``a``: the chunks
    :func:`row_chunks` reads from disk, for rows already in memory."""
    for i in range(0, len(a), TABLE_CHUNK_ROWS):
        yield a[i : i + TABLE_CHUNK_ROWS]


def column_moments(chunks: Callable[[], Iterable[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (``ddof=1``; 1 for a constant column or a single row) of
    the columns of the rows ``chunks()`` yields, summed in float64 chunk by chunk, as float32.

    Two passes over ``chunks()`` (the mean, then squared deviations from it), so the rows
    need not be in memory; the same chunks give the same numbers wherever they come from.
    """
    total, n = None, 0
    for c in chunks():
        s = c.sum(axis=0, dtype=np.float64)
        total = s if total is None else total + s
        n += len(c)
    mean = total / n
    squares = None
    for c in chunks():
        d = (c.astype(np.float64) - mean) ** 2
        s = d.sum(axis=0)
        squares = s if squares is None else squares + s
    std = np.sqrt(squares / (n - 1)) if n > 1 else np.ones_like(mean)
    std = np.where(std > 1e-8, std, 1.0)
    return mean.astype(np.float32), std.astype(np.float32)
