"""What serving a set of tasks costs: latency of one input (batch 1) and throughput (batch
256) of one multi-task model against a model per task, in PyTorch and ONNX Runtime.

A study measures the same for each of its strategies (:func:`study_serving`): the models it
would serve, built as its runs build them, answering every target for an input.

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
from torch import nn

from polytask.lifecycle.export import ExportedModel, export_onnx, input_groups
from polytask.lifecycle.predictor import SavedModel
from polytask.methods.architectures.base import build_multitask_model
from polytask.methods.architectures.multitask import FeatureBackbone, MultiTaskModel
from polytask.strategies import is_joint, transfer_source, uses_transfer_source
from polytask.study.inputs import input_groups as shared_inputs
from polytask.study.runner import Study

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


def time_calls(call: Callable[[], object], calls: int, warmup: int = 10, max_seconds: float | None = None) -> list[float]:
    """Seconds each of ``calls`` calls took, after ``warmup`` untimed ones; with
    ``max_seconds``, fewer once that much time is spent (at least 3)."""
    for _ in range(warmup):
        call()
    out: list[float] = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
        if max_seconds is not None and len(out) >= 3 and sum(out) > max_seconds:
            break
    return out


def figures(
    serve: Callable[[int], object], calls: int = LATENCY_CALLS, batches: int = 20, batch: int = THROUGHPUT_BATCH, max_seconds: float | None = None
) -> ServingFigures:
    """Latency of ``serve(1)`` and throughput of ``serve(batch)``; ``serve(n)`` answers every
    task for ``n`` inputs. ``max_seconds`` bounds each of the two measurements (a large
    backbone then takes fewer calls)."""
    single = time_calls(lambda: serve(1), calls, warmup=min(10, calls), max_seconds=max_seconds)
    many = time_calls(lambda: serve(batch), batches, warmup=1 if max_seconds else 3, max_seconds=max_seconds)
    q = statistics.quantiles(single, n=10) if len(single) > 1 else single
    return ServingFigures(1000 * statistics.median(single), 1000 * q[-1], batch / statistics.median(many))


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


def served_models(study: Study, strategy: str) -> list[tuple[nn.Module, list[str]]]:
    """The models a strategy serves every target with, as its runs build them (weights as
    initialized: the time a forward pass takes does not depend on their values), each with
    the targets it answers: one shared model for a joint strategy, else one per target."""
    cfg = study.config
    _, tasks = study.load()
    targets = list(cfg.targets)
    if is_joint(strategy):
        shape = study.input_shape(targets[0])
        arch = cfg.model
        model = build_multitask_model(arch.architecture, lambda: study.new_backbone(shape), shape, [tasks[t] for t in targets], **arch.architecture_options())
        return [(model, targets)]
    name = transfer_source(cfg, strategy) if uses_transfer_source(strategy) else None
    out = []
    for t in targets:
        backbone = study.new_backbone(study.input_shape(t), name=name)
        if strategy.partition(":")[0] == "feature-extraction":
            n = backbone.out_features
            backbone = FeatureBackbone(n, torch.zeros(n), torch.ones(n), inner=backbone)
        out.append((MultiTaskModel(backbone, [tasks[t]]), [t]))
    return out


def module_server(parts: list[tuple[nn.Module, list[str]]], inputs: dict[str, torch.Tensor], groups: dict[str, str]) -> Callable[[int], object]:
    """``serve(n)``: every model answers its tasks for the first ``n`` inputs; tasks on the
    same inputs (``groups``: task -> key) share one backbone pass in a model whose heads all
    read one representation."""
    plan = []
    for model, tasks in parts:
        model.eval()
        by_input: dict[str, list[str]] = {}
        for t in tasks:
            by_input.setdefault(groups.get(t, t), []).append(t)
        plan.append((model, [(inputs[ts[0]], ts) for ts in by_input.values()]))

    @torch.no_grad()
    def serve(n: int) -> object:
        out = []
        for model, feeds in plan:
            for x, ts in feeds:
                if getattr(model, "shares_representation", False):
                    h = model.backbone(x[:n])
                    out += [model.heads[t](h) for t in ts]
                else:
                    out += [model(x[:n], t) for t in ts]
        return out

    return serve


def study_serving(study: Study, calls: int = 100, batches: int = 5, max_seconds: float = 3.0) -> dict[str, dict[str, float]]:
    """Per strategy of ``study``, the measured cost of serving every target (:func:`figures`,
    in PyTorch on the CPU, one thread, as ``benchmarks/serving.py`` measures): the models of
    :func:`served_models` on model inputs of the targets' test rows (the preprocessing
    before the model is not timed). Each measurement stops after ``max_seconds`` (at least
    3 calls), so a large backbone costs a study seconds, not minutes."""
    raw, _ = study.load()
    groups = shared_inputs(raw)
    inputs = {}
    for t in study.config.targets:
        x = study.prepare(t, 0, 1.0).test.x
        inputs[t] = x[torch.arange(min(len(x), THROUGHPUT_BATCH))]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for strategy in study.config.strategies:
            batch = min(len(x) for x in inputs.values())
            f = figures(module_server(served_models(study, strategy), inputs, groups), calls=calls, batches=batches, batch=batch, max_seconds=max_seconds)
            out[strategy] = {"serve_latency_ms": f.latency_ms, "serve_p90_ms": f.p90_ms, "serve_rows_per_s": f.rows_per_s}
        return out
    finally:
        torch.set_num_threads(threads)
