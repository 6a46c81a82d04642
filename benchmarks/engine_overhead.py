"""Engine overhead: how much throughput :func:`polytask.training.engine.fit` loses to a bare loop.

Both sides train the same :class:`~polytask.methods.architectures.multitask.MultiTaskModel` (polytask's MLP
backbone and one linear head) on the same synthetic tensors, with the same batch size,
AdamW settings, number of epochs and steps, and the same per-epoch validation pass with a
copy of the best state and its restore at the end. The hand loop is what a person would
write without polytask; the difference between the two is what the engine's bookkeeping
costs (finite-loss check, per-step ``loss.item()``, summing task losses from ``0.0``,
history, callbacks, criterion).

The hand loop draws its batches and dropout masks from the same seeds in the same order as
the engine, so both runs compute the same numbers; the script checks this once during
warm-up, which guards against timing two loops that do different work.

Runs are interleaved (engine, hand, hand, engine, ...) so that slow drift of the machine
(thermal, other processes) hits both sides alike; the medians are compared.

Usage::

    .venv/bin/python benchmarks/engine_overhead.py            # full run, about a minute on 2 cores
    .venv/bin/python benchmarks/engine_overhead.py --quick    # smoke run, a few seconds
    .venv/bin/python benchmarks/engine_overhead.py --profile  # also cProfile one engine run
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import platform
import pstats
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from polytask.config import TrainConfig
from polytask.core.tasks import Task
from polytask.data.prepare import PreparedTask, Split
from polytask.methods.architectures.multitask import MultiTaskModel
from polytask.methods.backbones.mlp import MLP
from polytask.training.engine import EVAL_BATCH, fit

TASK = "bench"


@dataclass(frozen=True)
class Setup:
    """Sizes of one benchmark; ``n_train`` is a multiple of ``batch_size`` so that
    every step sees a full batch and samples/s is exact for both loops."""

    n_train: int
    n_val: int
    n_features: int
    n_classes: int
    hidden: tuple[int, ...]
    dropout: float
    batch_size: int
    epochs: int
    warmup: int
    repeats: int
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.n_train / self.batch_size)

    @property
    def samples(self) -> int:
        """Training samples one run processes (validation passes not counted)."""
        return self.epochs * self.steps_per_epoch * self.batch_size


# A step of FULL costs a few ms on 2 CPU cores: large enough that the measurement is about
# the loop, not timer noise, and small enough that per-step Python overhead still shows.
# Seven repeats: single runs on a small shared VM vary by 10% or more, and the median of
# seven is steadier than of five for little extra time (the whole run is under a minute).
FULL = Setup(n_train=20_480, n_val=4_096, n_features=256, n_classes=10, hidden=(512, 512), dropout=0.1, batch_size=128, epochs=3, warmup=1, repeats=7)
QUICK = Setup(n_train=1_024, n_val=256, n_features=16, n_classes=4, hidden=(32,), dropout=0.1, batch_size=64, epochs=2, warmup=1, repeats=2)


def make_data(s: Setup) -> PreparedTask:
    """Synthetic classification task: labels from a fixed random linear map plus noise.

    Learnable (so the validation loss moves and the best-state copy happens on some
    epochs, as in real use) and fully determined by ``s.seed``.
    """
    g = torch.Generator().manual_seed(s.seed)
    n = s.n_train + 2 * s.n_val
    x = torch.randn(n, s.n_features, generator=g)
    w = torch.randn(s.n_features, s.n_classes, generator=g)
    y = (x @ w + 2.0 * torch.randn(n, s.n_classes, generator=g)).argmax(1)
    a, b = s.n_train, s.n_train + s.n_val
    task = Task(TASK, "classification", s.n_classes)
    return PreparedTask(task, Split(x[:a], y[:a]), Split(x[a:b], y[a:b]), Split(x[b:], y[b:]))


def make_model(s: Setup, data: PreparedTask) -> MultiTaskModel:
    """Fresh model with the same initialization for every run."""
    torch.manual_seed(s.seed + 1)
    return MultiTaskModel(MLP(s.n_features, list(s.hidden), s.dropout), [data.task])


def train_config(s: Setup) -> TrainConfig:
    """Engine settings for ``s``: no early stop, exactly one pass over the data per epoch."""
    return TrainConfig(max_epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, weight_decay=s.weight_decay, patience=s.epochs + 1, min_steps_per_epoch=1)


def run_engine(s: Setup, model: MultiTaskModel, data: PreparedTask) -> None:
    """One training run through polytask's engine."""
    fit(model, {TASK: data}, train_config(s), seed=s.seed)


