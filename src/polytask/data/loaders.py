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
from polytask.data.splits import holdout, rng_for


def load_data(spec: DataConfig) -> TaskData:
    """Load the arrays a :class:`DataConfig` points to (cropped when ``crop`` is set)."""
    if spec.npz is not None:
        data = load_npz(spec.npz)
    elif spec.csv is not None:
        data = load_csv(spec)
    else:
        data = load_builtin(spec.builtin, spec.target)
    if spec.max_train is not None or spec.max_test is not None:
        data = cap_rows(data, spec)
    return crop_images(data, spec.crop) if spec.crop else data


def source_key(spec: DataConfig) -> str:
    """What seeds a source's fixed draws (test split, row caps): the content of its files,
    or a builtin's name. Never a path, so two copies of a file draw the same rows."""
    if spec.builtin is not None:
        return f"builtin:{spec.builtin}"
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
    _need_file(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, ValueError, OSError) as e:
        raise ConfigError(f"{path}: not a readable .npz file ({e})") from None
    required = ["x_train", "y_train", "x_test", "y_test"]
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ConfigError(f"{path}: missing key(s) {', '.join(missing)}; expected {', '.join(required)} (and optional x_val, y_val)")
    return TaskData(**{k: arrays[k] for k in [*required, "x_val", "y_val"] if k in arrays}, origin=str(path))


def _read_csv(path: Path):
    import pandas as pd

    _need_file(path)
    try:
        return pd.read_csv(path)
    except Exception as e:  # pandas raises many parser error types; all mean "not a usable CSV"
        raise ConfigError(f"{path}: not a readable CSV file ({type(e).__name__}: {e})") from None


def load_csv(spec: DataConfig) -> TaskData:
    """One label column of a CSV as a task; a seeded test split unless ``test`` is given.

    The test split is drawn from the file's content alone, so every task read from one
    file holds out the same rows, in every study, wherever the file lives. With
    ``stratify`` it is stratified by this task's label column instead (for a file that
    only one task reads). String labels are mapped to class ids in sorted order.
    """
    import pandas as pd

    df = _read_csv(spec.csv)
    cols = list(df.columns)
    if spec.target not in cols:
        raise ConfigError(f"{spec.csv}: no column '{spec.target}' for target (columns: {', '.join(map(str, cols))})")
    skip = {spec.target, *(spec.exclude or [])}
    if spec.text is not None and spec.text not in cols:
        raise ConfigError(f"{spec.csv}: no column '{spec.text}' for text (columns: {', '.join(map(str, cols))})")
    features = [spec.text] if spec.text is not None else spec.features or [c for c in cols if c not in skip]
    absent = [c for c in features if c not in cols]
    if absent:
        raise ConfigError(f"{spec.csv}: feature column(s) {', '.join(absent)} not found (columns: {', '.join(map(str, cols))})")
    frames = {"train": df}
    if spec.test is not None:
        frames["test"] = _read_csv(spec.test)
        gone = [c for c in [*features, spec.target] if c not in frames["test"].columns]
        if gone:
            raise ConfigError(f"{spec.test}: missing column(s) {', '.join(gone)} that {spec.csv} has")
    labels = df[spec.target]
    mapping = None
    if not pd.api.types.is_numeric_dtype(labels):
        mapping = {v: i for i, v in enumerate(sorted(labels.dropna().unique()))}
    out = {}
    for split, frame in frames.items():
        x = frame[features]
        non_numeric = [c for c in features if not pd.api.types.is_numeric_dtype(x[c])]
        if non_numeric and spec.text is None:
            raise ConfigError(f"{spec.csv}: feature column '{non_numeric[0]}' is not numeric (a text column goes in 'text:')")
        y = frame[spec.target]
        if mapping is not None:
            unknown = set(y.dropna()) - set(mapping)
            if unknown:
                raise ConfigError(f"{spec.test}: label {sorted(map(str, unknown))[0]!r} in '{spec.target}' does not occur in {spec.csv}")
            y = y.map(mapping)
        if spec.text is not None:
            # Empty cells read as NaN; as text they are the empty string.
            inputs = frame[spec.text].fillna("").astype(str).to_numpy(dtype=object)
        else:
            inputs = x.to_numpy(np.float32)
        out[split] = (inputs, y.to_numpy(np.float64))
    if "test" not in out:
        x, y = out["train"]
        classes = spec.stratify and (mapping is not None or (np.all(np.mod(y[np.isfinite(y)], 1) == 0) and len(np.unique(y)) <= 50))
        keys = [source_key(spec), "test"] + ([spec.target] if classes else [])
        train, test = holdout(y, spec.test_size, rng_for(0, *keys), stratify=bool(classes))
        out = {"train": (x[train], y[train]), "test": (x[test], y[test])}
    (xtr, ytr), (xte, yte) = out["train"], out["test"]
    return TaskData(xtr, _as_labels(ytr), xte, _as_labels(yte), origin=str(spec.csv))


def _as_labels(y: np.ndarray) -> np.ndarray:
    """Integer dtype for finite whole-number labels, so they read as classes."""
    if np.all(np.isfinite(y)) and np.all(np.mod(y, 1) == 0):
        return y.astype(np.int64)
    return y
