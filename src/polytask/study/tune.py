"""A tuned baseline for every strategy: the ``tune:`` search, run before the seeds.

A table that says "method A beats B" is only as fair as B's tuning. With ``tune:`` every
strategy gets the same number of trials of a seeded TPE search (Optuna) over a declared
space, each trial a run on the tuning seed (its own validation carve and training subset,
never evaluated), scored on validation only. The best values are stored in the study
folder, ``tuning/<strategy>/<fraction>.json``, reused on resume, and applied to every
seed of that strategy and fraction. Pretraining shared by transfer strategies keeps the
study's own settings: it is not tuned (it is paid once, and counted in the search's cost).
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path
from typing import Any

from polytask.config import TUNABLE_TRAIN, DomainAdaptConfig, MTLConfig, StudyConfig
from polytask.core.errors import ConfigError
from polytask.core.io import write_atomic

# Plain ``mtl`` weightings whose task weights ``task_weights`` may set.
STATIC_WEIGHTINGS = ("ew", "static")
# The A/A control takes scratch's values: it must be scratch in all but its random stream.
TUNED_AS = {"aa-control": "scratch"}


def _optuna():
    try:
        import optuna
    except ImportError as e:  # an optional extra
        raise ConfigError(f"tune: needs the optional dependency optuna ({e}): pip install 'polytask[tune]'") from None
    return optuna


def searched(config: StudyConfig, strategy: str) -> dict[str, list[float]]:
    """The part of ``tune.space`` that applies to ``strategy``."""
    base, _, arg = strategy.partition(":")
    method = arg or (config.mtl.weighting if base in ("mtl", "mtl-per-target") else "")
    out = {}
    for key, bounds in config.tune.space.items():
        if key in ("lr", "weight_decay"):
            out[key] = bounds
        elif key == "backbone_lr_ratio" and base == "fine-tune":
            out[key] = bounds
        elif key == "task_weights" and base in ("mtl", "mtl-per-target") and not arg and config.mtl.weighting in STATIC_WEIGHTINGS:
            out[key] = bounds
        elif "." in key and key.partition(".")[0] == method and base in ("mtl", "mtl-per-target", "domain-adapt"):
            out[key] = bounds
    return out


def tuned_strategies(config: StudyConfig) -> list[str]:
    """The strategies a search runs for (the A/A control borrows scratch's values)."""
    chosen = config.tune.strategies or config.strategies
    return [s for s in chosen if s not in TUNED_AS]


def apply(config: StudyConfig, strategy: str, params: dict[str, Any], n_tasks: int) -> StudyConfig:
    """``config`` with the values ``params`` chose for ``strategy`` (its other sections unchanged)."""
    base, _, arg = strategy.partition(":")
    train = {k: v for k, v in params.items() if k in TUNABLE_TRAIN}
    update: dict[str, Any] = {"train": config.train.model_copy(update=train)} if train else {}
    methods = {}
    for key, value in params.items():
        if "." in key and not key.startswith("task_weights."):
            method, _, hp = key.partition(".")
            methods.setdefault(method, {})[hp] = value
    weights = [params[f"task_weights.{i}"] for i in range(n_tasks)] if "task_weights.0" in params else None
    if base in ("mtl", "mtl-per-target") and (methods or weights):
        raw = _merged(config.mtl, methods)
        if weights is not None:
            raw["weighting"], raw["static"] = "static", {"weights": weights}
        update["mtl"] = MTLConfig.model_validate(raw)
    if base == "domain-adapt" and methods:
        update["domain_adapt"] = DomainAdaptConfig.model_validate(_merged(config.domain_adapt, methods))
    return config.model_copy(update=update)


def _merged(section, methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A config section as plain data, each method's hyperparameters updated by ``methods``."""
    raw = section.model_dump()
    for method, hps in methods.items():
        raw[method] = {**raw.get(method, {}), **hps}
    return raw


def tuning_path(out: Path, strategy: str, fraction: float) -> Path:
    """Where the search of ``strategy`` at ``fraction`` is kept."""
    return Path(out) / "tuning" / strategy / f"{fraction:g}.json"


def read_tuning(out: Path, strategy: str, fraction: float, fingerprint: str) -> dict[str, Any]:
    """The searches kept for ``strategy`` at ``fraction`` under this fingerprint, by model key."""
    path = tuning_path(out, TUNED_AS.get(strategy, strategy), fraction)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record.get("models", {}) if record.get("fingerprint") == fingerprint else {}


def _suggest(trial, space: dict[str, list[float]], n_tasks: int) -> dict[str, float]:
    params = {}
    for key, (low, high) in space.items():
        if key == "task_weights":
            for i in range(n_tasks):
                params[f"task_weights.{i}"] = trial.suggest_float(f"task_weights.{i}", low, high, log=True)
        else:
            params[key] = trial.suggest_float(key, low, high, log=key in TUNABLE_TRAIN)
    return params


def search(run_trial, space: dict[str, list[float]], trials: int, seed: int, n_tasks: int, progress=None) -> dict[str, Any]:
    """A seeded TPE search: ``run_trial(params) -> (score, seconds)``, higher is better.

    A trial whose run fails (``score`` None or not finite) is recorded as failed and the
    search goes on. Returns the record kept in the tuning file.
    """
    optuna = _optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    record: dict[str, Any] = {"trials": [], "seconds": 0.0}
    for i in range(trials):
        if progress is not None:
            progress(i)
        trial = study.ask()
        params = _suggest(trial, space, n_tasks)
        score, seconds = run_trial(params)
        record["seconds"] += seconds
        ok = score is not None and math.isfinite(score)
        record["trials"].append({"params": params, "score": score if ok else None, "seconds": seconds})
        if ok:
            study.tell(trial, score)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    done = [t for t in record["trials"] if t["score"] is not None]
    if not done:
        raise ConfigError("tune: every trial failed; check the search space (tune.space)")
    best = max(done, key=lambda t: t["score"])
    record.update(best=best["params"], best_score=best["score"])
    return record


def search_seed(tune_seed: int, strategy: str, fraction: float, key: str) -> int:
    """The sampler's seed: the tuning seed, decorrelated across searches by what they tune."""
    return (tune_seed * 1_000_003 + zlib.crc32(f"{strategy}/{fraction:g}/{key}".encode())) % 2**31


def save_tuning(out: Path, strategy: str, fraction: float, fingerprint: str, models: dict[str, Any]) -> None:
    """Write (atomically) the searches of ``strategy`` at ``fraction``, by model key."""
    record = {"fingerprint": fingerprint, "strategy": strategy, "fraction": fraction, "models": models}
    write_atomic(tuning_path(out, strategy, fraction), json.dumps(record, indent=2))


def load_tunings(out: Path, fingerprint: str) -> list[dict[str, Any]]:
    """Every search kept in a study folder under this fingerprint, one entry per model:
    ``{strategy, fraction, model, best, trials, seconds}`` (``seconds``: the trials'
    training plus the tuning seed's pretraining, once)."""
    entries = []
    for path in sorted(Path(out).glob("tuning/*/*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("fingerprint") != fingerprint:
            continue
        for key, m in record.get("models", {}).items():
            entries.append(
                {
                    "strategy": record["strategy"],
                    "fraction": record["fraction"],
                    "model": key,
                    "best": m["best"],
                    "trials": len(m["trials"]),
                    "failed_trials": sum(t["score"] is None for t in m["trials"]),
                    "seconds": float(m["seconds"]) + float(m.get("pretrain_seconds") or 0.0),
                }
            )
    return entries
