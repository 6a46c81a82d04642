"""Arrays kept on disk: ``.npy`` files written chunk by chunk and read memory-mapped.

A folder of arrays (:class:`ArrayFolder`) is written into a temporary folder and renamed
into place when every array is complete, so a reader sees all of it or none of it: a
study killed while it decodes leaves a temporary folder that is never read, and the next
start writes the arrays again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from polytask.core.errors import storage_error
from polytask.core.mapped import chunk_rows, open_mapped, release

# Written last into a complete folder: what it holds.
MANIFEST = "arrays.json"


def is_on_disk(a: np.ndarray | None) -> bool:
    """Whether ``a`` is a memory-mapped array backed by a file (its rows stay on disk until
    read; an unpickled copy of one is in memory)."""
    return isinstance(a, np.memmap) and getattr(a, "filename", None) is not None


def fill(out: np.ndarray, chunks: Iterable[np.ndarray]) -> np.ndarray:
    """Write ``chunks`` into ``out`` one after another; ValueError unless they fill it exactly."""
    at = 0
    for c in chunks:
        if at + len(c) > len(out):
            raise ValueError(f"chunks hold more than the {len(out)} rows expected")
        out[at : at + len(c)] = c
        at += len(c)
        release(out)  # a file written through a map: its pages released as it grows
    if at != len(out):
        raise ValueError(f"chunks hold {at} rows, {len(out)} expected")
    return out


def write_array(path: Path, chunks: Iterable[np.ndarray], rows: int, shape: tuple, dtype) -> None:
    """Write ``rows`` rows of ``shape`` and ``dtype`` from ``chunks`` to the ``.npy`` file ``path``.

    Only one chunk is in memory at a time: the file is written through a memory map.
    """
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(rows, *shape))
    try:
        fill(out, chunks)
        out.flush()
    finally:
        del out


def open_array(path: Path) -> np.memmap:
    """The ``.npy`` file ``path``, memory-mapped read-only (:func:`~polytask.core.mapped.open_mapped`)."""
    return open_mapped(path)


def gather(source: np.ndarray, rows: np.ndarray, chunk: int | None = None) -> Iterable[np.ndarray]:
    """Rows ``rows`` of ``source``, ``chunk`` at a time (default: about 16 MiB), for :func:`write_array`."""
    chunk = chunk or chunk_rows(source)
    for i in range(0, len(rows), chunk):
        yield np.asarray(source[rows[i : i + chunk]])
        release(source)


class ArrayFolder:
    """A folder of named arrays under ``root/key``, written whole or not at all.

    Args:
        root: where the folders of arrays live (a study's ``prepared/``).
        key: names the folder; make it a digest of everything the arrays depend on.
    """

    def __init__(self, root: Path, key: str):
        self.root = Path(root)
        self.path = self.root / key

    def complete(self) -> bool:
        """Whether the folder holds every array it was written with."""
        return (self.path / MANIFEST).is_file()

    def open(self) -> dict[str, np.ndarray]:
        """Every array of the folder: mapped ones memory-mapped, small ones in memory."""
        manifest = json.loads((self.path / MANIFEST).read_text())
        return {name: open_array(self.path / f"{name}.npy") if mapped else np.load(self.path / f"{name}.npy") for name, mapped in manifest.items()}

    def write(self, build: Callable[[Path], dict[str, bool]]) -> dict[str, np.ndarray]:
        """Write the folder with ``build(folder)`` unless it is complete, and open it.

        ``build`` writes ``<name>.npy`` files into the folder it is given and returns, per
        name, whether the array is read memory-mapped. It writes into a temporary folder
        renamed into place afterwards, so a crash leaves nothing that reads as complete;
        when another process completed the folder meanwhile, its arrays are kept.
        """
        if not self.complete():
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.root))
            except OSError as e:
                raise storage_error(self.root, e) from None
            try:
                manifest = build(tmp)
                (tmp / MANIFEST).write_text(json.dumps(manifest))
                if self.path.exists() and not self.complete():
                    shutil.rmtree(self.path)  # the leftovers of a crash
                try:
                    os.replace(tmp, self.path)
                except OSError:
                    if not self.complete():  # not another writer's complete folder: a real error
                        raise
            except OSError as e:
                raise storage_error(self.path, e) from None
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return self.open()
