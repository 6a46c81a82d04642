"""Image files as a task: a folder with one subfolder per class, or a CSV listing files and
their labels. Files are decoded once, when the study loads, into ``uint8`` arrays (the
run's rows become floats when it prepares them), so the study sees them as it sees any
image array: its content is hashed, split, resized and scaled alike.

Decoding goes through a :class:`~torch.utils.data.DataLoader` (worker processes for many
files). Given a study's folder, the decoded arrays are written there as ``.npy`` files
and read memory-mapped (:mod:`polytask.data.ondisk`): a data set larger than memory is
never held whole, and a rerun of the study reads them instead of decoding again.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from polytask.core.digest import array_digest, file_digest, value_digest
from polytask.core.errors import ConfigError
from polytask.data.arrays import TaskData
from polytask.data.ondisk import ArrayFolder, fill, gather, open_array, write_array
from polytask.data.splits import holdout, rng_for

# Files read as images in a class folder (case-insensitive); others (notes, thumbs) are skipped.
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
# Images decoded per batch, and the fewest files worth starting decoding workers for.
DECODE_BATCH = 256
WORKER_MIN_FILES = 2000


def list_folder(root: Path) -> tuple[list[Path], list[str]]:
    """The image files of a class-per-subfolder tree and each one's class name (sorted)."""
    if not root.is_dir():
        raise ConfigError(f"images: '{root}' is not a folder (expected one subfolder per class, or a CSV of file paths)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ConfigError(f"images: '{root}' has no class subfolders (expected {root}/<class>/<image files>)")
    files, labels = [], []
    for c in classes:
        found = sorted(p for p in (root / c).rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        files += found
        labels += [c] * len(found)
    if not files:
        raise ConfigError(f"images: no image files ({', '.join(SUFFIXES)}) under '{root}'")
    return files, labels


def list_csv(path: Path, target: str | None, column: str) -> tuple[list[Path], list]:
    """The files a CSV lists (paths relative to it) and their labels in column ``target``."""
    import pandas as pd

    if not path.is_file():
        raise ConfigError(f"images: file '{path}' does not exist")
    df = pd.read_csv(path)
    for name, what in ((column, "path"), (target, "target")):
        if name not in df.columns:
            raise ConfigError(f"{path}: no column '{name}' for {what} (columns: {', '.join(map(str, df.columns))})")
    return [path.parent / str(p) for p in df[column]], list(df[target])


class _Decoded(Dataset):
    """One decoded image per index (for a :class:`~torch.utils.data.DataLoader`): uint8
    ``[H, W]`` or ``[3, H, W]``, or the one-line message of a file Pillow cannot read
    (raised by the process that reads the batches, not inside a worker)."""

    def __init__(self, files: list[Path], size: int | None, channels: int):
        self.files, self.size, self.channels = files, size, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray | str:
        from PIL import Image, UnidentifiedImageError

        f = self.files[i]
        try:
            with Image.open(f) as im:
                im = im.convert("RGB" if self.channels == 3 else "L")
        except FileNotFoundError:
            return f"images: file '{f}' does not exist"
        except (UnidentifiedImageError, OSError) as e:
            return f"images: '{f}' is not an image Pillow can read ({e})"
        if self.size is not None and im.size != (self.size, self.size):
            im = im.resize((self.size, self.size), Image.Resampling.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
        return a.transpose(2, 0, 1) if self.channels == 3 else a


def _stack(items: list[np.ndarray | str]) -> np.ndarray:
    for item in items:
        if isinstance(item, str):
            raise ConfigError(item)
    return np.stack(items)


def survey(files: list[Path], size: int | None, channels: int | None) -> tuple[int, tuple[int, ...]]:
    """The channels and shape of one decoded image, from the files' headers (no pixels are
    decoded): colour when any file is, and one line for an unreadable file or, without
    ``size``, files of different sizes."""
    from PIL import Image, UnidentifiedImageError

    sizes, colour = [], False
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.append(im.size)
                colour = colour or im.mode not in ("L", "1", "I", "I;16", "F", "LA")
        except FileNotFoundError:
            raise ConfigError(f"images: file '{f}' does not exist") from None
        except (UnidentifiedImageError, OSError) as e:
            raise ConfigError(f"images: '{f}' is not an image Pillow can read ({e})") from None
    if channels is None:
        channels = 3 if colour else 1
    if size is None:
        for f, (w, h) in zip(files, sizes):
            if (w, h) != sizes[0]:
                w0, h0 = sizes[0]
                raise ConfigError(f"images: '{files[0]}' is {w0}x{h0} pixels but '{f}' is {w}x{h}; set data.size to resize them alike")
    w, h = (size, size) if size is not None else sizes[0]
    return channels, ((3, h, w) if channels == 3 else (h, w))


def decode_workers(n_files: int) -> int:
    """Processes decoding files: none for a few files (starting workers costs more), else
    up to 4, fewer on a smaller machine."""
    return 0 if n_files < WORKER_MIN_FILES else min(4, os.cpu_count() or 1)


def decode(files: list[Path], size: int | None, channels: int | None, path: Path | None = None) -> np.ndarray:
    """``[N, H, W]`` (grey) or ``[N, 3, H, W]`` uint8 images.

    Files are decoded in batches through a :class:`~torch.utils.data.DataLoader` (worker
    processes for many files) into one array: in memory, or with ``path`` a ``.npy`` file
    written batch by batch and returned memory-mapped, so the decoded images are never
    whole in memory.
    """
    channels, shape = survey(files, size, channels)
    workers = decode_workers(len(files))
    loader = DataLoader(_Decoded(files, size, channels), batch_size=DECODE_BATCH, num_workers=workers, collate_fn=_stack)
    if path is None:
        return fill(np.empty((len(files), *shape), dtype=np.uint8), loader)
    write_array(path, loader, len(files), shape, np.uint8)
    return open_array(path)


def _listing(where: Path, spec) -> tuple[list[Path], list]:
    return list_csv(where, spec.target, spec.path) if where.suffix.lower() == ".csv" and not where.is_dir() else list_folder(where)


def images_key(spec) -> str:
    """Digest of an images source's content: each file's bytes with its label, in order
    (train, then test), never the files' paths."""
    parts = []
    for where in (spec.images, spec.test):
        if where is not None:
            files, labels = _listing(where, spec)
            parts.append([(str(label), file_digest(f)) for f, label in zip(files, labels)])
    return value_digest(parts)


def load_images(spec, store: Path | None = None) -> TaskData:
    """The task a ``DataConfig`` with ``images`` describes (see its docstring).

    With ``store`` (a study's ``prepared/`` folder), the decoded images are written there
    once, keyed by the files' content and the decoding settings, and read memory-mapped:
    a run reads the rows it needs from disk. Without it, they are decoded into memory.
    """
    files, labels = _listing(spec.images, spec)
    if spec.images.is_dir() and spec.target is not None:
        raise ConfigError(f"images: '{spec.images}' is a class-per-subfolder tree, whose labels are the folder names; 'target' names a column of a CSV listing")
    test_files, test_labels = _listing(spec.test, spec) if spec.test is not None else ([], [])
    classes = sorted({*labels, *test_labels}, key=lambda v: (str(type(v)), v))
    index = {c: i for i, c in enumerate(classes)}
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) for v in labels)
    y = np.asarray(labels if numeric else [index[v] for v in labels])
    y_test = np.asarray(test_labels if numeric else [index[v] for v in test_labels]) if spec.test is not None else None

    def build(where: Path | None) -> dict[str, np.ndarray]:
        x = decode(files, spec.size, spec.channels, where / "all.npy" if where else None)
        if spec.test is not None:
            x_test = decode(test_files, spec.size, 3 if x.ndim == 4 else 1, where / "x_test.npy" if where else None)
            if x_test.shape[1:] != x.shape[1:]:
                raise ConfigError(f"images: test images are {x_test.shape[1:]} but training images are {x.shape[1:]}; set data.size")
            if where is not None:
                os.replace(where / "all.npy", where / "x_train.npy")
            return {"x_train": x, "y_train": y, "x_test": x_test, "y_test": y_test}
        # A test split drawn from the images' content (not their paths), as for a CSV.
        keep, held = holdout(y, spec.test_size, rng_for(0, "content:" + array_digest(x, y), "test"), stratify=True)
        if where is None:
            return {"x_train": x[keep], "y_train": y[keep], "x_test": x[held], "y_test": y[held]}
        for name, rows in (("x_train", keep), ("x_test", held)):
            write_array(where / f"{name}.npy", gather(x, rows), len(rows), x.shape[1:], x.dtype)
        del x
        (where / "all.npy").unlink()
        return {"y_train": y[keep], "y_test": y[held]}

    origin = str(spec.images)
    names = None if numeric else tuple(str(c) for c in classes)
    if store is None:
        return TaskData(**build(None), origin=origin, class_names=names)

    def write(where: Path) -> dict[str, bool]:
        labels = build(where)
        for name in ("y_train", "y_test"):
            np.save(where / f"{name}.npy", labels[name])
        return {"x_train": True, "y_train": False, "x_test": True, "y_test": False}

    key = value_digest(["images", images_key(spec), spec.size, spec.channels, spec.test_size])
    return TaskData(**ArrayFolder(store, f"images-{key}").write(write), origin=origin, class_names=names)
