"""Memory-mapped arrays whose pages a process does not keep.

Pages of a mapped file that a process has read count in its resident size until it
unmaps them, so a run reading a data set larger than memory from a mapped array would
grow to the data set's size, though the kernel can drop those pages at any time. Worse,
a fault maps far more than the page asked for (read-around and large page-cache folios:
on this machine about 250 KiB per random row of 16 KiB, 500 MiB for 32 MiB of rows). So
after each batch or chunk it reads, the process drops its mapping of the file's pages
(``madvise(MADV_DONTNEED)``, :func:`release`): they stay in the kernel's page cache,
shared with every other process reading the file, and the next read maps them again.

Rows picked at random (a training batch) are read with ``pread`` instead
(:func:`read_rows`): each row is copied from the page cache into the batch, and nothing
is mapped at all.
"""

from __future__ import annotations

import mmap
import os
import weakref
from pathlib import Path

import numpy as np

# Bytes of rows read or written per chunk when a whole array is scanned or copied.
CHUNK_BYTES = 16 << 20

# The file (device, inode) each map opened by open_mapped reads: pread reads that file
# only while the path still names it (a replaced file's old map reads through the map).
_files: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def open_mapped(path: str | Path) -> np.memmap:
    """The ``.npy`` file ``path`` memory-mapped read-only, its rows readable with :func:`read_rows`."""
    a = np.load(path, mmap_mode="r")
    st = os.stat(path)
    _files[a._mmap] = (st.st_dev, st.st_ino)
    return a


def mapping(a: np.ndarray) -> mmap.mmap | None:
    """The memory map under ``a`` (a ``numpy.memmap`` or a view of one), or None."""
    # numpy.memmap keeps its mmap as ``_mmap``; views share it, copies have None.
    return getattr(a, "_mmap", None)


def release(a: np.ndarray) -> None:
    """Drop this process's mapping of mapped ``a``'s pages (their content stays in the file
    and the page cache; written pages are flushed first); nothing for an array in memory."""
    mm = mapping(a)
    if mm is not None and not mm.closed:
        if a.flags.writeable:
            mm.flush()
        mm.madvise(mmap.MADV_DONTNEED)


def row_bytes(a: np.ndarray) -> int:
    """Bytes of one row of ``a``."""
    return a.itemsize * (int(np.prod(a.shape[1:])) if a.ndim > 1 else 1)


def chunk_rows(a: np.ndarray) -> int:
    """Rows of ``a`` in a chunk of about :data:`CHUNK_BYTES` (at least one)."""
    return max(1, CHUNK_BYTES // max(1, row_bytes(a)))


def read_rows(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of ``a`` in a new array (``a[rows]``).

    An array :func:`open_mapped` opened is read row by row with ``pread`` from its file, so
    reading a batch maps no pages; any other array (or one whose file was replaced) is indexed.
    """
    mm = mapping(a)
    if mm is None or a.base is not mm or not a.flags.c_contiguous or mm not in _files:
        return np.asarray(a[rows])
    try:
        fd = os.open(a.filename, os.O_RDONLY)
    except OSError:
        return np.asarray(a[rows])  # the file moved or went: its map still reads it
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != _files[mm]:
            return np.asarray(a[rows])  # the path names another file now
        out = np.empty((len(rows), *a.shape[1:]), dtype=a.dtype)
        width = row_bytes(a)
        buf = out.reshape(len(rows), width // a.itemsize).view(np.uint8)
        for i, r in enumerate(np.asarray(rows, dtype=np.int64)):
            if r < 0 or r >= len(a):
                raise IndexError(f"row {r} is out of range for {len(a)} rows")
            got = os.preadv(fd, [buf[i]], a.offset + int(r) * width)
            if got != width:
                raise OSError(f"{a.filename}: read {got} of {width} bytes of row {r}")
        return out
    finally:
        os.close(fd)
