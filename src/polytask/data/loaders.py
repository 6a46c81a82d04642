"""Read a task's data from the source its config names: NPZ, CSV or a builtin."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from polytask.config import DataConfig
from polytask.core.digest import file_digest
from polytask.core.errors import ConfigError
from polytask.data.arrays import TaskData
from polytask.data.builtin import load_builtin
from polytask.data.images import images_key, load_images
from polytask.data.parquet import is_parquet, load_parquet
from polytask.data.splits import rng_for
from polytask.data.tablefile import as_labels, check_test_columns, label_names, label_split, read_parquet, table_features
from polytask.data.tabular import check_missing, feature_kinds, numeric_layout, numeric_rows, table_layout, table_rows


def load_data(spec: DataConfig, store: Path | None = None) -> TaskData:
    """Load the arrays a :class:`DataConfig` points to (cropped when ``crop`` is set).

    ``store``: a folder where image files are decoded to memory-mapped arrays
    (:func:`~polytask.data.images.load_images`) instead of into memory.
    """
    if spec.npz is not None:
        data = load_npz(spec.npz)
        if spec.impute is not None:
            data = with_imputation(data, spec.impute)
    elif spec.csv is not None:
        data = load_csv(spec, store)
    elif spec.images is not None:
        data = load_images(spec, store)
    else:
        data = load_builtin(spec.builtin, spec.target)
    if spec.max_train is not None or spec.max_test is not None:
        data = cap_rows(data, spec)
    return crop_images(data, spec.crop) if spec.crop else data


def with_imputation(data: TaskData, impute: str) -> TaskData:
    """Tabular arrays whose missing values each run imputes: an indicator column for
    every column with a missing value in ``x_train`` (see :mod:`polytask.data.tabular`)."""
    x = data.x_train
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
        raise ConfigError(f"{data.origin}: impute fills missing values of tabular features, but x_train has shape {x.shape} and dtype {x.dtype}")
    splits = [k for k in ("x_train", "x_val", "x_test") if getattr(data, k) is not None]
    if not any(np.isnan(getattr(data, k)).any() for k in splits if np.issubdtype(getattr(data, k).dtype, np.floating)):
        return data
    table = numeric_layout(x, impute)
    fields = {**data.__dict__, "table": table}
    for k in splits:
        if getattr(data, k).ndim == 2 and getattr(data, k).shape[1] == x.shape[1]:
            fields[k] = numeric_rows(table, getattr(data, k))
    return TaskData(**fields)


def source_key(spec: DataConfig) -> str:
    """What seeds a source's fixed draws (test split, row caps): the content of its files,
    or a builtin's name. Never a path, so two copies of a file draw the same rows."""
    if spec.builtin is not None:
        return f"builtin:{spec.builtin}"
    if spec.images is not None:
        return "content:" + images_key(spec)
    files = [f for f in (spec.npz, spec.csv, spec.test) if f is not None]
    for f in files:
        _need_file(f)
    return "content:" + "+".join(file_digest(f) for f in files)


def cap_rows(data: TaskData, spec: DataConfig) -> TaskData:
    """At most ``max_train`` training and ``max_test`` test rows, in their original order.

    The rows are drawn from the source's content (not its path, not the target), so every
    task reading one source keeps the same rows and they still share inputs.
    """
    source = source_key(spec)
    fields = dict(data.__dict__)
    for split, cap in (("train", spec.max_train), ("test", spec.max_test)):
        n = len(fields[f"x_{split}"])
        if cap is None or cap >= n:
            continue
        keep = np.sort(rng_for(0, source, f"max_{split}").choice(n, cap, replace=False))
        fields[f"x_{split}"], fields[f"y_{split}"] = fields[f"x_{split}"][keep], fields[f"y_{split}"][keep]
    return TaskData(**fields)


def crop_images(data: TaskData, c: int) -> TaskData:
    """Remove ``c`` pixels from every border of every image split."""
    if data.x_train.ndim not in (3, 4):
        raise ConfigError(f"{data.origin}: crop needs images, but samples have shape {data.input_shape}")
    h, w = data.x_train.shape[-2:]
    if 2 * c >= min(h, w):
        raise ConfigError(f"{data.origin}: crop {c} leaves nothing of {h}x{w} images; expected crop < {min(h, w) // 2}")
    fields = {k: v[..., c : h - c, c : w - c] if k.startswith("x_") and v is not None else v for k, v in data.__dict__.items()}
    return TaskData(**fields)


def _need_file(path: Path) -> None:
    if not Path(path).is_file():
        raise ConfigError(f"data file '{path}' does not exist")


