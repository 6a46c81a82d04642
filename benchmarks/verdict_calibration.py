"""How often are polytask's verdicts right, wrong, or honestly inconclusive?

Many synthetic task families (``polytask.data.make_task_family``: related ones, where the
sources teach the target what it needs, and unrelated ones, where they compete for the
shared layers), each with a fresh seed, not a hand-picked one. Every family runs once as a
study of ``--seeds-total`` seeds with scratch, feature extraction, fine-tuning, mtl and the
A/A control, tested on a target test set of ``STUDY_ROWS + TRUTH_ROWS`` rows. From it:

- **verdicts**: studies at the default number of seeds (5), on the first ``STUDY_ROWS``
  test rows, analysed by :func:`polytask.insights.analysis.summarize` exactly as a study is
  (margins, test-row resampling, Holm correction over the study's cells);
- **the truth** of every cell: its mean difference to scratch over ``TRUTH_SEEDS`` other
  seeds, on ``TRUTH_ROWS`` other test rows, with a 95% interval;
- **the A/A control**: scratch against scratch with its own initialization and batch
  order, whose true difference is 0 by construction; every disjoint group of 5 seeds is
  one A/A study.

A verdict is right when the truth says so (``better``: the truth's interval is above 0;
``worse``: below 0; ``equivalent``: inside the margin), wrong when the truth says the
opposite (``better`` or ``worse`` where the truth's interval lies on the other side of 0 or
contains it for an A/A cell; ``equivalent`` where it lies outside the margin), and
``inconclusive`` is neither. The script prints right / inconclusive / wrong by the size of
the true effect relative to the margin, and the A/A false-alarm rate with its binomial
(Clopper-Pearson) 95% interval.

Usage::

    .venv/bin/python benchmarks/verdict_calibration.py                 # 24 families, under an hour on 2 cores
    .venv/bin/python benchmarks/verdict_calibration.py --families 8 --study-rows 3000   # larger test sets
    .venv/bin/python benchmarks/verdict_calibration.py --families 8 --margin 0.03        # a wider margin
    .venv/bin/python benchmarks/verdict_calibration.py --quick         # smoke run
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from scipy import stats

from polytask import Study
from polytask.core.metrics import get_metric
from polytask.data import TaskData, make_task_family
from polytask.insights.analysis import summarize
from polytask.insights.comparison import Scores, compare
from polytask.study.store import ResultStore, load_predictions

STUDY_SEEDS = 5  # the default number of seeds
STRATEGIES = ["scratch", "feature-extraction", "fine-tune", "mtl", "aa-control"]
FULL = {"families": 24, "truth_seeds": 30, "verdict_groups": 4, "study_rows": 300, "truth_rows": 4000, "fractions": [0.1, 0.3, 1.0]}
QUICK = {"families": 1, "truth_seeds": 3, "verdict_groups": 1, "study_rows": 60, "truth_rows": 200, "fractions": [1.0]}
BINS = [0.0, 0.5, 1.0, 2.0, 4.0, math.inf]


# Target sizes the families cycle through: the more target labels, the smaller the effect of
# the sources, so the true effects span from many margins down to about one.
TARGET_ROWS = (150, 400, 1200)


def _family(index: int, settings: dict) -> tuple[dict[str, TaskData], bool]:
    """Family ``index``: related when even, a fresh seed each; the target's test rows hold
    the study's rows first, then the truth's."""
    related = index % 2 == 0
    n_test = settings["study_rows"] + settings["truth_rows"]
    n_target = TARGET_ROWS[(index // 2) % len(TARGET_ROWS)]
    fam = make_task_family(n_tasks=4, related=related, n_target=n_target, n_source=1000, n_test=n_test, n_features=20, seed=7919 * (index + 1))
    return fam, related


def _config(family: dict[str, TaskData], seeds: int, fractions: list[float], quick: bool, margin: float | None = None) -> dict:
    target = {"margin": margin} if margin else {}
    return {
        "name": "calibration",
        "seeds": seeds,
        "fractions": fractions,
        "tasks": {n: {"role": "target", **target} if n == "target" else {"role": "source"} for n in family},
        "model": {"backbone": "mlp", "mlp": {"hidden": [32, 16], "dropout": 0.0}},
        "strategies": STRATEGIES,
        "train": {"max_epochs": 3 if quick else 40, "batch_size": 64, "lr": 0.003, "patience": 2 if quick else 8, "min_steps_per_epoch": 5},
    }


def _view(rows: list[dict], out: Path, seeds: set[int], lo: int, hi: int) -> tuple[list[dict], dict]:
    """Rows of ``seeds`` re-scored on test rows ``lo:hi``, and their predictions by run id."""
    kept, preds = [], {}
    for r in rows:
        if r["status"] != "ok" or r["seed"] not in seeds:
            continue
        truth, pred = load_predictions(out, r)
        truth, pred = truth[lo:hi], pred[lo:hi]
        preds[r["run_id"]] = (truth, pred)
        kept.append({**r, "test": get_metric(r["metric"]).score(truth, pred)})
    return kept, preds


def _judge(verdict: str, lo: float, hi: float, margin: float) -> str:
    """``right``, ``wrong`` or ``none`` (inconclusive, or a truth too close to call)."""
    if verdict == "inconclusive":
        return "none"
    if verdict == "better":
        return "right" if lo > 0 else "wrong" if hi <= 0 else "none"
    if verdict == "worse":
        return "right" if hi < 0 else "wrong" if lo >= 0 else "none"
    if -margin < lo and hi < margin:
        return "right"
    return "wrong" if hi < -margin or lo > margin else "none"


def run_family(index: int, settings: dict, workdir: Path, workers: int, quick: bool) -> list[dict]:
    """One family: its study, then every cell's verdicts and truth."""
    family, related = _family(index, settings)
    groups, truth_seeds = settings["verdict_groups"], settings["truth_seeds"]
    seeds = truth_seeds + groups * STUDY_SEEDS
    cfg = _config(family, seeds, settings["fractions"], quick, settings.get("margin"))
    out = workdir / f"family{index}"
    Study(cfg, data=family).run(out=out, workers=workers, progress=False)
    config = Study(cfg, data=family).config
    rows = ResultStore(out / "results.jsonl").rows()
    n_study, n_all = settings["study_rows"], settings["study_rows"] + settings["truth_rows"]
    metric = get_metric("accuracy")

    truth_rows, truth_preds = _view(rows, out, set(range(truth_seeds)), n_study, n_all)
    by = defaultdict(dict)
    for r in truth_rows:
        by[(r["strategy"], r["fraction"])][r["seed"]] = r
    records = []
    # Verdict studies: disjoint groups of the default number of seeds on the study's rows.
    # The A/A control also counts every group of the truth's seeds (its truth is 0 by construction).
    group_seeds = [set(range(truth_seeds + g * STUDY_SEEDS, truth_seeds + (g + 1) * STUDY_SEEDS)) for g in range(groups)]
    aa_groups = group_seeds + [set(range(g * STUDY_SEEDS, (g + 1) * STUDY_SEEDS)) for g in range(truth_seeds // STUDY_SEEDS)]
    for g, seeds_g in enumerate(aa_groups):
        study_rows, study_preds = _view(rows, out, seeds_g, 0, n_study)
        summary = summarize(study_rows, config, lookup=lambda r, p=study_preds: p.get(r["run_id"]))
        for cell in summary["cells"]:
            if cell["strategy"] == "scratch" or (g >= groups and cell["strategy"] != "aa-control"):
                continue
            key = (cell["strategy"], cell["fraction"])
            if cell["strategy"] == "aa-control":
                lo = hi = delta = 0.0
            else:
                a = Scores(metric, {s: r["test"] for s, r in by[key].items()}, {s: truth_preds[r["run_id"]] for s, r in by[key].items()})
                b_rows = by[("scratch", cell["fraction"])]
                b = Scores(metric, {s: r["test"] for s, r in b_rows.items()}, {s: truth_preds[r["run_id"]] for s, r in b_rows.items()})
                c = compare(a, b, cell["margin"])
                delta = c.diff.mean
                lo, hi = c.ci(0.95) or (delta, delta)
            records.append(
                {
                    "family": index,
                    "related": related,
                    "strategy": cell["strategy"],
                    "fraction": cell["fraction"],
                    "verdict": cell["verdict"],
                    "margin": cell["margin"],
                    "true_delta": delta,
                    "judged": _judge(cell["verdict"], lo, hi, cell["margin"]),
                }
            )
    return records


def _clopper_pearson(k: int, n: int) -> tuple[float, float]:
    lo = 0.0 if k == 0 else float(stats.beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(0.975, k + 1, n - k))
    return lo, hi


def report(records: list[dict], seconds: float, settings: dict) -> None:
    aa = [r for r in records if r["strategy"] == "aa-control"]
    real = [r for r in records if r["strategy"] != "aa-control"]
    print(f"\n{settings['families']} families, {len(real)} verdicts on real comparisons, {len(aa)} A/A studies, {seconds / 60:.1f} min")
    truth = f"{settings['truth_seeds']} other seeds, {settings['truth_rows']} other rows"
    margin = f"margin {settings['margin']:g}" if settings.get("margin") else "the default margin"
    print(f"verdict studies: {STUDY_SEEDS} seeds, {settings['study_rows']} test rows, {margin}; truth: {truth}")
    print(f"\n{'|true effect| / margin':<24}{'cells':>7}{'right':>9}{'inconcl.':>10}{'wrong':>8}")
    for lo, hi in zip(BINS, BINS[1:]):
        here = [r for r in real if lo <= abs(r["true_delta"]) / r["margin"] < hi]
        if not here:
            continue
        share = {j: sum(r["judged"] == j for r in here) / len(here) for j in ("right", "none", "wrong")}
        label = f"[{lo:g}, {hi:g})" if math.isfinite(hi) else f">= {lo:g}"
        print(f"{label:<24}{len(here):>7}{share['right']:>9.0%}{share['none']:>10.0%}{share['wrong']:>8.0%}")
    wrong = [r for r in real if r["judged"] == "wrong"]
    print(f"\nwrong verdicts: {len(wrong)} of {len(real)}")
    for r in wrong:
        kind = "related" if r["related"] else "unrelated"
        print(f"  family {r['family']} ({kind}) {r['strategy']} @ {r['fraction']:g}: {r['verdict']}, true effect {r['true_delta']:+.4f}")
    verdicts = defaultdict(int)
    for r in real:
        verdicts[r["verdict"]] += 1
    print("verdicts given: " + ", ".join(f"{v} {n}" for v, n in sorted(verdicts.items())))
    alarms = sum(r["verdict"] in ("better", "worse") for r in aa)
    lo, hi = _clopper_pearson(alarms, len(aa)) if aa else (math.nan, math.nan)
    equivalent = sum(r["verdict"] == "equivalent" for r in aa)
    rate = f"{alarms / max(len(aa), 1):.1%}, 95% CI [{lo:.1%}, {hi:.1%}]"
    print(
        f"\nA/A control: {alarms} of {len(aa)} studies called better or worse ({rate}); equivalent {equivalent}, inconclusive {len(aa) - alarms - equivalent}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tiny family, for a smoke test")
    parser.add_argument("--families", type=int, help=f"number of families (default {FULL['families']})")
    parser.add_argument("--study-rows", type=int, help=f"test rows of the verdict studies (default {FULL['study_rows']})")
    parser.add_argument("--margin", type=float, help="the target's margin (default: the metric's, 0.01 for accuracy)")
    parser.add_argument("--workers", type=int, default=2, help="processes per study (default 2)")
    args = parser.parse_args()
    settings = dict(QUICK if args.quick else FULL)
    if args.families:
        settings["families"] = args.families
    if args.study_rows:
        settings["study_rows"] = args.study_rows
    if args.margin:
        settings["margin"] = args.margin
    start = time.perf_counter()
    records = []
    with tempfile.TemporaryDirectory(prefix="polytask-calibration-") as tmp:
        for i in range(settings["families"]):
            t0 = time.perf_counter()
            records += run_family(i, settings, Path(tmp), args.workers, args.quick)
            print(f"family {i} ({'related' if i % 2 == 0 else 'unrelated'}): {time.perf_counter() - t0:.0f} s", flush=True)
    report(records, time.perf_counter() - start, settings)


if __name__ == "__main__":
    main()
