"""Tasks that read the same inputs share one forward pass per step, and each task's loss
still reads its own labelled rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAST_TRAIN, shared_inputs_family
from torch import nn

from polytask.config import TrainConfig
from polytask.core.targets import labelled_rows, task_loss
from polytask.core.tasks import infer_task
from polytask.data import prepare_task
from polytask.methods.architectures.multitask import MultiTaskModel
from polytask.training.engine import _shared_losses, fit, same_input_groups


class Counting(nn.Module):
    """A small backbone that counts its forward passes and the rows they saw."""

    def __init__(self, d=6):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, 8), nn.ReLU())
        self.out_features = 8
        self.calls, self.rows = 0, 0

    def forward(self, x):
        self.calls += 1
        self.rows += len(x)
        return self.net(x)


def _prepared(fractions=None, hide=False):
    family = shared_inputs_family()
    out = {}
    for name, d in family.items():
        task = infer_task(name, d.y_train)
        f = (fractions or {}).get(name, 1.0)
        out[name] = prepare_task(d, task, seed=0, fraction=f, split_key="inputs:target", hide_labels=hide and f < 1.0)
    return out


def test_fully_labelled_tasks_on_one_input_take_one_batch_and_one_forward_per_step():
    data = _prepared()
    assert same_input_groups(data) == [["target", "aux"]]
    torch.manual_seed(0)
    backbone = Counting()
    model = MultiTaskModel(backbone, [d.task for d in data.values()])
    train = TrainConfig(**{**FAST_TRAIN, "max_epochs": 1, "min_steps_per_epoch": 1})
    fit(model, data, train, seed=0, select=["target", "aux"])
    steps = int(np.ceil(len(data["target"].train) / train.batch_size))
    evaluations = 1  # one pass over the validation rows serves both heads (they fit in one eval batch)
    assert backbone.calls == steps + evaluations
    assert backbone.rows == len(data["target"].train) - (len(data["target"].train) % train.batch_size == 1) + len(data["target"].val)


def test_partly_labelled_tasks_share_a_forward_over_the_union_and_read_their_own_rows():
    data = _prepared({"target": 0.25}, hide=True)
    torch.manual_seed(0)
    model = MultiTaskModel(Counting(), [d.task for d in data.values()]).eval()
    idx = {"target": torch.nonzero(labelled_rows(data["target"].task, data["target"].train.y)).flatten()[:5], "aux": torch.tensor([0, 3, 50, 7])}
    shared = _shared_losses(model, data, ["target", "aux"], idx)
    assert model.backbone.calls == 1 and model.backbone.rows == len(set(idx["target"].tolist()) | set(idx["aux"].tolist()))
    for n, rows in idx.items():
        alone = task_loss(data[n].task, model(data[n].train.x[rows], n), data[n].train.y[rows])
        assert shared[n].item() == pytest.approx(alone.item(), abs=1e-6)


def test_a_target_at_a_fraction_shares_the_forward_with_a_source_on_the_same_inputs(tmp_path):
    from polytask import Study

    family = shared_inputs_family(n_train=400)
    backbones = []

    def factory():
        backbones.append(Counting())
        return backbones[-1]

    cfg = {
        "name": "sf",
        "seeds": 1,
        "fractions": [0.25],
        "tasks": {"target": {}, "aux": {"role": "source"}},
        "strategies": ["mtl"],
        "train": {**FAST_TRAIN, "max_epochs": 1, "min_steps_per_epoch": 1},
    }
    Study(cfg, data=family, backbone=factory).run_grid(out=tmp_path, progress=False)  # the runs alone, not the serving measurement
    trained = backbones[-1]
    # aux has every row labelled, the target a quarter: aux's stream sets the epoch; each step is one forward.
    aux_rows = int(0.8 * 400)
    steps = int(np.ceil(aux_rows / 32))
    validation_passes = 2  # the target's validation rows shrank with the fraction: not aux's rows
    test_pass = 1
    assert trained.calls == steps + validation_passes + test_pass