def run_hand(s: Setup, model: MultiTaskModel, data: PreparedTask) -> None:
    """The same training as :func:`run_engine`, written as a bare PyTorch loop.

    Seeds and generator use match the engine's (global seed for dropout, a separate
    generator reshuffling once per pass), so both produce the same weights; everything
    else is the minimum: no finite check, no per-step ``.item()``, no history.
    """
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=s.lr, weight_decay=s.weight_decay)
    x, y = data.train.x, data.train.y
    xv, yv = data.val.x, data.val.y
    best_loss, best_state = math.inf, None
    for _ in range(s.epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(s.batch_size):
            loss = F.cross_entropy(model(x[idx], TASK), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        # Same validation pass as the engine: chunked forward, accuracy and loss, best-state copy.
        model.eval()
        with torch.no_grad():
            out = torch.cat([model(c, TASK) for c in xv.split(EVAL_BATCH)])
        _acc = (out.argmax(1) == yv).float().mean().item()
        val_loss = F.cross_entropy(out, yv).item()
        if val_loss < best_loss:
            best_loss = val_loss
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)


RUNNERS = {"engine": run_engine, "hand": run_hand}


def timed(name: str, s: Setup, data: PreparedTask) -> float:
    """Seconds of one run of ``name``; model construction is outside the timer."""
    model = make_model(s, data)
    t0 = time.perf_counter()
    RUNNERS[name](s, model, data)
    return time.perf_counter() - t0


def same_result(s: Setup, data: PreparedTask) -> float:
    """Largest absolute difference between the final weights of the two loops.

    Zero (or float noise) shows that the hand loop repeats the engine's work exactly.
    """
    states = []
    for name in RUNNERS:
        model = make_model(s, data)
        RUNNERS[name](s, model, data)
        states.append(model.state_dict())
    return max((states[0][k].float() - states[1][k].float()).abs().max().item() for k in states[0])


def profile_engine(s: Setup, data: PreparedTask, top: int = 25) -> str:
    """cProfile of one engine run, sorted by own time: where the Python side spends it."""
    model = make_model(s, data)
    prof = cProfile.Profile()
    prof.enable()
    run_engine(s, model, data)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, warm up, measure interleaved runs and print the ratio."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    p.add_argument("--repeats", type=int, help="measured runs per loop (default 7, quick 2)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice; 1 with --quick)")
    p.add_argument("--profile", action="store_true", help="print a cProfile of one engine run")
    args = p.parse_args(argv)

    s = QUICK if args.quick else FULL
    if args.repeats:
        s = Setup(**{**s.__dict__, "repeats": args.repeats})
    # The smoke run goes single-threaded: it runs beside other test workers, and intra-op
    # threads competing with them for the cores slow a tiny model down by 10x or more.
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    data = make_data(s)
    load_before = os.getloadavg()[0]

    print(f"torch {torch.__version__}, python {platform.python_version()}, {torch.get_num_threads()} threads")
    print(
        f"MLP {s.n_features}->{'->'.join(map(str, s.hidden))}->{s.n_classes}, {s.n_train} train / {s.n_val} val rows, "
        f"batch {s.batch_size}, {s.epochs} epochs x {s.steps_per_epoch} steps, AdamW lr {s.lr} wd {s.weight_decay}"
    )

    # Warm-up: first-call costs (allocator, kernels, imports inside torch) fall here, and the
    # equivalence check doubles as the first warm-up run of both loops.
    diff = same_result(s, data)
    print(f"same weights after training: max |engine - hand| = {diff:.3g}")
    if diff > 1e-4:
        # Not fatal: the step counts and sizes still match, but the engine's seeding or batching
        # changed and run_hand no longer follows it, so it should be brought back in line.
        print("warning: the two loops trained to different weights; run_hand no longer mirrors fit()")
    for _ in range(s.warmup - 1):
        for name in RUNNERS:
            timed(name, s, data)

    times: dict[str, list[float]] = {name: [] for name in RUNNERS}
    for r in range(s.repeats):
        # Alternate which loop goes first so that any drift within a pair cancels out.
        order = ["engine", "hand"] if r % 2 == 0 else ["hand", "engine"]
        for name in order:
            times[name].append(timed(name, s, data))
        print(f"repeat {r + 1}: engine {times['engine'][-1]:.3f} s, hand {times['hand'][-1]:.3f} s")

    rate = {name: s.samples / statistics.median(t) for name, t in times.items()}
    for name in RUNNERS:
        print(f"{name:<6} median {statistics.median(times[name]):.3f} s  {rate[name]:,.0f} samples/s")
    ratio = rate["engine"] / rate["hand"]
    print(f"ratio (engine / hand samples/s): {ratio:.3f}  (target >= 0.95)")
    # Cross-checks that other load on the machine distorts less than the ratio of medians:
    # the median over adjacent pairs, and the fastest run of each (closest to the loop's own cost).
    paired = statistics.median(h / e for e, h in zip(times["engine"], times["hand"]))
    fastest = min(times["hand"]) / min(times["engine"])
    print(f"cross-checks: median of paired ratios {paired:.3f}, fastest-run ratio {fastest:.3f}")
    # This process alone keeps about `threads` cores busy; a load average a core or more above
    # that means other processes competed for the cores, which on a small machine can slow a
    # run several-fold and make the comparison meaningless.
    load_after = os.getloadavg()[0]
    print(f"load average (1 min) {load_before:.2f} before, {load_after:.2f} after")
    if max(load_before, load_after) > torch.get_num_threads() + 1:
        print("warning: other processes were busy during the run; rerun on a quiet machine")

    if args.profile:
        print(profile_engine(s, data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
