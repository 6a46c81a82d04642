"""GPU check: the same work on an accelerator and on the CPU, compared.

1. **Engine on the device**: samples per second of :func:`polytask.training.engine.fit`
   against a bare PyTorch loop doing the same training on the same device
   (``benchmarks/engine_overhead.py``'s setup and hand loop), and the ratio.
2. **An MTL gradient method** (PCGrad on three related synthetic tasks): trained twice on
   the device (same seed: same numbers?) and once on the CPU; the test metrics compared.
3. **The demo study** (``examples/mnist-to-digits.yaml``, fewer seeds by default) on the
   device and on the CPU: every cell's verdict must agree and its mean metric lie within
   ``--tolerance``.

Without a CUDA device it says so and measures nothing (exit 0). ``--device cpu`` runs the
whole check with the CPU standing in for the accelerator, which exercises the script.

Usage::

    .venv/bin/python benchmarks/gpu_check.py                 # on a CUDA machine
    .venv/bin/python benchmarks/gpu_check.py --device cpu --quick   # the script itself
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine_overhead as eo  # noqa: E402  (the benchmark folder is not a package)

from polytask import Study  # noqa: E402
from polytask.core.tasks import infer_task  # noqa: E402
from polytask.data import make_task_family, prepare_task  # noqa: E402
from polytask.methods.architectures import MultiTaskModel  # noqa: E402
from polytask.methods.backbones import create_backbone  # noqa: E402
from polytask.methods.weighting import create  # noqa: E402
from polytask.study.resolve import load_config  # noqa: E402
from polytask.training.devices import device_name, resolve_device  # noqa: E402
from polytask.training.engine import evaluate, fit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def engine_throughput(device: torch.device, quick: bool) -> dict[str, float]:
    """Samples per second of the engine and of a bare loop, both on ``device``."""
    s = eo.QUICK if quick else eo.FULL
    data = eo.make_data(s)
    moved = type(data)(data.task, *(type(data.train)(sp.x.to(device), sp.y.to(device)) for sp in (data.train, data.val, data.test)))
    cfg = eo.train_config(s).model_copy(update={"device": device.type if device.type != "cuda" else str(device)})
    out = {}
    for name in ("engine", "hand", "engine", "hand"):  # interleaved; the second of each is kept
        model = eo.make_model(s, data).to(device)
        _sync(device)
        t0 = time.perf_counter()
        if name == "engine":
            fit(model, {eo.TASK: moved}, cfg, seed=s.seed)
        else:
            eo.run_hand(s, model, moved)
        _sync(device)
        out[name] = s.samples / (time.perf_counter() - t0)
    out["ratio"] = out["engine"] / out["hand"]
    return out


def mtl_method(device: torch.device, quick: bool) -> dict[str, float]:
    """PCGrad on three related tasks: test accuracy on ``device`` (twice) and on the CPU."""
    fam = make_task_family(n_tasks=3, n_target=200 if quick else 1000, n_source=400 if quick else 3000, n_test=400, seed=0)
    data = {n: prepare_task(d, infer_task(n, d.y_train), seed=0) for n, d in fam.items()}
    cfg = eo.TrainConfig(max_epochs=5 if quick else 30, patience=5 if quick else 10, batch_size=64, lr=1e-3)
    scores = {}
    for run, where in (("device", device), ("device again", device), ("cpu", torch.device("cpu"))):
        torch.manual_seed(0)
        model = MultiTaskModel(create_backbone("mlp", data["target"].input_shape, hidden=[64, 64], dropout=0.0), [d.task for d in data.values()])
        fit(model, data, cfg.model_copy(update={"device": str(where)}), seed=0, weighting=create("pcgrad", 3, seed=0), select="target")
        scores[run], _ = evaluate(model, data["target"], data["target"].test)
    return scores


def demo_study(device: torch.device, seeds: int, tolerance: float) -> tuple[int, list[str]]:
    """The demo on ``device`` and on the CPU: cells compared; returns (cells, disagreements)."""
    cfg = load_config(ROOT / "examples" / "mnist-to-digits.yaml")
    raw = cfg.model_dump(mode="json", by_alias=True)
    summaries = {}
    for where in (str(device), "cpu"):
        with tempfile.TemporaryDirectory() as out:
            study = Study({**raw, "seeds": seeds, "train": {**raw["train"], "device": where}})
            summaries[where] = study.run(out=out, progress=False)
    cells = {(c["task"], c["strategy"], c["fraction"]): c for c in summaries["cpu"]["cells"]}
    problems = []
    for c in summaries[str(device)]["cells"]:
        ref = cells[(c["task"], c["strategy"], c["fraction"])]
        if c["verdict"] != ref["verdict"]:
            problems.append(f"{c['task']}/{c['strategy']}/{c['fraction']:g}: verdict {c['verdict']} on {device}, {ref['verdict']} on cpu")
        if not math.isclose(c["mean"], ref["mean"], abs_tol=tolerance):
            problems.append(f"{c['task']}/{c['strategy']}/{c['fraction']:g}: mean {c['mean']:.4f} on {device}, {ref['mean']:.4f} on cpu")
    return len(cells), problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="the accelerator to check (default cuda; cpu exercises the script)")
    p.add_argument("--quick", action="store_true", help="small sizes, and the demo with 2 seeds")
    p.add_argument("--seeds", type=int, help="seeds of the demo study (default 3, quick 2)")
    p.add_argument("--tolerance", type=float, default=0.02, help="largest difference of a cell's mean metric between devices")
    p.add_argument("--skip-demo", action="store_true", help="leave out the demo study (the longest part)")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.device_count():
        print("gpu_check: no CUDA device here; nothing measured")
        return 0
    device = resolve_device(args.device)
    print(f"device: {device_name(device)}; torch {torch.__version__}")
    t = engine_throughput(device, args.quick)
    print(f"engine: {t['engine']:,.0f} samples/s, bare loop: {t['hand']:,.0f} samples/s, ratio {t['ratio']:.2f}")
    m = mtl_method(device, args.quick)
    same = m["device"] == m["device again"]
    again = f"again: {m['device again']:.4f}, {'identical' if same else 'DIFFERENT'}"
    print(f"pcgrad: test accuracy {m['device']:.4f} on {device.type} ({again}), {m['cpu']:.4f} on cpu")
    failed = not same
    if not args.skip_demo:
        cells, problems = demo_study(device, args.seeds or (2 if args.quick else 3), args.tolerance)
        print(f"demo: {cells} cells, {len(problems)} disagreement(s)" + "".join(f"\n  {line}" for line in problems))
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
