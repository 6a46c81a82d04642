"""The ``polytask`` command line: parse, validate, call the study and report functions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from polytask.errors import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Compare training from scratch, transfer learning and multi-task learning on your tasks.")
err = Console(stderr=True)


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
    workers: int = typer.Option(1, "--workers", min=1, help="Processes running runs in parallel."),
) -> None:
    """Run a study: every strategy on every target task, fraction and seed."""
    from polytask.config import load_config
    from polytask.report.terminal import print_summary
    from polytask.study import Study

    try:
        cfg = load_config(config)
        if seeds is not None:
            cfg = cfg.model_copy(update={"seeds": seeds})
        out = out or Path("runs") / cfg.name
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out '{out}' is a file; expected a study folder")
        summary = Study(cfg).run(out=out, workers=workers, progress=True)
    except ConfigError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        where = f"finished runs are saved in {out}/results.jsonl; " if out else ""
        _fail(f"interrupted; {where}run the same command to resume", code=130)
    print_summary(summary)
    typer.echo(f"report: {out / 'report.html'}")


@app.command()
def report(folder: Path = typer.Argument(..., help="Study folder written by 'polytask compare'.")) -> None:
    """Re-render summary.json and report.html from a finished or partial study folder."""
    from polytask.report.terminal import print_summary
    from polytask.study import finalize

    try:
        summary = finalize(folder)
    except ConfigError as e:
        _fail(str(e))
    print_summary(summary)
    typer.echo(f"report: {folder / 'report.html'}")


@app.command()
def datasets() -> None:
    """List the built-in datasets with their sizes."""
    from polytask.data import describe_builtins

    t = Table(title="built-in datasets (shipped in pip packages, nothing downloaded)")
    for col in ("name", "targets", "sample shape", "train", "test", "description"):
        t.add_column(col)
    for d in describe_builtins():
        t.add_row(d["name"], ", ".join(d["targets"]), "x".join(map(str, d["shape"])), str(d["train"]), str(d["test"]), d["description"])
    Console().print(t)


def run() -> None:
    """Console-script entry point."""
    sys.exit(app())
