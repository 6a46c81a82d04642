"""The bad-input catalogue: every mistake is one ConfigError line naming the field or file.

Each case builds a broken config (and data) in a temporary folder. Through the Python API
the case must raise :class:`polytask.ConfigError` whose one-line message names the
offending field, file or value; through the CLI it must print one ``error:`` line, exit
with code 2, show no traceback, and leave a finished study in ``--out`` untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import polytask
from polytask import ConfigError, Study, load_config
from polytask.cli import app
from polytask.data import TaskData

N_TRAIN, N_TEST, N_FEATURES = 60, 30, 5


def write_npz(path: Path, *, n: int = N_TRAIN, m: int = N_TEST, d: int = N_FEATURES, classes: int = 3, seed: int = 0, **override) -> Path:
    """A small tabular classification task as NPZ; ``key=None`` in ``override`` drops that key."""
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.normal(size=(n, d)).astype(np.float32),
        "y_train": np.arange(n) % classes,
        "x_test": rng.normal(size=(m, d)).astype(np.float32),
        "y_test": np.arange(m) % classes,
    }
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def valid_config() -> dict:
    """A tiny valid study: target ``a`` and source ``b`` (both ``a.npz``/``b.npz`` next to the config)."""
    return {
        "name": "tiny",
        "seeds": 1,
        "fractions": [1.0],
        "tasks": {"a": {"data": {"npz": "a.npz"}}, "b": {"data": {"npz": "b.npz"}, "role": "source"}},
        "model": {"backbone": "mlp", "mlp": {"hidden": [16]}},
        "strategies": ["scratch", "mtl"],
        "train": {"max_epochs": 2, "batch_size": 32, "patience": 1, "min_steps_per_epoch": 1},
    }


def write_case(folder: Path, *, a: dict | None = None, b: dict | None = None, name: str = "study.yaml", **changes) -> Path:
    """Write ``a.npz``, ``b.npz`` (with overrides) and a config with top-level ``changes``; return the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    write_npz(folder / "a.npz", **(a or {}))
    write_npz(folder / "b.npz", seed=1, n=120, **(b or {}))
    cfg = copy.deepcopy(valid_config())
    cfg.update(changes)
    path = folder / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _train(**extra) -> dict:
    return {**valid_config()["train"], **extra}


def _nan_x() -> np.ndarray:
    x = np.random.default_rng(0).normal(size=(N_TRAIN, N_FEATURES)).astype(np.float32)
    x[7, 2] = np.nan
    return x


def _csv_task(folder: Path, frame: pd.DataFrame, target: str) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "a.csv", index=False)
    return {"a": {"data": {"csv": "a.csv", "target": target}}, "b": valid_config()["tasks"]["b"]}


