"""Step time of every weighting method relative to equal weighting (``ew``).

One training step as the engine takes it (a batch per task, forward, the method's
backward, AdamW step) on the same model and the same batches, for 2, 10 and 40 tasks.
Gradient methods get their per-task gradients as the engine takes them
(:func:`polytask.taskgrads.task_gradients`: one backward per task, each over its own
batch); the script also times the vectorized alternative
(``is_grads_batched=True``), so the choice is measured in the same run.

Usage::

    .venv/bin/python benchmarks/mtl_step.py            # full table (a few minutes on 2 cores)
    .venv/bin/python benchmarks/mtl_step.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from polytask.config import ModelConfig
from polytask.data.prepare import PreparedTask, Split
from polytask.engine import _backward, _rep_grad_step, _shared_params
from polytask.models import MultiTaskModel, create_backbone
from polytask.taskgrads import task_gradients
from polytask.tasks import Task
from polytask.weighting import create, weighting_names


def _setup(n_tasks: int, batch: int, features: int, hidden: list[int]):
    torch.manual_seed(0)
    tasks = [Task(f"t{i}", "classification", 10) for i in range(n_tasks)]
    model = MultiTaskModel(create_backbone("mlp", (features,), ModelConfig(mlp={"hidden": hidden, "dropout": 0.0})), tasks)
    xs = [torch.randn(batch, features) for _ in tasks]
    ys = [torch.randint(0, 10, (batch,)) for _ in tasks]
    return model, tasks, xs, ys


def _time_steps(model, tasks, xs, ys, method, steps: int, vectorized: bool = False) -> float:
    """Median seconds per step over ``steps`` steps (after one warm-up step)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    shared = _shared_params(model, method)
    others = [p for p in model.parameters() if all(p is not q for q in shared)]
    times = []
    for k in range(steps + 1):
        t0 = time.perf_counter()
        losses = [t.loss(model(x, t.name), y) for t, x, y in zip(tasks, xs, ys)]
        opt.zero_grad(set_to_none=True)
        if vectorized:
            grads = task_gradients(losses, shared, batched=True)
            method.combine(grads, torch.stack(losses).detach())
            torch.autograd.grad(torch.stack(losses).sum(), others, allow_unused=True)
        else:
            _backward(losses, method, shared, others, epoch=1)
        opt.step()
        if k:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _time_shared_batch(model, tasks, x, ys, method, steps: int, rep_grad: bool) -> float:
    """Median seconds per step when every task reads one batch ``x``.

    ``rep_grad``: the engine's representation path (gradients w.r.t. the backbone's
    output, one backward through the backbone); otherwise per-task gradients of the
    shared parameters on that same batch.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    shared = [] if rep_grad else _shared_params(model, method)
    others = [p for p in model.parameters() if all(p is not q for q in shared)]
    empty = Split(x[:0], ys[0][:0])
    data = {t.name: PreparedTask(t, Split(x, y), empty, empty) for t, y in zip(tasks, ys)}
    idx = torch.arange(len(x))
    times = []
    for k in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if rep_grad:
            _rep_grad_step(model, x, data, idx, method, epoch=1)
        else:
            _backward([t.loss(model(x, t.name), y) for t, y in zip(tasks, ys)], method, shared, others, epoch=1)
        opt.step()
        if k:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = parser.parse_args()
    sizes = [2, 3] if args.quick else [2, 10, 40]
    steps = 2 if args.quick else 20
    batch, features, hidden = (8, 16, [32]) if args.quick else (64, 128, [256, 256])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; MLP {features}->{hidden}, batch {batch} per task, median of {steps} steps")
    print(f"{'method':<14}" + "".join(f"{f'T={t} ms':>12}{'x ew':>7}" for t in sizes))
    # One untimed pass per size first: the first steps in a process pay for allocator and
    # thread-pool warm-up, which would make the baseline (measured first) look slow.
    for t in sizes:
        model, tasks, xs, ys = _setup(t, batch, features, hidden)
        _time_steps(model, tasks, xs, ys, create("ew", t, seed=0), steps)
    for name in ["ew", *[n for n in weighting_names() if n != "ew"]]:
        row = []
        for t in sizes:
            # ew is timed again right before each method, so a ratio compares two
            # measurements a second apart: a shared VM's speed drifts over minutes.
            model, tasks, xs, ys = _setup(t, batch, features, hidden)
            base = _time_steps(model, tasks, xs, ys, create("ew", t, seed=0), steps)
            model, tasks, xs, ys = _setup(t, batch, features, hidden)
            sec = _time_steps(model, tasks, xs, ys, create(name, t, seed=0), steps)
            row.append((sec * 1e3, sec / base))
        print(f"{name:<14}" + "".join(f"{ms:>12.2f}{ratio:>7.2f}" for ms, ratio in row), flush=True)
    grad_methods = [n for n in weighting_names() if create(n, 2).requires_grads]
    if grad_methods:
        probe = "pcgrad" if "pcgrad" in grad_methods else grad_methods[0]
        print(f"\nper-task gradients for {probe}: one backward per task (engine) vs one vectorized backward")
        for t in sizes:
            model, tasks, xs, ys = _setup(t, batch, features, hidden)
            per_task = _time_steps(model, tasks, xs, ys, create(probe, t), steps)
            vectorized = _time_steps(model, tasks, xs, ys, create(probe, t), steps, vectorized=True)
            ratio = vectorized / per_task
            print(f"T={t:<3} per-task {per_task * 1e3:8.2f} ms   vectorized {vectorized * 1e3:8.2f} ms   ratio vectorized/per-task {ratio:5.2f}")
    if "mgda-ub" in grad_methods:
        print("\nall tasks on one shared batch: mgda on the shared parameters vs mgda-ub on the representation (rep_grad)")
        for t in sizes:
            model, tasks, xs, ys = _setup(t, batch, features, hidden)
            on_params = _time_shared_batch(model, tasks, xs[0], ys, create("mgda", t), steps, rep_grad=False)
            on_rep = _time_shared_batch(model, tasks, xs[0], ys, create("mgda-ub", t), steps, rep_grad=True)
            print(f"T={t:<3} parameters {on_params * 1e3:8.2f} ms   representation {on_rep * 1e3:8.2f} ms   ratio {on_rep / on_params:5.2f}")


if __name__ == "__main__":
    main()
