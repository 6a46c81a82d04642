"""Progress display for a study: a bar over runs and, in-process, a bar over epochs."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class StudyProgress:
    """Rich progress bars on stderr; a no-op when ``enabled`` is false.

    Also an engine callback: ``on_epoch_end`` advances the epoch bar of the current run.
    """

    def __init__(self, total: int, enabled: bool = True):
        self.enabled = enabled and total > 0
        self.failed = 0
        if self.enabled:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._runs = self._progress.add_task("runs", total=total, status="")
            self._epochs = self._progress.add_task("  epochs", total=1, status="", visible=False)

    def __enter__(self) -> StudyProgress:
        if self.enabled:
            self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self._progress.stop()

    def start_run(self, run_id: str) -> None:
        if self.enabled:
            self._progress.update(self._runs, status=run_id)
            self._progress.reset(self._epochs, visible=True)

    def on_epoch_end(self, epoch: int, max_epochs: int, record: dict[str, float]) -> None:
        if self.enabled:
            vals = " ".join(f"{k[4:]}={v:.4g}" for k, v in record.items() if k.startswith("val_"))
            self._progress.update(self._epochs, completed=epoch, total=max_epochs, status=f"loss={record['train_loss']:.4g} {vals}")

    def finish_run(self, row: dict[str, Any]) -> None:
        self.failed += row.get("status") != "ok"
        if self.enabled:
            note = f"{row['run_id']}: {row['test']:.4g}" if row.get("status") == "ok" else f"{row['run_id']}: FAILED"
            self._progress.update(self._runs, advance=1, status=note + (f" ({self.failed} failed)" if self.failed else ""))
