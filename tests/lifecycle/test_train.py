"""``polytask train``: one run saved as a model directory, and the same run over two
processes under torchrun (gloo on the CPU) giving the same model as one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from polytask.cli import app
from polytask.core.tasks import Task
from polytask.data import make_task_family, write_npz_family
from polytask.methods.architectures import MultiTaskModel
from polytask.methods.backbones import create_backbone
from polytask.training.distributed import Shards
from polytask.training.engine import _shard

BIN = Path(sys.executable).parent
TORCHRUN = shutil.which("torchrun", path=str(BIN)) or shutil.which("torchrun")


@pytest.fixture(scope="module")
def study_yaml(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    fam = make_task_family(n_tasks=3, n_target=200, n_source=300, n_test=100, n_features=6, seed=0)
    # A source labelled on 70% of its rows: partial-label means must use the global count.
    y = fam["source1"].y_train.astype(float)
    y[np.random.default_rng(0).random(len(y)) < 0.3] = -1
    fam["source1"] = type(fam["source1"])(fam["source1"].x_train, y, fam["source1"].x_test, fam["source1"].y_test)
    write_npz_family(fam, root / "fam")
    cfg = {
        "name": "train-check",
        "seeds": 1,
        "fractions": [1.0],
        "tasks": {n: {"data": {"npz": f"fam/{n}.npz"}, **({"role": "source"} if n != "target" else {})} for n in fam},
        "model": {"backbone": "mlp", "mlp": {"hidden": [16], "dropout": 0.0}},
        "strategies": ["scratch", "mtl:pcgrad", "mtl:dwa"],
        "train": {"max_epochs": 3, "batch_size": 32, "patience": 3, "min_steps_per_epoch": 4, "lr": 0.01},
    }
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train(study_yaml: Path, out: Path, strategy: str, processes: int = 1) -> subprocess.CompletedProcess:
    args = [str(BIN / "polytask"), "train", str(study_yaml), "--out", str(out), "--strategy", strategy]
    if processes > 1:
        args = [TORCHRUN, "--standalone", f"--nproc-per-node={processes}", *args]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, timeout=240, env=env, cwd=study_yaml.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_a_trained_run_is_a_model_directory_that_loads(study_yaml, tmp_path):
    proc = _train(study_yaml, tmp_path / "m", "mtl:pcgrad")
    assert proc.stdout.startswith(f"model: {tmp_path / 'm'} (mtl:pcgrad, target: test ")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["format"] == "polytask-model/2" and meta["processes"] == 1 and meta["targets"] == ["target"]
    assert set(meta["tasks"]) == {"target", "source1", "source2"}  # one model, a head per task
    build = meta["build"]
    assert (build["backbone"], build["backbone_options"]) == ("mlp", {"hidden": [16], "dropout": 0.0})
    state = load_file(tmp_path / "m" / "model.safetensors")
    tasks = [Task(n, t["kind"], t["n_outputs"]) for n, t in meta["tasks"].items()]
    model = MultiTaskModel(create_backbone(build["backbone"], tuple(build["input_shape"]), **build["backbone_options"]), tasks)
    model.load_state_dict(state)  # strict: every weight there, nothing else


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun not found")
@pytest.mark.parametrize("strategy", ["scratch", "mtl:pcgrad", "mtl:dwa"])
def test_two_processes_train_the_same_model_as_one(study_yaml, tmp_path, strategy):
    # Dropout 0 and no BatchNorm: sharded batches with gradients summed across processes
    # (per-task gradients before PCGrad combines them; DWA reads the global losses) must
    # give one process's model, to float rounding.
    _train(study_yaml, tmp_path / "one", strategy)
    proc = _train(study_yaml, tmp_path / "two", strategy, processes=2)
    assert "2 process(es)" in proc.stdout
    one = load_file(tmp_path / "one" / "model.safetensors")
    two = load_file(tmp_path / "two" / "model.safetensors")
    assert one.keys() == two.keys()
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-5
    m1 = json.loads((tmp_path / "one" / "model.json").read_text())["metrics"]
    m2 = json.loads((tmp_path / "two" / "model.json").read_text())["metrics"]
    assert m1 == m2


def test_shards_split_each_global_batch_and_its_labelled_rows():
    # Per task, the shares of the processes add up to 1, counting labelled rows only.
    y = torch.tensor([0, -1, 1, 2, -1, 0, 1])
    task = Task("t", "classification", 3)
    data = {"t": type("P", (), {"task": task, "train": type("S", (), {"y": y})()})()}
    idx = torch.arange(7)
    shares, rows = [], []
    for rank in range(2):
        local, share = _shard({"t": idx}, data, Shards(rank, 2))
        rows.append(local["t"].tolist())
        shares.append(float(share["t"]))
    assert rows == [[0, 2, 4, 6], [1, 3, 5]]
    assert shares == pytest.approx([3 / 5, 2 / 5])


def test_rep_grad_across_processes_is_refused(monkeypatch):
    from polytask.config import TrainConfig
    from polytask.core.tasks import infer_task
    from polytask.data import prepare_task
    from polytask.methods.weighting import create
    from polytask.training import distributed
    from polytask.training.engine import fit

    fam = make_task_family(n_tasks=2, seed=0)
    data = {n: prepare_task(d, infer_task(n, d.y_train), seed=0) for n, d in fam.items()}
    model = MultiTaskModel(create_backbone("mlp", data["target"].input_shape), [d.task for d in data.values()])
    monkeypatch.setattr(distributed, "current", lambda: Shards(0, 2))
    with pytest.raises(ValueError, match="does not run across processes"):
        fit(model, data, TrainConfig(max_epochs=1), seed=0, weighting=create("mgda-ub", 2), rep_grad=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "nope"], "--task 'nope' is not a target of the study (targets: target)"),
        (["--strategy", "fine-tune"], "--strategy 'fine-tune' is not one of the study's strategies (scratch, mtl:pcgrad, mtl:dwa)"),
        (["--fraction", "1.5"], "--fraction must be in (0, 1], got 1.5"),
    ],
)
def test_bad_choices_are_one_line(study_yaml, tmp_path, args, message):
    result = CliRunner().invoke(app, ["train", str(study_yaml), "--out", str(tmp_path / "m"), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()
