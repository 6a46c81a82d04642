"""A catalogue of bad inputs, each with the one line it must produce.

Every case is a study config (and the data files it names) that polytask must refuse
through ``polytask compare``: exit code 2, one line that starts with ``error:`` and
names the field or file and what was expected, no traceback, and a study folder that
is left exactly as it was (here: never created).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from polytask.cli import app

runner = CliRunner()


def _npz(path: Path, n: int = 60, m: int = 30, d: int = 4, seed: int = 0, **changes) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + m, d)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    arrays = {"x_train": x[:n], "y_train": y[:n], "x_test": x[n:], "y_test": y[n:], **changes}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _config(folder: Path, tasks: dict | None = None, **changes) -> dict:
    cfg = {
        "name": "bad",
        "seeds": 1,
        "fractions": [1.0],
        "tasks": tasks if tasks is not None else {"a": {"data": {"npz": str(_npz(folder / "a.npz"))}}},
        "model": {"backbone": "mlp", "mlp": {"hidden": [8]}},
        "strategies": ["scratch"],
        "train": {"max_epochs": 1, "batch_size": 16, "patience": 1, "min_steps_per_epoch": 1},
    }
    cfg.update(changes)
    return cfg


def _csv(folder: Path, text: str, name: str = "t.csv", encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def _rows(n: int = 40) -> str:
    return "a,b,label\n" + "\n".join(f"{i % 7},{(i * 3) % 5},{i % 2}" for i in range(n)) + "\n"


def _task(folder: Path, data: dict) -> dict:
    return {"a": {"data": data}}


@dataclass
class Case:
    """A bad input: ``build(folder)`` writes its files and returns the config (a dict, or
    the text of the YAML file); the error line must contain every one of ``expect``."""

    name: str
    build: Callable[[Path], dict | str]
    expect: tuple[str, ...]


def _other_study(folder: Path) -> dict:
    # A folder of another study, which saved no model (save_models was off).
    other = folder / "other-study"
    (other / "predictions").mkdir(parents=True)
    (other / "study.json").write_text('{"fingerprint": "abc"}')
    return _config(folder, model={"backbone": f"run:{other}/a/scratch/seed0"})


def _foreign_checkpoint(folder: Path) -> dict:
    # A file where a saved backbone would be, that polytask did not write.
    path = folder / "other" / "models" / "a" / "scratch" / "1" / "seed0.pt"
    path.parent.mkdir(parents=True)
    torch.save({"weights": torch.zeros(3)}, path)
    return _config(folder, model={"backbone": f"run:{folder / 'other'}/a/scratch/seed0"})


def _pickled_npz(folder: Path) -> dict:
    # An object array: np.load would have to unpickle it, which polytask never does.
    x = np.empty(60, dtype=object)
    x[:] = [{"evil": i} for i in range(60)]
    _npz(folder / "p.npz", x_train=x)
    return _config(folder, _task(folder, {"npz": str(folder / "p.npz")}))


def _ragged_npz(folder: Path) -> dict:
    x = np.empty(60, dtype=object)
    x[:] = [np.zeros(1 + i % 3) for i in range(60)]
    _npz(folder / "r.npz", x_train=x)
    return _config(folder, _task(folder, {"npz": str(folder / "r.npz")}))


def _leak(folder: Path) -> dict:
    a = _npz(folder / "a.npz")
    with np.load(a) as f:
        arrays = dict(f)
    np.savez(
        folder / "b.npz",
        x_train=np.concatenate([arrays["x_train"], arrays["x_test"]]),
        y_train=np.concatenate([arrays["y_train"], arrays["y_test"]]),
        x_test=arrays["x_test"],
        y_test=arrays["y_test"],
    )
    return _config(
        folder, {"a": {"data": {"npz": str(a)}}, "b": {"data": {"npz": str(folder / "b.npz")}, "role": "source"}}, strategies=["scratch", "fine-tune"]
    )


CASES = [
    Case("seeds zero", lambda f: _config(f, seeds=0), ("field 'seeds'", "greater than or equal to 1")),
    Case("seeds negative", lambda f: _config(f, seeds=-3), ("field 'seeds'",)),
    Case("seeds not a number", lambda f: _config(f, seeds="five"), ("field 'seeds'", "integer")),
    Case("no tasks", lambda f: _config(f, tasks={}), ("field 'tasks'",)),
    Case("unknown key", lambda f: _config(f, colour="blue"), ("colour",)),
    Case("fraction above one", lambda f: _config(f, fractions=[1.5]), ("field 'fractions'",)),
    Case("unknown strategy", lambda f: _config(f, strategies=["scratch", "telepathy"]), ("telepathy",)),
    Case("unknown backbone", lambda f: _config(f, model={"backbone": "resnet9000"}), ("resnet9000",)),
    Case(
        "unknown metric",
        lambda f: _config(f, _task(f, {"npz": str(_npz(f / "a.npz"))}) | {"a": {"data": {"npz": str(f / "a.npz")}, "metric": "vibes"}}),
        ("vibes",),
    ),
    Case("batch size zero", lambda f: _config(f, train={"batch_size": 0}), ("field 'train.batch_size'",)),
    Case("tuning seed among the seeds", lambda f: _config(f, seeds=3, tune={"trials": 2, "seed": 1}), ("field 'tune.seed'", "never be evaluated")),
    Case("config is not yaml", lambda f: "name: [unclosed\n  seeds: 1", ("YAML",)),
    Case("config is a list", lambda f: "- a\n- b\n", ("mapping",)),
    Case("empty config", lambda f: "", ("the config is empty",)),
    Case("missing data file", lambda f: _config(f, _task(f, {"npz": str(f / "nowhere.npz")})), ("nowhere.npz", "does not exist")),
    Case(
        "a path through .. that does not exist",
        lambda f: _config(f, _task(f, {"npz": str(f / "sub" / ".." / ".." / "gone" / "a.npz")})),
        ("a.npz", "does not exist"),
    ),
    Case("npz without a key", lambda f: _config(f, _task(f, {"npz": str(_npz(f / "k.npz", y_test=None))})), ("missing key(s) y_test",)),
    Case("npz of pickled objects", _pickled_npz, ("p.npz", "pickled Python objects", "never unpickles")),
    Case("ragged arrays", _ragged_npz, ("r.npz", "rows of different lengths")),
    Case(
        "NaN features",
        lambda f: _config(f, _task(f, {"npz": str(_npz(f / "n.npz", x_test=np.full((30, 4), np.nan, np.float32)))})),
        ("x_test", "NaN or infinite"),
    ),
    Case("inf features", lambda f: _config(f, _task(f, {"npz": str(_npz(f / "i.npz", x_test=np.full((30, 4), np.inf, np.float32)))})), ("x_test", "infinite")),
    Case(
        "x and y of different lengths",
        lambda f: _config(f, _task(f, {"npz": str(_npz(f / "l.npz", y_train=np.zeros(59, np.int64)))})),
        ("x_train has 60 rows but y_train has 59",),
    ),
    Case("a target with no labels", lambda f: _config(f, _task(f, {"npz": str(_npz(f / "u.npz", y_train=np.full(60, np.nan)))})), ("y_train", "no labels")),
    Case(
        "every label one class",
        lambda f: _config(f, _task(f, {"npz": str(_npz(f / "o.npz", y_train=np.zeros(60, np.int64), y_test=np.zeros(30, np.int64)))})),
        ("every label in y_train is 0, one class",),
    ),
    Case(
        "classes in test not in train",
        lambda f: _config(f, _task(f, {"npz": str(_npz(f / "c.npz", y_test=np.full(30, 7, np.int64)))})),
        ("label 7 in y_test is not a class",),
    ),
    Case(
        "images of the wrong rank",
        lambda f: _config(
            f, _task(f, {"npz": str(_npz(f / "w.npz", x_train=np.zeros((60, 2, 3, 8, 8), np.float32), x_test=np.zeros((30, 2, 3, 8, 8), np.float32)))})
        ),
        ("x_train has shape (60, 2, 3, 8, 8)", "expected"),
    ),
    Case(
        "a CSV without the target column", lambda f: _config(f, _task(f, {"csv": str(_csv(f, _rows())), "target": "price"})), ("no column 'price' for target",)
    ),
    Case(
        "a CSV without a feature column",
        lambda f: _config(f, _task(f, {"csv": str(_csv(f, _rows())), "target": "label", "features": ["a", "z"]})),
        ("feature column(s) z not found",),
    ),
    Case(
        "a text column of numbers",
        lambda f: _config(f, _task(f, {"csv": str(_csv(f, _rows())), "target": "label", "text": "a"}), model={"backbone": "gru"}),
        ("column 'a'", "numbers, not text"),
    ),
    Case(
        "a CSV that is not UTF-8",
        lambda f: _config(f, _task(f, {"csv": str(_csv(f, "a,b,label\n" + "café,1,0\n" * 30, encoding="latin-1")), "target": "label"})),
        ("t.csv", "not UTF-8 text"),
    ),
    Case(
        "a config that is not UTF-8",
        lambda f: yaml.safe_dump(_config(f)).replace("name: bad", "name: caf\xe9").encode("latin-1"),
        ("study.yaml: not UTF-8 text",),
    ),
    Case("a checkpoint that is not polytask's", _foreign_checkpoint, ("seed0.pt is not a polytask backbone file",)),
    Case("run: a folder of another study", _other_study, ("no saved model at", "save_models: true")),
    Case("run: a path without its seed", lambda f: _config(f, model={"backbone": f"run:{f}/elsewhere"}), ("field 'model.backbone'", "must end in /seed<k>")),
    Case("test rows among another task's training rows", _leak, ("task 'a'", "test rows are training or validation inputs of task 'b'")),
]


def test_the_catalogue_holds_at_least_25_cases_with_distinct_names():
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_input_is_one_line_exit_2_and_the_study_folder_is_untouched(tmp_path, case):
    cfg = case.build(tmp_path)
    config = tmp_path / "study.yaml"
    if isinstance(cfg, dict):
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    elif isinstance(cfg, bytes):
        config.write_bytes(cfg)
    else:
        config.write_text(cfg)
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare", str(config), "--out", str(out)])
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.output, repr(result.exception))
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for words in case.expect:
        assert words in lines[0], lines[0]
    assert not out.exists()
