"""What a study would do, and about how long it would take, before it runs (``--dry-run``).

The plan is the study's own: the jobs not yet finished in the study folder (resume), the
in-study pretrainings they need, and the tuning searches (``tune:``). The time comes from
a short timed probe: one epoch of every strategy at every fraction (seed 0, with its
pretraining), run in a temporary folder so that the study folder is not touched. A run
then costs between ``min(patience + 1, max_epochs)`` epochs (the earliest early stop) and
``max_epochs`` epochs.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polytask.config import SSLSourceConfig
from polytask.strategies import ssl_source
from polytask.study.plan import Job
from polytask.study.runner import Study
from polytask.study.store import ResultStore


@dataclass
class Probe:
    """One epoch of one job, timed."""

    train_seconds: float
    pretrain_seconds: float


def _probe(study: Study, jobs: list[Job], workdir: Path) -> dict[tuple[str, float], Probe]:
    """One epoch of the first job of every (strategy, fraction), in ``workdir``."""
    cfg = study.config
    # One epoch of every training, a self-supervised source's pretraining included.
    sources = {a: s.model_copy(update={"max_epochs": 1}) if isinstance(s, SSLSourceConfig) else s for a, s in cfg.sources.items()}
    one_epoch = cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_epochs": 1, "patience": 1}), "sources": sources})
    probe = Study(one_epoch, data=study.data_override or None, backbone=study.backbone)
    # The study's settings as they are: a probe times an epoch, it does not run a tune: search.
    if jobs:  # untimed: a process's first steps pay for allocator and thread-pool warm-up
        probe.execute_job(workdir / "warm-up", Job(jobs[0].strategy, jobs[0].fraction, 0, jobs[0].tasks), config=one_epoch)
    out: dict[tuple[str, float], Probe] = {}
    for job in jobs:
        key = (job.strategy, job.fraction)
        if key in out:
            continue
        rows = probe.execute_job(workdir, Job(job.strategy, job.fraction, 0, job.tasks), callbacks=(), config=one_epoch)
        ok = [r for r in rows if r.get("status") == "ok"]
        row = ok[0] if ok else {}
        out[key] = Probe(float(row.get("train_seconds", 0.0)), float(row.get("pretrain_seconds") or 0.0))
    return out


def dry_run(study: Study, out: str | Path, workers: int = 1) -> dict[str, Any]:
    """The plan of ``study`` in folder ``out`` (nothing there is written) with a time estimate.

    Returns:
        ``{"planned", "done", "pending": [{strategy, fraction, jobs, runs, epoch_seconds,
        seconds: [low, high]}], "pretrainings", "pretrain_seconds": [low, high], "searches",
        "trials", "tune_seconds": [low, high], "total_seconds": [low, high], "wall_seconds":
        [low, high], "probe_seconds", "workers"}`` (``wall_seconds``: training spread over
        the workers; searches run before it, in the driver).
    """
    out = Path(out)
    cfg = study.config
    study.load()
    store = ResultStore(out / "results.jsonl")
    pending = study.pending_jobs(store)
    planned = study.planned_jobs()
    cells = sum(len(j.tasks) for j in planned)
    left = sum(len(j.tasks) for j in pending)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="polytask-probe-") as tmp:
        probes = _probe(study, pending, Path(tmp))
    probe_seconds = time.perf_counter() - started
    low_epochs, high_epochs = min(cfg.train.patience + 1, cfg.train.max_epochs), cfg.train.max_epochs

    rows = []
    for strategy in cfg.strategies:
        for fraction in cfg.fractions:
            jobs = [j for j in pending if j.strategy == strategy and j.fraction == fraction]
            if not jobs:
                continue
            epoch = probes[(strategy, fraction)].train_seconds
            rows.append(
                {
                    "strategy": strategy,
                    "fraction": fraction,
                    "jobs": len(jobs),
                    "runs": sum(len(j.tasks) for j in jobs),
                    "epoch_seconds": epoch,
                    "seconds": [len(jobs) * epoch * low_epochs, len(jobs) * epoch * high_epochs],
                }
            )
    searches = study.searches_needed(out, pending)
    trials = cfg.tune.trials if cfg.tune is not None else 0
    tune = [sum(trials * probes[(strategy, fraction)].train_seconds * e for strategy, fraction, _ in searches) for e in (low_epochs, high_epochs)]
    needs = study.pretrainings_needed(out, pending)
    # A pretraining probe epoch was measured with the run that first needed it: in-study
    # pretraining's with the strategies that use it, each self-supervised source's with its own.
    pre_epoch = max((p.pretrain_seconds for (s, _), p in probes.items() if ssl_source(cfg, s) is None), default=0.0)
    pretrain = [len(needs) * pre_epoch * low_epochs, len(needs) * pre_epoch * high_epochs]
    ssl_needs = study.ssl_pretrainings_needed(out, pending)
    for alias, _, _ in ssl_needs:
        epoch = max((p.pretrain_seconds for (s, _), p in probes.items() if ssl_source(cfg, s) == alias), default=0.0)
        most = cfg.sources[alias].max_epochs or cfg.train.max_epochs
        pretrain = [pretrain[0] + epoch * min(cfg.train.patience + 1, most), pretrain[1] + epoch * most]
    total = [sum(r["seconds"][i] for r in rows) + pretrain[i] + tune[i] for i in (0, 1)]
    return {
        "study": cfg.name,
        "out": str(out),
        "planned": cells,
        "done": cells - left,
        "pending": rows,
        "pretrainings": len(needs) + len(ssl_needs),
        "pretrain_seconds": pretrain,
        "searches": len(searches),
        "trials": trials,
        "tune_seconds": tune,
        "total_seconds": total,
        "wall_seconds": [(t - tune[i]) / max(1, min(workers, max(1, len(pending)))) + tune[i] for i, t in enumerate(total)],
        "epochs": [low_epochs, high_epochs],
        "probe_seconds": probe_seconds,
        "workers": workers,
    }
