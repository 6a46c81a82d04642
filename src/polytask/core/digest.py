"""Content digests: what a cache key or a fingerprint is made of.

A digest hashes content (array bytes, tensor bytes, file bytes), never where the content
lives, so two copies of one file have one digest and a moved project keeps its digests.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polytask.core.mapped import chunk_rows, mapping, release

# Hex digits kept: 16 (64 bits) make an accidental collision among a study's keys negligible.
WIDTH = 16


def _hasher() -> Any:
    return hashlib.blake2b(digest_size=WIDTH // 2)


def _update_array(h: Any, a: np.ndarray) -> None:
    a = np.asarray(a)
    if a.dtype.kind == "O" or a.dtype.kind in "US":
        # Strings: their UTF-8 bytes, each with its length so ["ab", "c"] != ["a", "bc"].
        for s in a.reshape(-1):
            b = str(s).encode()
            h.update(len(b).to_bytes(8, "little"))
            h.update(b)
        h.update(repr(a.shape).encode())
        return
    h.update(f"{a.dtype.str}{a.shape}".encode())
    if mapping(a) is None:
        h.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1))
        return
    # A mapped array is hashed a chunk of rows at a time, its pages released as it goes.
    step = chunk_rows(a)
    for i in range(0, len(a), step):
        h.update(np.ascontiguousarray(a[i : i + step]).view(np.uint8).reshape(-1))
        release(a)


def array_digest(*arrays: np.ndarray | None) -> str:
    """Digest of arrays' dtypes, shapes and values (``None`` counts as a distinct value)."""
    h = _hasher()
    for a in arrays:
        if a is None:
            h.update(b"<none>")
        else:
            _update_array(h, a)
    return h.hexdigest()


_keys: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def content_key(a: np.ndarray) -> str:
    """:func:`array_digest` of ``a``, computed once per memory-mapped array in a process
    (its file does not change under it: files here are replaced, never rewritten)."""
    mm = mapping(a)
    if mm is None:
        return array_digest(a)
    if mm not in _keys:
        _keys[mm] = array_digest(a)
    return _keys[mm]


def tensor_digest(*tensors: torch.Tensor) -> str:
    """Digest of tensors' dtypes, shapes and values, wherever they live."""
    h = _hasher()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def state_digest(module: torch.nn.Module) -> str:
    """Digest of a module's state: every parameter and buffer by name, shape and value."""
    h = _hasher()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor_digest(t).encode())
    return h.hexdigest()


def file_digest(path: str | Path) -> str:
    """Digest of a file's bytes (not of its name or location)."""
    h = _hasher()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def value_digest(value: Any) -> str:
    """Digest of plain data (mappings, lists, strings, numbers), independent of key order."""
    h = _hasher()
    h.update(repr(_canonical(value)).encode())
    return h.hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _canonical(v)) for k, v in value.items()))
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return tuple(_canonical(v) for v in value)
    return value
