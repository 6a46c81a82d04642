"""Feature cache: what computing a frozen backbone's features once saves over running it every step.

polytask's ``feature-extraction`` strategy runs the frozen pretrained backbone once per run
over the training and validation rows, then trains the new head on those cached features
through the engine. The alternative is to train the same head through the frozen backbone,
which then runs forward on every training batch and every validation pass. Both sides here
train one linear head on EfficientNet-Lite0's ImageNet features of the same scikit-learn
digits (8x8, upsampled inside the backbone), with the same engine, seed, batch size, AdamW
settings and number of epochs (no early stop). The frozen side keeps the backbone in eval
mode (BatchNorm statistics fixed) and under ``no_grad``, so both heads learn the same
function of the same features: the script prints both validation accuracies and the
largest difference between the two trained heads' weights.

Timed: cached = features of the training and validation rows plus the head's training;
frozen = the head's training through the backbone. Test accuracy is computed afterwards,
untimed (the strategy also caches the test rows' features: one more pass, at most a few
percent of its time here). Model construction is not timed; a warm-up forward comes first.

Usage::

    .venv/bin/python benchmarks/feature_cache.py            # full run, one to two minutes on 2 cores
    .venv/bin/python benchmarks/feature_cache.py --quick    # smoke run, a few seconds
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from polytask.config import TrainConfig
from polytask.core.tasks import Task
from polytask.data.prepare import PreparedTask, Split
from polytask.methods.architectures.multitask import FeatureBackbone, MultiTaskModel
from polytask.methods.backbones import create_backbone
from polytask.training.engine import EVAL_BATCH, evaluate, fit, seed_everything

TASK = "digits"
MODEL = "efficientnet-lite0"


@dataclass(frozen=True)
class Setup:
    """Sizes of one benchmark run (rows are the first ones of scikit-learn's digits)."""

    n_train: int
    n_val: int
    n_test: int
    resize: int
    epochs: int
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0


# 10 epochs of 500 + 100 rows through the backbone at 64 px take about a minute on 2 cores;
# the cached side costs one such pass. 64 px is the default model.imagenet.resize.
FULL = Setup(n_train=500, n_val=100, n_test=100, resize=64, epochs=10)
QUICK = Setup(n_train=48, n_val=16, n_test=16, resize=32, epochs=2, batch_size=16)


class FrozenBackbone(nn.Module):
    """A backbone that stays in eval mode and builds no graph, whatever the engine asks.

    ``fit`` puts the model in training mode every epoch, which would switch the backbone's
    BatchNorm layers to batch statistics (and update their running means); a frozen feature
    extractor must compute the same features as the cache, so it ignores ``train()``.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.out_features = net.out_features

    def train(self, mode: bool = True) -> FrozenBackbone:
        self.training = mode
        self.net.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net(x)


def make_data(s: Setup) -> PreparedTask:
    """Digits scaled to [0, 1] as ``[N, 1, 8, 8]``; train, validation and test are disjoint rows."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target, dtype=torch.long)
    a, b, c = s.n_train, s.n_train + s.n_val, s.n_train + s.n_val + s.n_test
    return PreparedTask(Task(TASK, "classification", 10), Split(x[:a], y[:a]), Split(x[a:b], y[a:b]), Split(x[b:c], y[b:c]))


def train_config(s: Setup) -> TrainConfig:
    """Exactly ``s.epochs`` passes over the training rows (patience above the epoch count)."""
    return TrainConfig(max_epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, patience=s.epochs + 1, min_steps_per_epoch=1)


@torch.no_grad()
def features(backbone: nn.Module, split: Split) -> Split:
    """The split with its inputs replaced by the backbone's features (as the strategy caches them)."""
    return Split(torch.cat([backbone(x) for x in split.x.split(EVAL_BATCH)]), split.y)


def run_cached(s: Setup, backbone: nn.Module, data: PreparedTask) -> tuple[MultiTaskModel, PreparedTask, float]:
    """Features once, then the head on them; returns the model, its data and the seconds."""
    t0 = time.perf_counter()
    cached = PreparedTask(data.task, features(backbone, data.train), features(backbone, data.val), data.test)
    seed_everything(s.seed)
    model = MultiTaskModel(FeatureBackbone(backbone.out_features), [data.task])
    fit(model, {TASK: cached}, train_config(s), s.seed, select=TASK)
    seconds = time.perf_counter() - t0
    return model, PreparedTask(data.task, cached.train, cached.val, features(backbone, data.test)), seconds


def run_frozen(s: Setup, backbone: nn.Module, data: PreparedTask) -> tuple[MultiTaskModel, PreparedTask, float]:
    """The head trained through the frozen backbone; returns the model, its data and the seconds."""
    frozen = FrozenBackbone(backbone)
    t0 = time.perf_counter()
    seed_everything(s.seed)
    model = MultiTaskModel(frozen, [data.task])
    fit(model, {TASK: data}, train_config(s), s.seed, select=TASK)
    return model, data, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, time both ways of training the head, print seconds, ratio and accuracies."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice; 1 with --quick)")
    args = p.parse_args(argv)

    s = QUICK if args.quick else FULL
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    data = make_data(s)
    backbone = create_backbone(MODEL, (1, 8, 8), pretrained=True, resize=s.resize).eval().requires_grad_(False)
    load_before = os.getloadavg()[0]

    print(f"torch {torch.__version__}, python {platform.python_version()}, {torch.get_num_threads()} threads")
    print(
        f"{MODEL} (ImageNet weights, frozen, 8x8 digits upsampled to {s.resize}px) -> linear head to 10 classes; "
        f"{s.n_train} train / {s.n_val} val / {s.n_test} test rows, batch {s.batch_size}, {s.epochs} epochs, AdamW lr {s.lr}, seed {s.seed}"
    )
    # Warm-up: one epoch of each side on two batches, so first-call costs (kernels, allocator,
    # the engine's imports) fall outside the timed runs.
    few = Setup(n_train=2 * s.batch_size, n_val=s.batch_size, n_test=s.batch_size, resize=s.resize, epochs=1, batch_size=s.batch_size)
    run_cached(few, backbone, make_data(few))
    run_frozen(few, backbone, make_data(few))

    head_cached, cached_data, t_cached = run_cached(s, backbone, data)
    print(f"cached features: {t_cached:8.2f} s  (backbone forward once over {s.n_train + s.n_val} rows, then the head)")
    head_frozen, _, t_frozen = run_frozen(s, backbone, data)
    rows = s.epochs * (s.n_train + s.n_val)
    print(f"frozen backbone: {t_frozen:8.2f} s  (backbone forward every step: {rows} rows over {s.epochs} epochs)")
    print(f"speed ratio (frozen / cached seconds): {t_frozen / t_cached:.1f}x  (target >= 10x at 10 epochs)")

    # Same features, same seed, same batches: the two heads should be the same function, up
    # to float noise from running the backbone on batches of different sizes.
    acc = {}
    for name, model, d in (("cached", head_cached, cached_data), ("frozen", head_frozen, data)):
        acc[name] = (evaluate(model, d, d.val)[0], evaluate(model, d, d.test)[0])
    w_c, w_f = head_cached.heads[TASK].state_dict(), head_frozen.heads[TASK].state_dict()
    diff = max((w_c[k] - w_f[k]).abs().max().item() for k in w_c)
    val, test = (f"cached {acc['cached'][i]:.3f}, frozen {acc['frozen'][i]:.3f}" for i in (0, 1))
    print(f"val accuracy: {val}; test accuracy: {test}")
    print(f"max |head weights cached - frozen| = {diff:.2g}")
    if abs(acc["cached"][0] - acc["frozen"][0]) > 2 / s.n_val or diff > 1e-2:
        print("warning: the two heads differ by more than float noise; the frozen side no longer computes the cached features")

    load_after = os.getloadavg()[0]
    print(f"load average (1 min) {load_before:.2f} before, {load_after:.2f} after")
    if max(load_before, load_after) > torch.get_num_threads() + 1:
        print("warning: other processes were busy during the run; rerun on a quiet machine")
    return 0 if np.isfinite(t_frozen / t_cached) else 1


if __name__ == "__main__":
    sys.exit(main())
