"""Devices and precision: names, where tensors live, mixed precision with per-task gradient
methods, the divergence check's reads, and what a study records."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import FAST_TRAIN, regression_data, tiny_config
from typer.testing import CliRunner

from polytask import Study
from polytask.cli import app
from polytask.config import TrainConfig
from polytask.core.errors import ConfigError, DivergedError
from polytask.core.tasks import infer_task
from polytask.data import make_task_family, prepare_task
from polytask.methods.architectures import MultiTaskModel
from polytask.methods.backbones import create_backbone
from polytask.methods.weighting import create
from polytask.study.store import ResultStore
from polytask.training import steps
from polytask.training.devices import resolve_device, tasks_to
from polytask.training.engine import evaluate, fit

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here; CI has none)")


def _family(n_tasks=2):
    fam = make_task_family(n_tasks=n_tasks, n_target=120, n_source=200, n_test=80, n_features=6, seed=0)
    return {n: prepare_task(d, infer_task(n, d.y_train), seed=0) for n, d in fam.items()}


def _model(data, hidden=(16,)):
    torch.manual_seed(0)
    first = next(iter(data.values()))
    return MultiTaskModel(create_backbone("mlp", first.input_shape, hidden=list(hidden), dropout=0.0), [d.task for d in data.values()])


def test_device_names_resolve_or_fail_in_one_line():
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(ConfigError, match=r"^device 'cuda:1' was asked for, but this machine has no CUDA device"):
            resolve_device("cuda:1")
    with pytest.raises(ConfigError, match="is not one of auto, cpu, cuda, cuda:N, mps"):
        resolve_device("gpu")


def test_moving_tasks_keeps_shared_inputs_shared():
    data = _family()
    shared = {n: prepare_task(d, infer_task(n, d.y_train), seed=0) for n, d in make_task_family(n_tasks=2, seed=0).items()}
    same = dict(shared)
    same["other"] = type(shared["target"])(shared["target"].task, shared["target"].train, shared["target"].val, shared["target"].test)
    moved = tasks_to(same, torch.device("cpu"))
    assert moved["other"].train.x is moved["target"].train.x
    assert tasks_to(data, torch.device("cpu"))["target"].train.x is data["target"].train.x  # already there: no copy


def test_cpu_named_or_auto_gives_the_same_numbers():
    data = _family()
    runs = []
    for device in ("auto", "cpu"):
        model = _model(data)
        r = fit(model, data, TrainConfig(max_epochs=3, patience=3, batch_size=32, device=device), seed=0, weighting=create("pcgrad", 2, seed=0))
        runs.append(([h["train_loss"] for h in r.history], evaluate(model, data["target"], data["target"].test)))
    assert runs[0] == runs[1]


class _Spy(type(create("pcgrad", 2))):
    """PCGrad, keeping the gradients it was given."""

    def __init__(self, n_tasks, seed=0):
        super().__init__(n_tasks, seed)
        self.seen = []

    def combine(self, grads, losses=None):
        self.seen.append(grads.detach().clone())
        return super().combine(grads, losses)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_trains_and_combines_task_gradients_unscaled_in_float32(precision):
    data = _family()
    model = _model(data)
    dtypes = set()
    model.backbone.register_forward_hook(lambda m, i, o: dtypes.add(o.dtype) if m.training else None)
    spy = _Spy(2, seed=0)
    r = fit(model, data, TrainConfig(max_epochs=3, patience=3, batch_size=32, lr=0.01, precision=precision), seed=0, weighting=spy)
    assert dtypes == {torch.bfloat16 if precision == "bf16-mixed" else torch.float16}  # the forward ran at that precision
    assert all(g.dtype in (torch.float32, torch.float64) for g in spy.seen)
    # float16's loss scale (65536 at the start) is divided out before the method sees them.
    assert max(float(g.abs().max()) for g in spy.seen) < 100
    assert all(math.isfinite(h["train_loss"]) for h in r.history)
    # Evaluation runs in float32 and the model learned: better than chance on 3 classes... or
    # the task's metric at least finite and above the untrained model's.
    metric, _ = evaluate(model, data["target"], data["target"].test)
    untrained, _ = evaluate(_model(data), data["target"], data["target"].test)
    assert math.isfinite(metric) and metric > untrained


def test_bf16_close_to_float32_on_a_plain_sum():
    data = _family(1)
    scores = {}
    for precision in ("32", "bf16-mixed"):
        model = _model(data)
        fit(model, data, TrainConfig(max_epochs=5, patience=5, batch_size=32, lr=0.01, precision=precision), seed=0, select="target")
        scores[precision], _ = evaluate(model, data["target"], data["target"].test)
    assert scores["bf16-mixed"] == pytest.approx(scores["32"], abs=0.1)


def test_16_mixed_refuses_rep_grad():
    data = _family()
    with pytest.raises(ValueError, match="rep_grad does not combine with 16-mixed"):
        fit(_model(data), data, TrainConfig(max_epochs=1, precision="16-mixed"), seed=0, weighting=create("mgda-ub", 2), rep_grad=True)


def test_the_divergence_check_reads_the_device_every_few_dozen_steps(monkeypatch):
    data = {"t": prepare_task(regression_data(n=600), infer_task("t", regression_data(n=600).y_train), seed=0)}
    reads = []
    real = steps.check_finite
    monkeypatch.setattr("polytask.training.engine.check_finite", lambda running, epoch: reads.append(epoch) or real(running, epoch))
    r = fit(_model(data), data, TrainConfig(max_epochs=2, patience=2, batch_size=4, min_steps_per_epoch=1), seed=0, select="t")
    n_steps = math.ceil(len(data["t"].train) / 4)
    assert n_steps > 2 * steps.CHECK_EVERY
    assert len(reads) == r.epochs * math.ceil(n_steps / steps.CHECK_EVERY)
    exploding = type(data["t"])(data["t"].task, type(data["t"].train)(data["t"].train.x * 1e30, data["t"].train.y * 1e30), data["t"].val, data["t"].test)
    with pytest.raises(DivergedError, match="training loss became (nan|inf) at epoch 1"):
        fit(_model({"t": exploding}), {"t": exploding}, TrainConfig(max_epochs=2, lr=10.0), seed=0, select="t")


def test_rows_record_the_device_and_the_fingerprint_ignores_it(tiny_family, tmp_path):
    cfg = tiny_config(tiny_family, strategies=["scratch"], seeds=1, fractions=[1.0], train=FAST_TRAIN)
    Study(cfg, data=tiny_family).run(out=tmp_path / "a", progress=False)
    rows = ResultStore(tmp_path / "a" / "results.jsonl").rows()
    assert {r["versions"]["device"] for r in rows} == {"cpu"}
    on_cpu = Study({**cfg, "train": {**FAST_TRAIN, "device": "cpu"}}, data=tiny_family)
    assert on_cpu.fingerprint == json.loads((tmp_path / "a" / "study.json").read_text())["fingerprint"]
    bf16 = Study({**cfg, "train": {**FAST_TRAIN, "precision": "bf16-mixed"}}, data=tiny_family)
    assert bf16.fingerprint != on_cpu.fingerprint


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cli_device_this_machine_lacks_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "study"
    result = CliRunner().invoke(app, ["compare", "examples/mnist-to-digits.yaml", "--out", str(out), "--device", "cuda"])
    assert result.exit_code == 2
    assert "device 'cuda' was asked for" in result.output and "Traceback" not in result.output
    assert not out.exists()


@CUDA
def test_same_seed_same_numbers_on_cuda_and_close_to_cpu():
    data = _family()
    runs = {}
    for device in ("cuda", "cuda", "cpu"):
        model = _model(data)
        fit(model, data, TrainConfig(max_epochs=3, patience=3, batch_size=32, device=device), seed=0, weighting=create("pcgrad", 2, seed=0))
        runs.setdefault(device, []).append(evaluate(model, data["target"], data["target"].test))
    assert runs["cuda"][0] == runs["cuda"][1]
    assert runs["cuda"][0][0] == pytest.approx(runs["cpu"][0][0], abs=0.05)
