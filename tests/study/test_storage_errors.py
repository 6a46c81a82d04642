"""A full disk or a read-only study folder: one line, exit code 2, nothing stored damaged."""

from __future__ import annotations

import errno
import os

import pytest
from test_cli import one_error_line, runner, write_study

from polytask.cli import app
from polytask.core import io
from polytask.study import store as store_module


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("code", "words"), [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")])
@pytest.mark.parametrize("where", ["results", "files"])
def test_a_study_folder_that_cannot_be_written_is_one_line_and_keeps_what_it_holds(tmp_path, monkeypatch, code, words, where):
    config = write_study(tmp_path / "input", seeds=1, strategies=["scratch", "fine-tune"])
    out = tmp_path / "out"
    first = runner.invoke(app, ["compare", str(config), "--out", str(out), "--seeds", "1"])
    assert first.exit_code == 0, first.output
    before = _files(out)

    def full(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    # The next writes fail: a results line (append) or any whole file (predictions, summary).
    if where == "results":
        monkeypatch.setattr(store_module.os, "fsync", full)
    else:
        monkeypatch.setattr(io.tempfile, "mkstemp", full)
    result = runner.invoke(app, ["compare", str(config), "--out", str(out), "--seeds", "2"])
    assert result.exit_code == 2
    line = one_error_line(result)
    assert words in line and str(out) in line and "cannot write" in line, line
    after = _files(out)
    for name, content in before.items():
        if name == "results.jsonl":
            assert after[name].startswith(content)  # appended to at most, never rewritten
        else:
            assert after.get(name) == content, name