def load_npz(path: Path) -> TaskData:
    """NPZ with keys ``x_train, y_train, x_test, y_test`` and optionally ``x_val, y_val``."""
    arrays = read_npz(path)
    required = ["x_train", "y_train", "x_test", "y_test"]
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ConfigError(f"{path}: missing key(s) {', '.join(missing)}; expected {', '.join(required)} (and optional x_val, y_val)")
    return TaskData(**{k: arrays[k] for k in [*required, "x_val", "y_val"] if k in arrays}, origin=str(path))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an NPZ file, never unpickling anything; one line for a file that is not one."""
    _need_file(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as e:
        if "Object arrays" in str(e):
            raise ConfigError(
                f"{path}: holds object arrays (pickled Python objects, or rows of different lengths), which polytask never unpickles; "
                "save numeric arrays of one shape per key"
            ) from None
        if "pickled data" in str(e):
            raise ConfigError(f"{path}: not an .npz file but pickled data, which polytask never unpickles; save arrays with numpy.savez") from None
        raise ConfigError(f"{path}: not a readable .npz file ({e})") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ConfigError(f"{path}: not a readable .npz file ({e})") from None
    return arrays


def read_csv_file(path: Path):
    """A table file as a DataFrame: Parquet (by its magic bytes) or CSV."""
    import pandas as pd

    _need_file(path)
    if is_parquet(path):
        return read_parquet(path, pd.read_parquet)
    try:
        return pd.read_csv(path, encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save the file as UTF-8") from None
    except Exception as e:  # pandas raises many parser error types; all mean "not a usable CSV"
        raise ConfigError(f"{path}: not a readable CSV file ({type(e).__name__}: {e})") from None


def load_csv(spec: DataConfig, store: Path | None = None) -> TaskData:
    """One label column of a CSV as a task; a seeded test split unless ``test`` is given.

    The test split is drawn from the file's content alone, so every task read from one
    file holds out the same rows, in every study, wherever the file lives. With
    ``stratify`` it is stratified by this task's label column instead (for a file that
    only one task reads). String labels are mapped to class ids in sorted order.

    String feature columns are categories and missing values are imputed with ``impute``
    (:mod:`polytask.data.tabular`): the table's layout comes from the training rows,
    after the test split, and the task's ``table`` carries it. A purely numeric file
    without missing values gives plain float32 rows, as it always did.

    With ``store``, a Parquet file of features is read a batch of rows at a time into
    memory-mapped arrays there (:func:`polytask.data.parquet.load_parquet`): the same
    arrays, never the whole table in memory.
    """
    import pandas as pd

    if store is not None and spec.text is None and is_parquet(spec.csv) and (spec.test is None or is_parquet(spec.test)):
        return load_parquet(spec, store, source_key(spec))
    df = read_csv_file(spec.csv)
    features = table_features(spec, list(df.columns))
    frames = {"train": df}
    files = {"train": str(spec.csv)}
    if spec.test is not None:
        frames["test"] = read_csv_file(spec.test)
        files["test"] = str(spec.test)
        check_test_columns(spec, features, list(frames["test"].columns))
    ys, parts = label_split(spec, {split: frame[spec.target] for split, frame in frames.items()}, source_key(spec))
    if "test" not in frames:
        files["test"] = f"{spec.csv} (test rows)"

    def rows(split: str, array: np.ndarray) -> np.ndarray:
        idx = parts[split][1]
        return array if idx is None else array[idx]

    table = None
    if spec.text is not None:
        if pd.api.types.is_numeric_dtype(frames["train"][spec.text]):
            raise ConfigError(f"{spec.csv}: column '{spec.text}' holds numbers, not text; name a column of text as 'text', or use it as a feature")
        # Empty cells read as NaN; as text they are the empty string.
        xs = {split: rows(split, frames[file][spec.text].fillna("").astype(str).to_numpy(dtype=object)) for split, (file, _) in parts.items()}
    else:
        tables = {split: (files[split], frames[file][features] if idx is None else frames[file][features].iloc[idx]) for split, (file, idx) in parts.items()}
        categorical = feature_kinds(tables, features)
        for file, x in tables.values():
            check_missing(file, x, features, spec.impute)
        if categorical or any(x.isna().to_numpy().any() for _, x in tables.values()):
            table = table_layout(files["train"], tables["train"][1], categorical, spec.impute, spec.onehot_max)
            xs = {split: table_rows(table, x) for split, (_, x) in tables.items()}
        else:
            xs = {split: rows(split, frames[file][features].to_numpy(np.float32)) for split, (file, _) in parts.items()}
    columns = (spec.text,) if spec.text is not None else tuple(features)
    names = label_names(frames["train"][spec.target])
    y_train, y_test = as_labels(ys["train"]), as_labels(ys["test"])
    return TaskData(xs["train"], y_train, xs["test"], y_test, origin=str(spec.csv), table=table, columns=columns, class_names=names)
