"""Image files as a task: a folder with one subfolder per class, or a CSV listing files and
their labels. Files are decoded once, when the study loads, into ``uint8`` arrays (the
run's rows become floats when it prepares them), so the study sees them as it sees any
image array: its content is hashed, split, resized and scaled alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polytask.core.digest import array_digest, file_digest, value_digest
from polytask.core.errors import ConfigError
from polytask.data.arrays import TaskData
from polytask.data.splits import holdout, rng_for

# Files read as images in a class folder (case-insensitive); others (notes, thumbs) are skipped.
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


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


def decode(files: list[Path], size: int | None, channels: int | None) -> np.ndarray:
    """``[N, H, W]`` (grey) or ``[N, 3, H, W]`` uint8 images; one line for an unreadable
    file or, without ``size``, files of different sizes."""
    from PIL import Image, UnidentifiedImageError

    images = []
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                images.append(im.copy())
        except FileNotFoundError:
            raise ConfigError(f"images: file '{f}' does not exist") from None
        except (UnidentifiedImageError, OSError) as e:
            raise ConfigError(f"images: '{f}' is not an image Pillow can read ({e})") from None
    if channels is None:
        channels = 3 if any(im.mode not in ("L", "1", "I", "I;16", "F", "LA") for im in images) else 1
    arrays = []
    for im in images:
        im = im.convert("RGB" if channels == 3 else "L")
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        arrays.append(np.asarray(im, dtype=np.uint8))
    for f, a in zip(files, arrays):
        if a.shape != arrays[0].shape:
            (h0, w0), (h, w) = arrays[0].shape[:2], a.shape[:2]
            raise ConfigError(f"images: '{files[0]}' is {w0}x{h0} pixels but '{f}' is {w}x{h}; set data.size to resize them alike")
    x = np.stack(arrays)
    return x.transpose(0, 3, 1, 2).copy() if channels == 3 else x


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


def load_images(spec) -> TaskData:
    """The task a ``DataConfig`` with ``images`` describes (see its docstring)."""
    files, labels = _listing(spec.images, spec)
    if spec.images.is_dir() and spec.target is not None:
        raise ConfigError(f"images: '{spec.images}' is a class-per-subfolder tree, whose labels are the folder names; 'target' names a column of a CSV listing")
    test_files, test_labels = _listing(spec.test, spec) if spec.test is not None else ([], [])
    classes = sorted({*labels, *test_labels}, key=lambda v: (str(type(v)), v))
    index = {c: i for i, c in enumerate(classes)}
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) for v in labels)
    y = np.asarray(labels if numeric else [index[v] for v in labels])
    x = decode(files, spec.size, spec.channels)
    origin = str(spec.images)
    if spec.test is not None:
        x_test = decode(test_files, spec.size, 3 if x.ndim == 4 else 1)
        if x_test.shape[1:] != x.shape[1:]:
            raise ConfigError(f"images: test images are {x_test.shape[1:]} but training images are {x.shape[1:]}; set data.size")
        y_test = np.asarray(test_labels if numeric else [index[v] for v in test_labels])
        return TaskData(x, y, x_test, y_test, origin=origin)
    # A test split drawn from the images' content (not their paths), as for a CSV.
    keep, held = holdout(y, spec.test_size, rng_for(0, "content:" + array_digest(x, y), "test"), stratify=True)
    return TaskData(x[keep], y[keep], x[held], y[held], origin=origin)
