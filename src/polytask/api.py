"""The study users run: the grid of runs (:class:`polytask.study.runner.Study`), then its
analysis and report (:func:`polytask.finalize.finalize`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polytask.finalize import finalize, measure_serving
from polytask.study import runner


class Study(runner.Study):
    __doc__ = runner.Study.__doc__

    def run(
        self, out: str | Path | None = None, workers: int = 1, progress: bool = True, executor: str = "local", address: str | None = None
    ) -> dict[str, Any]:
        """Run every pending cell of the grid, then write ``summary.json`` and ``report.html``.

        Args:
            out: study folder (default ``runs/<name>``); finished runs found there are kept.
            workers: processes running jobs in parallel (1: in this process); local executor only.
            progress: show progress bars on stderr.
            executor: ``local`` (this machine) or ``ray`` (each job a Ray task, on this
                machine or a cluster; needs ``pip install 'polytask[ray]'``).
            address: with ``ray``, ``HOST:PORT`` of the cluster's head; None: ``RAY_ADDRESS``,
                else a Ray instance started on this machine for the study.

        Returns:
            The summary (see :func:`polytask.insights.analysis.summarize`).
        """
        folder = self.run_grid(out, workers, progress, executor=executor, address=address)
        measure_serving(self, folder)
        summary = finalize(folder)
        self.trackers.finish(folder)  # the summary and the report, to the study's parent run
        return summary