def _csv_frame(non_numeric: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    f1, f2 = rng.normal(size=N_TRAIN), rng.normal(size=N_TRAIN)
    if non_numeric:  # numbers with a missing-value marker: neither numbers nor a category (text levels are one)
        f2 = [("?" if i % 20 == 7 else v) for i, v in enumerate(f2)]
    return pd.DataFrame({"f1": f1, "f2": f2, "label": np.arange(N_TRAIN) % 3})


def _invalid_yaml(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "broken.yaml"
    path.write_text("name: broken\nseeds: [1, 2\nstrategies: [scratch]\n")
    return path


# name -> (build the case in a folder and return the config path, fragments the message must contain)
Case = tuple[Callable[[Path], Path], list[str]]
CASES: dict[str, Case] = {
    "unknown-key-top-level": (lambda d: write_case(d, sedes=3), ["'sedes'", "top level"]),
    "unknown-key-nested": (lambda d: write_case(d, train=_train(lrr=0.1)), ["'lrr'", "'train'"]),
    "unknown-key-in-task": (
        lambda d: write_case(d, tasks={"a": {"data": {"npz": "a.npz"}, "rol": "target"}, "b": {"data": {"npz": "b.npz"}}}),
        ["'rol'", "'tasks.a'"],
    ),
    "wrong-type-seeds": (lambda d: write_case(d, seeds="many"), ["'seeds'", "integer", "'many'"]),
    "wrong-type-lr": (lambda d: write_case(d, train=_train(lr="abc")), ["'train.lr'", "number", "'abc'"]),
    "missing-data-file": (
        lambda d: write_case(d, tasks={"a": {"data": {"npz": "nowhere.npz"}}, "b": {"data": {"npz": "b.npz"}}}),
        ["nowhere.npz", "does not exist"],
    ),
    "npz-missing-key": (lambda d: write_case(d, a={"y_test": None}), ["a.npz", "y_test", "expected"]),
    "label-out-of-range": (
        lambda d: write_case(d, a={"y_train": np.arange(N_TRAIN) % 10, "y_test": np.full(N_TEST, 12)}),
        ["a.npz", "label 12 ", "y_test", "classes from y_train: 0, 1, 2"],
    ),
    "label-negative": (
        lambda d: write_case(d, a={"y_test": np.r_[np.arange(N_TEST - 1) % 3, -2]}),
        ["a.npz", "label -2 ", "y_test", "classes from y_train: 0, 1, 2"],
    ),
    "nan-in-features": (lambda d: write_case(d, a={"x_train": _nan_x()}), ["a.npz", "x_train", "NaN", "finite"]),
    "shape-mismatch-train-test": (
        lambda d: write_case(d, a={"x_test": np.zeros((N_TEST, N_FEATURES + 1), np.float32)}),
        ["a.npz", "x_test", "(6,)", "(5,)"],
    ),
    "xy-length-mismatch": (lambda d: write_case(d, a={"y_train": np.arange(N_TRAIN - 1) % 3}), ["a.npz", "x_train", "y_train", "60", "59"]),
    "fraction-zero": (lambda d: write_case(d, fractions=[0]), ["'fractions'", "(0, 1]", "0"]),
    "fraction-above-one": (lambda d: write_case(d, fractions=[0.5, 1.5]), ["'fractions'", "(0, 1]", "1.5"]),
    "fraction-negative": (lambda d: write_case(d, fractions=[-0.1]), ["'fractions'", "(0, 1]", "-0.1"]),
    "unknown-strategy": (lambda d: write_case(d, strategies=["scratch", "magic"]), ["'strategies'", "'magic'", "scratch", "mtl"]),
    "unknown-backbone": (lambda d: write_case(d, model={"backbone": "resnet"}), ["'model.backbone'", "'resnet'", "mlp", "cnn"]),
    "csv-target-column-missing": (
        lambda d: write_case(d, tasks=_csv_task(d, _csv_frame(), target="species")),
        ["a.csv", "'species'", "f1, f2, label"],
    ),
    "csv-non-numeric-feature": (
        lambda d: write_case(d, tasks=_csv_task(d, _csv_frame(non_numeric=True), target="label")),
        ["a.csv", "'f2'", "not numeric"],
    ),
    "invalid-yaml": (_invalid_yaml, ["broken.yaml", "not valid YAML", "line"]),
    "config-file-missing": (lambda d: d / "no-such-config.yaml", ["no-such-config.yaml", "does not exist"]),
    "cnn-backbone-on-tabular-data": (lambda d: write_case(d, model={"backbone": "cnn"}), ["'cnn'", "image", "(5,)"]),
    "different-input-shapes-share-backbone": (
        lambda d: write_case(d, b={"d": 7}),
        ["different input shapes", "'a' (5,)", "'b' (7,)", "share one backbone"],
    ),
}

# The subset that is also run through the CLI against a finished study folder.
CLI_CASES = [
    "unknown-key-top-level",
    "unknown-key-nested",
    "wrong-type-seeds",
    "wrong-type-lr",
    "missing-data-file",
    "npz-missing-key",
    "label-out-of-range",
    "nan-in-features",
    "shape-mismatch-train-test",
    "xy-length-mismatch",
    "fraction-zero",
    "fraction-above-one",
    "unknown-strategy",
    "unknown-backbone",
    "csv-non-numeric-feature",
    "invalid-yaml",
    "config-file-missing",
    "different-input-shapes-share-backbone",
]


def assert_one_line_naming(message: str, fragments: list[str]) -> None:
    assert "\n" not in message.strip(), f"message is not one line: {message!r}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# ---- Python API -----------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_api_raises_one_line_config_error(case: str, tmp_path: Path) -> None:
    build, fragments = CASES[case]
    config = build(tmp_path / "case")
    with pytest.raises(polytask.ConfigError) as info:
        Study(load_config(config)).run(out=tmp_path / "out", progress=False)
    assert_one_line_naming(str(info.value), fragments)
    assert not (tmp_path / "out").exists(), "a rejected study must not create its folder"


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        ({"trian": {"lr": 0.1}}, ["'trian'", "top level"]),
        ({"model": {"mlp": {"hiden": [8]}}}, ["'hiden'", "'model.mlp'"]),
        ({"seeds": 0}, ["'seeds'", "1"]),
        ({"tasks": {"a": {"role": "target"}, "b": {"role": "sideline"}}}, ["'tasks.b.role'", "'sideline'"]),
    ],
    ids=["unknown-top", "unknown-nested", "seeds-zero", "bad-role"],
)
def test_api_dict_config_errors_name_the_field(changes: dict, fragments: list[str]) -> None:
    cfg = {**valid_config(), **changes}
    with pytest.raises(ConfigError) as info:
        Study(cfg)
    assert_one_line_naming(str(info.value), ["config:", *fragments])


