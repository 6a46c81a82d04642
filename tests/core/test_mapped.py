"""Mapped arrays whose pages a process releases as it reads keep their content."""

from __future__ import annotations

import numpy as np

from polytask.core import mapped
from polytask.core.digest import array_digest
from polytask.data.ondisk import gather, open_array, write_array
from polytask.data.rows import StoredRows


def test_released_pages_read_back_the_same_values(tmp_path):
    a = np.random.default_rng(0).integers(0, 255, (500, 7, 9), dtype=np.uint8)
    # Written through a map released after each chunk: every chunk reaches the file.
    write_array(tmp_path / "a.npy", (a[i : i + 64] for i in range(0, len(a), 64)), len(a), a.shape[1:], a.dtype)
    m = open_array(tmp_path / "a.npy")
    assert mapped.mapping(m) is not None and mapped.mapping(np.asarray(m[[1, 2]])) is None
    assert array_digest(m) == array_digest(a)  # hashed in chunks, released as it goes
    rows = StoredRows(m, "k", np.arange(len(a))[::-1].copy(), scale=255.0)
    for _ in range(3):
        assert np.array_equal(rows.tensor().numpy()[:, 0], a[::-1] / np.float32(255.0))
    assert np.array_equal(np.concatenate(list(gather(m, np.array([499, 0, 250]), chunk=2))), a[[499, 0, 250]])
    mapped.release(np.zeros(3))  # an array in memory: nothing to release


def test_a_chunk_is_about_16_mib_of_rows():
    assert mapped.chunk_rows(np.zeros((10, 64, 64), dtype=np.float32)) == 1024
    assert mapped.chunk_rows(np.zeros((2, 8 << 20), dtype=np.float32)) == 1


def test_rows_read_with_pread_equal_indexing(tmp_path):
    a = np.random.default_rng(1).normal(size=(300, 3, 5)).astype(np.float32)
    write_array(tmp_path / "c.npy", [a], len(a), a.shape[1:], a.dtype)
    m = open_array(tmp_path / "c.npy")
    rows = np.array([299, 0, 7, 7, 150])
    assert np.array_equal(mapped.read_rows(m, rows), a[rows]) and mapped.read_rows(m, rows[:0]).shape == (0, 3, 5)
    assert np.array_equal(mapped.read_rows(m[10:], rows[1:4]), a[10:][rows[1:4]])  # a view is indexed
    assert np.array_equal(mapped.read_rows(a, rows), a[rows])


def test_a_map_whose_file_was_replaced_reads_its_own_rows(tmp_path):
    old, new = np.arange(40, dtype=np.int64).reshape(10, 4), -np.arange(40, dtype=np.int64).reshape(10, 4)
    write_array(tmp_path / "d.npy", [old], 10, (4,), old.dtype)
    m = open_array(tmp_path / "d.npy")
    write_array(tmp_path / "e.npy", [new], 10, (4,), new.dtype)
    (tmp_path / "e.npy").replace(tmp_path / "d.npy")
    assert np.array_equal(mapped.read_rows(m, np.array([2, 9])), old[[2, 9]])
    assert np.array_equal(mapped.read_rows(open_array(tmp_path / "d.npy"), np.array([2, 9])), new[[2, 9]])
