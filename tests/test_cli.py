"""The ``polytask`` command line: version, datasets, compare, report, overrides."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import polytask
from polytask.cli import app

ALL_STRATEGIES = ["scratch", "feature-extraction", "fine-tune", "mtl"]
ROW_KEYS = {"task", "strategy", "fraction", "seed", "metric", "test", "val", "train_seconds", "trainable_params", "status", "error"}
CELL_KEYS = {"mean", "std", "ci95", "n", "delta_vs_scratch", "p_value", "verdict"}

runner = CliRunner()


def write_npz(path: Path, n: int, m: int = 40, d: int = 5, classes: int = 3, seed: int = 0) -> Path:
    """A small learnable tabular task (labels from a fixed random projection of the features)."""
    rng = np.random.default_rng(seed)
    readout = np.random.default_rng(123).normal(size=(d, classes))
    x = rng.normal(size=(n + m, d)).astype(np.float32)
    y = np.argmax(x @ readout, axis=1).astype(np.int64)
    np.savez(path, x_train=x[:n], y_train=y[:n], x_test=x[n:], y_test=y[n:])
    return path


def write_study(folder: Path, **changes) -> Path:
    """Target ``a`` (60 rows) and source ``b`` (200 rows) as NPZ, and a fast config over them."""
    folder.mkdir(parents=True, exist_ok=True)
    write_npz(folder / "a.npz", n=60, seed=0)
    write_npz(folder / "b.npz", n=200, seed=1)
    cfg = {
        "name": "smoke",
        "seeds": 2,
        "fractions": [0.5, 1.0],
        "tasks": {"a": {"data": {"npz": "a.npz"}}, "b": {"data": {"npz": "b.npz"}, "role": "source"}},
        "model": {"backbone": "mlp", "mlp": {"hidden": [16]}},
        "strategies": ALL_STRATEGIES,
        "train": {"max_epochs": 2, "batch_size": 32, "patience": 1, "min_steps_per_epoch": 1},
        **changes,
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]


def one_error_line(result) -> str:
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got {lines}"
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """The full grid (4 strategies x 2 fractions x 2 seeds on one target) run once through the CLI."""
    root = tmp_path_factory.mktemp("smoke")
    out = root / "study"
    result = runner.invoke(app, ["compare", str(write_study(root / "input")), "--out", str(out)])
    return out, result


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"polytask {polytask.__version__}"


def test_datasets_lists_the_builtins() -> None:
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output
    for name in ("digits", "mnist", "multi-mnist"):
        assert name in result.output


def test_compare_smoke(smoke_study) -> None:
    out, result = smoke_study
    assert result.exit_code == 0, result.output
    assert f"report: {out / 'report.html'}" in result.output

    got = rows(out)
    assert len(got) == 1 * 4 * 2 * 2  # targets x strategies x fractions x seeds
    for row in got:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["status"] == "ok" and row["error"] is None, row
        assert row["task"] == "a" and row["metric"] == "accuracy_score"
        assert 0 <= row["test"] <= 1 and row["trainable_params"] > 0
    grid = {(s, f, k) for s in ALL_STRATEGIES for f in (0.5, 1.0) for k in (0, 1)}
    assert {(r["strategy"], r["fraction"], r["seed"]) for r in got} == grid

    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["cells"]) == 4 * 2
    for cell in summary["cells"]:
        assert CELL_KEYS <= set(cell), CELL_KEYS - set(cell)
        assert cell["n"] == 2
    assert summary["recommendations"]
    assert summary["runs"] == {"ok": 16, "failed": 0, "planned": 16}

    html = (out / "report.html").read_text()
    assert "<img" in html and "data:image/png;base64" in html


def test_compare_twice_resumes_without_rerunning(smoke_study, tmp_path: Path) -> None:
    out, result = smoke_study
    assert result.exit_code == 0, result.output
    copy = tmp_path / "study"
    shutil.copytree(out, copy)
    before = (copy / "results.jsonl").read_bytes()
    again = runner.invoke(app, ["compare", str(copy / "config.yaml"), "--out", str(copy)])
    assert again.exit_code == 0, again.output
    assert (copy / "results.jsonl").read_bytes() == before  # every run was already done


def test_report_rewrites_summary_and_html(smoke_study, tmp_path: Path) -> None:
    out, result = smoke_study
    assert result.exit_code == 0, result.output
    copy = tmp_path / "study"
    shutil.copytree(out, copy)
    original_summary = json.loads((copy / "summary.json").read_text())
    (copy / "report.html").unlink()
    (copy / "summary.json").unlink()

    again = runner.invoke(app, ["report", str(copy)])
    assert again.exit_code == 0, again.output
    html = (copy / "report.html").read_text()
    assert "<img" in html and "data:image/png;base64" in html
    assert json.loads((copy / "summary.json").read_text())["cells"] == original_summary["cells"]


def test_report_on_a_folder_that_is_not_a_study(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a study")
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    line = one_error_line(result)
    assert str(tmp_path) in line and "config.yaml" in line and "results.jsonl" in line
    assert not (tmp_path / "report.html").exists()


def test_seeds_override(tmp_path: Path) -> None:
    config = write_study(tmp_path / "input", fractions=[1.0], strategies=["scratch", "mtl"])
    out = tmp_path / "study"
    result = runner.invoke(app, ["compare", str(config), "--out", str(out), "--seeds", "1"])
    assert result.exit_code == 0, result.output
    got = rows(out)
    assert len(got) == 2  # 1 target x 2 strategies x 1 fraction x 1 seed (config says 2)
    assert {r["seed"] for r in got} == {0}
    assert yaml.safe_load((out / "config.yaml").read_text())["seeds"] == 1


def test_seeds_override_is_validated_like_the_config(tmp_path: Path) -> None:
    # --seeds 10 makes tune.seed 5 one of the study's seeds: refused before anything runs.
    config = write_study(tmp_path / "input", fractions=[1.0], strategies=["scratch"], tune={"trials": 2, "seed": 5, "space": {"lr": [1e-3, 1e-2]}})
    out = tmp_path / "study"
    result = runner.invoke(app, ["compare", str(config), "--out", str(out), "--seeds", "10"])
    assert result.exit_code == 2 and "tune.seed" in one_error_line(result) and "--seeds" in one_error_line(result)
    assert not out.exists()


def test_out_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    config = write_study(tmp_path / "input")
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    result = runner.invoke(app, ["compare", str(config), "--out", str(target)])
    assert result.exit_code == 2
    assert str(target) in one_error_line(result)
    assert target.read_text() == "keep me"


def test_error_line_shows_brackets_literally(tmp_path: Path) -> None:
    # Messages are printed with rich; a path or value with [brackets] must not be read as markup.
    folder = tmp_path / "[bold]data"
    config = write_study(tmp_path / "input", tasks={"a": {"data": {"npz": str(folder / "a.npz")}}, "b": {"data": {"npz": "b.npz"}}})
    result = runner.invoke(app, ["compare", str(config), "--out", str(tmp_path / "study")])
    assert result.exit_code == 2
    assert str(folder / "a.npz") in one_error_line(result)


def test_console_script_exit_code_and_single_line(tmp_path: Path) -> None:
    # The installed entry point, in a real process: exit status 2, one stderr line, no traceback.
    exe = Path(sys.executable).with_name("polytask")
    if not exe.exists():
        pytest.skip("polytask console script not installed next to this interpreter")
    config = write_study(tmp_path / "input", train={"lrr": 0.1})
    proc = subprocess.run([str(exe), "compare", str(config), "--out", str(tmp_path / "study")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {config}: unknown key 'lrr' in 'train'"]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_dry_run_shows_the_plan_and_an_estimate_and_writes_nothing(tmp_path):
    config = write_study(tmp_path / "p")
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare", str(config), "--out", str(out), "--dry-run", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert not out.exists()
    text = " ".join(result.output.split())
    assert "16 of 16 runs to do" in text and "pretraining" in text and "estimated compute" in text and "Nothing was written" in text
    # After part of the study ran, the plan counts only what is left.
    assert runner.invoke(app, ["compare", str(config), "--out", str(out), "--seeds", "1"]).exit_code == 0
    before = sorted(p.name for p in out.rglob("*"))
    result = runner.invoke(app, ["compare", str(config), "--out", str(out), "--dry-run"])
    assert result.exit_code == 0 and "8 of 16 runs to do" in " ".join(result.output.split())
    assert sorted(p.name for p in out.rglob("*")) == before
