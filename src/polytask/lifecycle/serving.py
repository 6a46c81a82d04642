"""What serving a set of tasks costs: latency of one input (batch 1) and throughput (batch
256) of one multi-task model against a model per task, in PyTorch and ONNX Runtime.

Every model is served as exported (:class:`~polytask.lifecycle.export.ExportedModel`: the
preprocessing a graph holds, then probabilities or values), so PyTorch and ONNX Runtime run
the same computation. Serving the tasks with separate models means one call per model for
each input; one shared model answers every task of an input in one call (tasks on the same
inputs share one backbone pass).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from polytask.lifecycle.export import ExportedModel, export_onnx, input_groups
from polytask.lifecycle.predictor import SavedModel

LATENCY_CALLS, THROUGHPUT_BATCH = 200, 256


@dataclass(frozen=True)
class ServingFigures:
    """Measured serving cost of a set of models answering every task for an input.

    Attributes:
        latency_ms: median wall time to answer one input (batch 1), over every model.
        p90_ms: its 90th percentile.
        rows_per_s: inputs answered per second in batches of :data:`THROUGHPUT_BATCH`.
    """

    latency_ms: float
    p90_ms: float
    rows_per_s: float


def time_calls(call: Callable[[], object], calls: int, warmup: int = 10) -> list[float]:
    """Seconds each of ``calls`` calls took, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def figures(serve: Callable[[int], object], calls: int = LATENCY_CALLS, batches: int = 20) -> ServingFigures:
    """Latency of ``serve(1)`` and throughput of ``serve(THROUGHPUT_BATCH)``; ``serve(n)``
    answers every task for ``n`` inputs."""
    single = time_calls(lambda: serve(1), calls)
    many = time_calls(lambda: serve(THROUGHPUT_BATCH), batches, warmup=3)
    q = statistics.quantiles(single, n=10)
    return ServingFigures(1000 * statistics.median(single), 1000 * q[-1], THROUGHPUT_BATCH / statistics.median(many))


def torch_server(models: list[SavedModel], inputs: dict[str, np.ndarray]) -> Callable[[int], object]:
    """``serve(n)``: each model (as exported) on the first ``n`` inputs of its tasks, in PyTorch."""
    parts = []
    for m in models:
        tasks = [t for t in m.tasks if t in inputs]
        groups = input_groups(m, tasks)
        module = ExportedModel(m, tasks, groups).eval()
        xs = [torch.as_tensor(inputs[first], dtype=torch.float32) for first in groups]
        parts.append((module, xs))

    @torch.no_grad()
    def serve(n: int) -> object:
        return [module(*(x[:n] for x in xs)) for module, xs in parts]

    return serve


def onnx_server(models: list[SavedModel], inputs: dict[str, np.ndarray], folder: Path) -> Callable[[int], object]:
    """``serve(n)`` as :func:`torch_server`, each model exported to ``folder`` and run by ONNX
    Runtime (one thread per session, as PyTorch is measured)."""
    import onnxruntime as ort

    parts = []
    for i, m in enumerate(models):
        tasks = [t for t in m.tasks if t in inputs]
        record = export_onnx(m.path, folder / f"model{i}.onnx", tasks)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(folder / f"model{i}.onnx"), options)
        feeds = {name: inputs[name.removeprefix("x_")].astype(np.float32) for name in record["inputs"]}
        parts.append((session, feeds))

    def serve(n: int) -> object:
        return [session.run(None, {k: v[:n] for k, v in feeds.items()}) for session, feeds in parts]

    return serve
