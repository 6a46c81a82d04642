"""Gradients on the shared representation (``mtl.rep_grad``, ``mgda-ub``) and their refusals."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from polytask import Study
from polytask.core.errors import ConfigError
from polytask.core.targets import labelled_rows, task_loss
from polytask.core.tasks import infer_task
from polytask.data import prepare_task
from polytask.methods.architectures import MultiTaskModel
from polytask.methods.backbones import create_backbone
from polytask.methods.weighting import create
from polytask.methods.weighting.mgda import min_norm_simplex
from polytask.study.resolve import validate
from polytask.study.runner import input_groups
from polytask.study.store import ResultStore
from polytask.training.engine import _rep_grad_step, fit


def _model_and_data(family, key="inputs:target"):
    data = {n: prepare_task(d, infer_task(n, d.y_train), seed=0, split_key=key) for n, d in family.items()}
    torch.manual_seed(0)
    backbone = create_backbone("mlp", data["target"].input_shape, hidden=[8], dropout=0.0)
    return MultiTaskModel(backbone, [d.task for d in data.values()]), data


def _param_grads(model, loss):
    return [g for g in torch.autograd.grad(loss, list(model.backbone.parameters()), retain_graph=True)]


def test_mgda_ub_step_matches_the_papers_formula(shared_family):
    model, data = _model_and_data(shared_family)
    x = data["target"].train.x
    idx = torch.arange(32)
    # By hand: the min-norm weights of the gradients w.r.t. z (two tasks: closed form),
    # then the backbone gets sum_t gamma_t dL_t/dtheta.
    z = model.backbone(x[idx])
    losses = [task_loss(data[n].task, model.heads[n](z), data[n].train.y[idx]) for n in data]
    gz = [torch.autograd.grad(loss, z, retain_graph=True)[0].flatten() for loss in losses]
    g1, g2 = gz
    gamma = float(torch.clamp((g2 @ (g2 - g1)) / (g1 - g2).pow(2).sum(), 0, 1))
    assert gamma == pytest.approx(float(min_norm_simplex(torch.stack(gz) @ torch.stack(gz).T)[0]), abs=1e-6)
    expected = [gamma * a + (1 - gamma) * b for a, b in zip(_param_grads(model, losses[0]), _param_grads(model, losses[1]))]
    head_expected = {n: torch.autograd.grad(loss, list(model.heads[n].parameters()), retain_graph=True) for n, loss in zip(data, losses)}

    model.zero_grad()
    _, weights = _rep_grad_step(model, x, data, idx, create("mgda-ub", 2))
    assert weights.tolist() == pytest.approx([gamma, 1 - gamma], abs=1e-6)
    for p, e in zip(model.backbone.parameters(), expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-5, atol=1e-7)
    # Each head gets its own task's plain gradient.
    for n in data:
        for p, e in zip(model.heads[n].parameters(), head_expected[n]):
            torch.testing.assert_close(p.grad, e)


def test_pcgrad_on_the_representation_backpropagates_the_projected_gradient(shared_family):
    model, data = _model_and_data(shared_family)
    x, idx = data["target"].train.x, torch.arange(40)
    z = model.backbone(x[idx])
    losses = [task_loss(data[n].task, model.heads[n](z), data[n].train.y[idx]) for n in data]
    g = torch.stack([torch.autograd.grad(loss, z, retain_graph=True)[0].flatten() for loss in losses])
    combined, _ = create("pcgrad", 2, seed=3).combine(g)
    expected = torch.autograd.grad(z, list(model.backbone.parameters()), grad_outputs=combined.view_as(z))
    model.zero_grad()
    _rep_grad_step(model, x, data, idx, create("pcgrad", 2, seed=3))
    for p, e in zip(model.backbone.parameters(), expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-5, atol=1e-7)


def test_fit_refuses_what_rep_grad_cannot_do(shared_family, tiny_family):
    model, data = _model_and_data(shared_family)
    from polytask.config import TrainConfig

    train = TrainConfig(max_epochs=1)
    with pytest.raises(ValueError, match="'mgda-ub' balances gradients of the shared representation"):
        fit(model, data, train, seed=0, weighting=create("mgda-ub", 2))
    with pytest.raises(ValueError, match="'uw' never reads"):
        fit(model, data, train, seed=0, weighting=create("uw", 2), rep_grad=True)
    with pytest.raises(ValueError, match="cannot be sampled"):
        fit(model, data, train, seed=0, weighting=create("mgda", 2), rep_grad=True, sampling={"target": 0.5, "aux": 0.5})
    other, odata = _model_and_data({k: tiny_family[k] for k in ("target", "source1")}, key=None)
    with pytest.raises(ValueError, match="'target' and 'source1' train on different inputs"):
        fit(other, odata, train, seed=0, weighting=create("mgda", 2), rep_grad=True)


def test_config_refusals(shared_family, tiny_family):
    base = tiny_config(shared_family, strategies=["scratch", "mtl:uw", "mtl:pcgrad"])
    with pytest.raises(ConfigError, match="strategy 'mtl:uw' with mtl.rep_grad: 'uw' weights the losses"):
        validate({**base, "mtl": {"rep_grad": True}})
    with pytest.raises(ConfigError, match="architecture 'mmoe' gives each task its own"):
        validate({**base, "strategies": ["mtl:mgda-ub"], "model": {**base["model"], "architecture": "mmoe"}})
    with pytest.raises(ConfigError, match="mtl.sampling 'proportional' cannot apply"):
        validate({**base, "strategies": ["mtl:mgda-ub"], "mtl": {"sampling": "proportional"}})
    # Tasks with inputs of their own: refused when the study loads its data.
    cfg = tiny_config(tiny_family, strategies=["scratch", "mtl:mgda-ub"])
    with pytest.raises(ConfigError, match="tasks must share their inputs.*'source1', 'source2'"):
        Study(cfg, data=tiny_family).load()


def test_input_groups_share_validation_rows_and_subsets(shared_family, tiny_family):
    assert input_groups(shared_family) == {"target": "inputs:target", "aux": "inputs:target"}
    assert input_groups(tiny_family) == {}
    a = prepare_task(shared_family["target"], infer_task("target", shared_family["target"].y_train), 3, 0.5, split_key="inputs:target")
    b = prepare_task(shared_family["aux"], infer_task("aux", shared_family["aux"].y_train), 3, 0.5, split_key="inputs:target")
    torch.testing.assert_close(a.train.x, b.train.x)
    torch.testing.assert_close(a.val.x, b.val.x)


def test_hidden_labels_keep_every_row_and_label_the_fractions_rows(shared_family):
    d = shared_family["target"]
    task = infer_task("target", d.y_train)
    subset = prepare_task(d, task, 1, 0.25, split_key="k")
    hidden = prepare_task(d, task, 1, 0.25, split_key="k", hide_labels=True)
    full = prepare_task(d, task, 1, 1.0, split_key="k")
    assert len(hidden.train) == len(full.train)
    labelled = labelled_rows(task, hidden.train.y)
    assert int(labelled.sum()) == len(subset.train)
    # The labelled rows are exactly the fraction's rows, with their labels.
    assert hidden.train.y[labelled].tolist() == subset.train.y.tolist()


def test_rep_grad_study_runs_at_a_fraction(shared_family, tmp_path):
    cfg = tiny_config(shared_family, seeds=1, fractions=[0.5], strategies=["scratch", "mtl:mgda-ub", "mtl:pcgrad"], mtl={"rep_grad": True})
    summary = Study(cfg, data=shared_family).run(out=tmp_path, progress=False)
    rows = ResultStore(tmp_path / "results.jsonl").rows()
    assert {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows]
    assert {c["strategy"] for c in summary["cells"]} == {"scratch", "mtl:mgda-ub", "mtl:pcgrad"}
