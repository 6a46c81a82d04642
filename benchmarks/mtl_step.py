"""Step time of multi-task training on tasks that share their inputs, as the engine runs it.

T tasks read the same rows (label columns of one file), so the engine runs one forward
pass per step over one batch. Measured in the same run, per task count T:

- ``ew`` against one single-task step on the same rows (the price of T heads and T
  losses on one shared forward; aim: at most 1.3x);
- every weighting method against ``ew``;
- every gradient method against the T backward passes it cannot avoid (one per task
  through the shared layers, then the sum, as a method that combines nothing would do):
  its ratio is what the method itself adds (aim: within 1.1x);
- the per-task gradients as one backward per task (what the engine does) against one
  vectorized backward (``is_grads_batched``);
- MGDA on the shared parameters against MGDA-UB on the shared representation.

Every step is the engine's own (:func:`polytask.training.engine.fit` for the whole-step ratios;
its helpers for the gradient paths), on the same model and batches.

Usage::

    .venv/bin/python benchmarks/mtl_step.py            # full table (about 4 minutes on 2 cores)
    .venv/bin/python benchmarks/mtl_step.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from polytask.config import TrainConfig
from polytask.core.targets import task_loss
from polytask.core.tasks import Task
from polytask.data.prepare import PreparedTask, Split
from polytask.methods.architectures import MultiTaskModel
from polytask.methods.backbones import create_backbone
from polytask.methods.weighting import create, weighting_names
from polytask.training.engine import fit
from polytask.training.steps import _backward, _rep_grad_step, _shared_params
from polytask.training.taskgrads import assign_gradient, task_gradients


def _setup(n_tasks: int, batch: int, features: int | tuple[int, ...], hidden: list[int], steps: int):
    """``n_tasks`` classification tasks on one input matrix of ``batch * steps`` rows: an MLP
    with ``hidden`` layers on ``features`` columns, or, when ``features`` is an image shape,
    the CNN with ``hidden`` channels (and 64 hidden units) of the MultiMNIST example."""
    torch.manual_seed(0)
    tasks = [Task(f"t{i}", "classification", 10, classes=tuple(range(10))) for i in range(n_tasks)]
    if isinstance(features, tuple):
        shape, backbone = features, create_backbone("cnn", features, channels=hidden, hidden=64)
    else:
        shape, backbone = (features,), create_backbone("mlp", (features,), hidden=hidden, dropout=0.0)
    model = MultiTaskModel(backbone, tasks)
    x = torch.randn(batch * steps, *shape)
    val = torch.randn(2, *shape)
    data = {
        t.name: PreparedTask(t, Split(x, torch.randint(0, 10, (len(x),))), Split(val, torch.randint(0, 10, (2,))), Split(val, torch.zeros(2, dtype=torch.long)))
        for t in tasks
    }
    return model, data


def _fit_time(n_tasks: int, method: str | None, sizes, steps: int) -> float:
    """Seconds of one :func:`fit` of one epoch of ``steps`` steps on a fresh model."""
    batch, features, hidden, _ = sizes
    train = TrainConfig(max_epochs=1, batch_size=batch, min_steps_per_epoch=steps, patience=1)
    model, data = _setup(n_tasks, batch, features, hidden, steps)
    weighting = create(method, n_tasks, seed=0) if method else None
    return fit(model, data, train, seed=0, select=list(data) if n_tasks > 1 else "t0", weighting=weighting).seconds


def _fit_step(n_tasks: int, method: str | None, sizes, repeats: int) -> float:
    """Median seconds per training step of :func:`fit`: the time an epoch of ``3 * steps``
    steps takes beyond one of ``steps``, per extra step, so what an epoch costs once (the
    optimizer's set-up, validation, keeping the best weights) is not spread over its steps."""
    steps = sizes[3]
    times = []
    for _ in range(repeats):
        long, short = _fit_time(n_tasks, method, sizes, 3 * steps), _fit_time(n_tasks, method, sizes, steps)
        # On tiny --quick sizes the difference can drown in timer noise: then the long epoch's mean.
        times.append((long - short) / (2 * steps) if long > short else long / (3 * steps))
    return statistics.median(times)


def _grad_step(model, data, method, steps: int, mode: str) -> float:
    """Median seconds of one step on the shared batch with per-task gradients of the shared
    layers: ``engine`` (the method through the engine's backward), ``sum`` (the same T
    backward passes, summed: the floor any gradient method pays), ``vectorized`` / ``loop``
    (how the T gradients are taken, for ``pcgrad``)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    shared = _shared_params(model, method)
    others = [p for p in model.parameters() if all(p is not q for q in shared)]
    x = next(iter(data.values())).train.x
    batch = x[: len(x) // steps]
    times = []
    for k in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        z = model.backbone(batch)
        losses = [task_loss(d.task, model.heads[n](z), d.train.y[: len(batch)]) for n, d in data.items()]
        if mode == "engine":
            _backward(losses, method, shared, others)
        else:
            grads = task_gradients(losses, shared, batched=mode == "vectorized")
            if mode in ("vectorized", "loop"):
                method.combine(grads, torch.stack(losses).detach())
            heads = torch.autograd.grad(torch.stack(losses).sum(), others, allow_unused=True)
            for p, g in zip(others, heads):
                p.grad = g
            assign_gradient(shared, grads.sum(0) if mode == "sum" else method.combine(grads, torch.stack(losses).detach())[0])
        opt.step()
        if k:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _rep_step(model, data, method, steps: int, rep_grad: bool) -> float:
    """Median seconds per step when every task reads one batch: MGDA on the shared
    parameters, or MGDA-UB on the representation (the engine's ``rep_grad`` path)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    shared = [] if rep_grad else _shared_params(model, method)
    others = [p for p in model.parameters() if all(p is not q for q in shared)]
    x = next(iter(data.values())).train.x
    idx = torch.arange(len(x) // steps)
    times = []
    for k in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if rep_grad:
            _rep_grad_step(model, x, data, idx, method)
        else:
            z = model.backbone(x[idx])
            _backward([task_loss(d.task, model.heads[n](z), d.train.y[idx]) for n, d in data.items()], method, shared, others)
        opt.step()
        if k:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = parser.parse_args()
    counts = [2, 3] if args.quick else [2, 10, 40]
    sizes = (8, 16, [32], 3) if args.quick else (64, 128, [256, 256], 20)
    repeats = 1 if args.quick else 3
    batch, features, hidden, steps = sizes
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; MLP {features}->{hidden}; T tasks on one batch of {batch} rows")
    _fit_step(2, "ew", sizes, 1)  # warm-up: allocator and thread pool, so the first baseline is not slow

    print(f"\nwhole engine step (fit): an epoch of {3 * steps} steps less one of {steps}, per step; median of {repeats}")
    print(f"{'':<14}" + "".join(f"{f'T={t} ms':>12}{'ratio':>7}" for t in counts))
    single = [_fit_step(1, None, sizes, repeats) for _ in counts]
    ew = [_fit_step(t, "ew", sizes, repeats) for t in counts]
    print(f"{'single task':<14}" + "".join(f"{s * 1e3:>12.2f}{1.0:>7.2f}" for s in single))
    print(f"{'ew / single':<14}" + "".join(f"{e * 1e3:>12.2f}{e / s:>7.2f}" for e, s in zip(ew, single)), flush=True)

    image = (16, (1, 12, 12), [4, 8], 3) if args.quick else (128, (1, 36, 36), [16, 32], 10)
    _fit_step(2, "ew", image, 1)  # warm-up of the convolutions
    single, ew = _fit_step(1, None, image, repeats), _fit_step(2, "ew", image, repeats)
    print(
        f"\nthe same on the MultiMNIST example's CNN ({'x'.join(map(str, image[1]))} inputs, channels {image[2]}, batch {image[0]}), "
        f"2 tasks: single task {single * 1e3:.2f} ms, ew {ew * 1e3:.2f} ms, ratio {ew / single:.2f}",
        flush=True,
    )

    print("\nevery method: ms per engine step and ratio to ew timed just before it (a shared VM drifts over minutes)")
    print(f"{'method':<14}" + "".join(f"{f'T={t} ms':>12}{'x ew':>7}" for t in counts))
    for name in ["ew", *[n for n in weighting_names() if n not in ("ew", "mgda-ub")]]:
        row = []
        for t in counts:
            base = _fit_step(t, "ew", sizes, repeats)
            sec = _fit_step(t, name, sizes, repeats)
            row.append((sec * 1e3, sec / base))
        print(f"{name:<14}" + "".join(f"{ms:>12.2f}{ratio:>7.2f}" for ms, ratio in row), flush=True)

    grad_methods = [n for n in weighting_names() if create(n, 2).requires_grads and not create(n, 2).representation_only]
    print("\ngradient methods against the T backward passes they need (one per task through the shared layers, summed)")
    print(f"{'method':<14}" + "".join(f"{f'T={t} ms':>12}{'x T-bw':>8}" for t in counts))
    for name in grad_methods:
        row = []
        for t in counts:
            model, data = _setup(t, batch, features, hidden, steps)
            floor = _grad_step(model, data, create(name, t, seed=0), steps, "sum")
            model, data = _setup(t, batch, features, hidden, steps)
            sec = _grad_step(model, data, create(name, t, seed=0), steps, "engine")
            row.append((sec * 1e3, sec / floor))
        print(f"{name:<14}" + "".join(f"{ms:>12.2f}{ratio:>8.2f}" for ms, ratio in row), flush=True)

    print("\nper-task gradients on one batch, for pcgrad: one backward per task vs one vectorized backward")
    for t in counts:
        model, data = _setup(t, batch, features, hidden, steps)
        loop = _grad_step(model, data, create("pcgrad", t, seed=0), steps, "loop")
        model, data = _setup(t, batch, features, hidden, steps)
        vectorized = _grad_step(model, data, create("pcgrad", t, seed=0), steps, "vectorized")
        print(f"T={t:<3} loop {loop * 1e3:8.2f} ms   vectorized {vectorized * 1e3:8.2f} ms   ratio vectorized/loop {vectorized / loop:5.2f}")

    print("\nall tasks on one batch: mgda on the shared parameters vs mgda-ub on the representation (rep_grad)")
    for t in counts:
        model, data = _setup(t, batch, features, hidden, steps)
        on_params = _rep_step(model, data, create("mgda", t), steps, rep_grad=False)
        model, data = _setup(t, batch, features, hidden, steps)
        on_rep = _rep_step(model, data, create("mgda-ub", t), steps, rep_grad=True)
        print(f"T={t:<3} parameters {on_params * 1e3:8.2f} ms   representation {on_rep * 1e3:8.2f} ms   ratio {on_rep / on_params:5.2f}")


if __name__ == "__main__":
    main()