def test_api_in_memory_arrays_are_checked_and_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_TRAIN, N_FEATURES)).astype(np.float32)
    y = np.arange(N_TRAIN) % 3
    bad = TaskData(x, y, x[:N_TEST], np.full(N_TEST, 5))
    cfg = {**valid_config(), "tasks": {"a": {}, "b": {"role": "source"}}}
    with pytest.raises(ConfigError) as info:
        Study(cfg, data={"a": bad, "b": TaskData(x, y, x, y)}).run(out=tmp_path / "out", progress=False)
    assert_one_line_naming(str(info.value), ["arrays for task 'a'", "label 5 ", "y_test"])


def test_api_task_without_data_names_the_field() -> None:
    cfg = {**valid_config(), "tasks": {"a": {}, "b": {"data": {"npz": "b.npz"}}}}
    with pytest.raises(ConfigError) as info:
        Study(cfg).load()
    assert_one_line_naming(str(info.value), ["'tasks.a.data'", "missing"])


# ---- CLI ------------------------------------------------------------------------------


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """A tiny valid study run into a folder, and the bytes of every file it wrote."""
    root = tmp_path_factory.mktemp("finished")
    config = write_case(root / "valid")
    out = root / "study"
    result = CliRunner().invoke(app, ["compare", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    files = snapshot(out)
    assert files["results.jsonl"].count(b"\n") == 2  # 1 target x [scratch, mtl] x 1 fraction x 1 seed
    return out, files


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_bad_input_one_line_exit_2_and_keeps_finished_runs(case: str, tmp_path: Path, finished_study) -> None:
    out, before = finished_study
    build, fragments = CASES[case]
    config = build(tmp_path / "case")
    result = CliRunner().invoke(app, ["compare", str(config), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got {lines}"
    assert lines[0].startswith("error: ")
    assert_one_line_naming(lines[0], fragments)
    after = snapshot(out)
    assert after["results.jsonl"] == before["results.jsonl"]
    assert after == before, "a rejected config changed the finished study folder"


def test_api_bad_input_keeps_finished_runs(tmp_path: Path, finished_study) -> None:
    out, before = finished_study
    config = write_case(tmp_path / "case", a={"x_train": _nan_x()})
    with pytest.raises(ConfigError):
        Study.from_yaml(config).run(out=out, progress=False)
    assert (out / "results.jsonl").read_bytes() == before["results.jsonl"]
    assert snapshot(out) == before
