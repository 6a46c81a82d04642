"""A Parquet table read a batch of rows at a time into memory-mapped arrays.

The arrays are those :func:`polytask.data.loaders.load_csv` gives for the same file (the
same features, labels, test split, table layout and rows), written into a study's
``prepared/`` folder batch by batch: the whole table is never in memory, only its label
column. Two passes over the file's row batches: the first gathers what the table's
layout needs from the training rows (:class:`~polytask.data.tabular.TableSummary`) and
checks every batch as a CSV's columns are checked; the second writes each row where it
belongs, in the training or the test array.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np

from polytask.config import DataConfig
from polytask.core.digest import file_digest, value_digest
from polytask.core.mapped import release
from polytask.data.arrays import TaskData
from polytask.data.ondisk import ArrayFolder
from polytask.data.tablefile import as_labels, check_test_columns, is_parquet, label_names, label_split, read_parquet, table_features
from polytask.data.tabular import TableSummary, check_missing, feature_kinds, layout_from_record, layout_record, table_rows

__all__ = ["is_parquet", "load_parquet"]

# Rows read per batch.
BATCH_ROWS = 1 << 16
LAYOUT_FILE = "layout.json"


def _open(path: Path):
    return read_parquet(path, lambda p: importlib.import_module("pyarrow.parquet").ParquetFile(p))


def _batches(pf, columns: list[str]):
    """``(first row, frame)`` per batch of the file's rows, only ``columns`` read."""
    at = 0
    for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=columns):
        frame = batch.to_pandas()
        yield at, frame
        at += len(frame)


def load_parquet(spec: DataConfig, store: Path, key: str) -> TaskData:
    """The task ``spec`` describes, from a Parquet file (and a Parquet ``test`` file), its
    feature rows written to ``store`` and read memory-mapped.

    Args:
        spec: the task's data section (``csv`` or ``parquet`` naming the file).
        store: the study's ``prepared/`` folder.
        key: the file's content key (:func:`~polytask.data.loaders.source_key`), which
            seeds a drawn test split as it does for a CSV.
    """
    files = {"train": spec.csv, **({"test": spec.test} if spec.test is not None else {})}
    pfs = {split: _open(path) for split, path in files.items()}
    features = table_features(spec, pfs["train"].schema_arrow.names)
    if "test" in pfs:
        check_test_columns(spec, features, pfs["test"].schema_arrow.names)
    labels = {split: pf.read(columns=[spec.target]).column(0).to_pandas() for split, pf in pfs.items()}
    ys, parts = label_split(spec, labels, key)
    names = {"train": str(spec.csv), "test": str(spec.test) if spec.test is not None else f"{spec.csv} (test rows)"}
    settings = spec.model_dump(mode="json", exclude={"csv", "test"})
    digest = value_digest(["parquet", key, file_digest(spec.test) if spec.test is not None else None, settings])

    def build(where: Path) -> dict[str, bool]:
        # Which rows of each file each split takes, and where each goes in its array.
        member, position = {}, {}
        for split, (file, idx) in parts.items():
            n = pfs[file].metadata.num_rows
            rows = np.arange(n) if idx is None else idx
            member[split] = np.zeros(n, dtype=bool)
            member[split][rows] = True
            position[split] = np.full(n, -1, dtype=np.int64)
            position[split][rows] = np.arange(len(rows))
        first = next(_batches(pfs["train"], features))[1]
        summary, categorical, missing = None, None, False
        for split, (file, _) in parts.items():
            for at, frame in _batches(pfs[file], features):
                frame = frame[member[split][at : at + len(frame)]]
                categorical = feature_kinds({"train": (names["train"], first), split: (names[split], frame)}, features)
                check_missing(names[split], frame, features, spec.impute)
                missing = missing or bool(frame.isna().to_numpy().any())
                if split == "train":
                    summary = summary or TableSummary(list(features), categorical)
                    summary.add(frame)
        layout = summary.layout(names["train"], spec.impute, spec.onehot_max) if categorical or missing else None
        (where / LAYOUT_FILE).write_text(json.dumps(layout_record(layout) if layout is not None else None))
        for split, (file, _) in parts.items():
            width = layout.width if layout is not None else len(features)
            out = np.lib.format.open_memmap(where / f"x_{split}.npy", mode="w+", dtype=np.float32, shape=(len(ys[split]), width))
            for at, frame in _batches(pfs[file], features):
                take = member[split][at : at + len(frame)]
                rows = table_rows(layout, frame[take]) if layout is not None else frame[take].to_numpy(np.float32)
                out[position[split][at : at + len(frame)][take]] = rows
                release(out)
            out.flush()
            del out
            np.save(where / f"y_{split}.npy", ys[split])
        return {"x_train": True, "y_train": False, "x_test": True, "y_test": False}

    folder = ArrayFolder(store, f"table-{digest}")
    arrays = folder.write(build)
    record = json.loads((folder.path / LAYOUT_FILE).read_text())
    table = layout_from_record(record) if record is not None else None
    return TaskData(
        arrays["x_train"],
        as_labels(arrays["y_train"]),
        arrays["x_test"],
        as_labels(arrays["y_test"]),
        origin=str(spec.csv),
        table=table,
        columns=tuple(features),
        class_names=label_names(labels["train"]),
    )
