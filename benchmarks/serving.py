"""Serving two tasks: one multi-task model against one model per task, in PyTorch and ONNX
Runtime, measured in the same run.

MultiMNIST (two overlapping digits: tasks ``left`` and ``right`` on the same image), the
example's CNN: ``mtl`` trains one model with a head per task, ``scratch`` a model per task.
Each model is served as exported (preprocessing and probabilities included;
:mod:`polytask.lifecycle.serving`): latency answering both tasks for one image (batch 1)
and throughput in batches of 256. One thread, as one serving worker. Training quality does
not change these figures, so the models train one short epoch.

Usage::

    .venv/bin/python benchmarks/serving.py            # about 1 minute
    .venv/bin/python benchmarks/serving.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from polytask.lifecycle.predictor import load
from polytask.lifecycle.serving import ServingFigures, figures, onnx_server, torch_server
from polytask.lifecycle.train import train_model
from polytask.study.runner import Study

EXAMPLE = Path(__file__).parents[1] / "examples" / "multi-mnist.yaml"


def show(name: str, f: ServingFigures) -> None:
    print(f"  {name:<34} latency {f.latency_ms:7.3f} ms (p90 {f.p90_ms:7.3f})   throughput {f.rows_per_s:9.0f} rows/s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg.update(seeds=1, fractions=[1.0], strategies=["scratch", "mtl"], train={**cfg["train"], "max_epochs": 1})
    calls = 30 if args.quick else 300
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        study = Study(cfg)
        train_model(study, root / "mtl", strategy="mtl")
        for task in ("left", "right"):
            train_model(study, root / task, task=task, strategy="scratch")
        raw, _ = study.load()
        x = raw["left"].x_test[:256]
        inputs = {"left": x, "right": x}
        shared, separate = [load(root / "mtl")], [load(root / "left"), load(root / "right")]
        results = {}
        for engine, server in (("pytorch", torch_server), ("onnxruntime", onnx_server)):
            for name, models in (("one mtl model, 2 heads", shared), ("a scratch model per task (2)", separate)):
                serve = server(models, inputs) if engine == "pytorch" else server(models, inputs, root)
                results[engine, name] = figures(serve, calls=calls, batches=5 if args.quick else 30)
    params = {name: sum(sum(t.numel() for t in m.model.state_dict().values()) for m in models) for name, models in (("shared", shared), ("separate", separate))}
    print(f"MultiMNIST test images {tuple(x.shape[1:])}, CNN {cfg['model']['cnn']}; torch {torch.__version__}, 1 thread")
    print(f"parameters: one mtl model {params['shared']:,}; a model per task {params['separate']:,} ({params['separate'] / params['shared']:.2f}x)")
    for engine in ("pytorch", "onnxruntime"):
        print(engine)
        one, two = results[engine, "one mtl model, 2 heads"], results[engine, "a scratch model per task (2)"]
        show("one mtl model, 2 heads", one)
        show("a scratch model per task (2)", two)
        print(f"  per-task models / mtl model: latency {two.latency_ms / one.latency_ms:.2f}x, throughput {two.rows_per_s / one.rows_per_s:.2f}x")
    torch_one = results["pytorch", "one mtl model, 2 heads"]
    ort_one = results["onnxruntime", "one mtl model, 2 heads"]
    latency, throughput = ort_one.latency_ms / torch_one.latency_ms, ort_one.rows_per_s / torch_one.rows_per_s
    print(f"onnxruntime / pytorch (mtl model): latency {latency:.2f}x, throughput {throughput:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
