"""The fine-tune recipe in studies: layers, rates, unfreezing, LP-FT, BatchNorm, regularizers, LoRA, augmentation."""

from __future__ import annotations

import pytest
import torch
from conftest import FAST_TRAIN, tiny_config

from polytask import Study
from polytask.config import FineTuneConfig, TrainConfig
from polytask.core.errors import ConfigError
from polytask.core.tasks import infer_task
from polytask.data import TaskData, prepare_task
from polytask.methods.architectures import MultiTaskModel
from polytask.methods.backbones import create_backbone
from polytask.strategies import get_strategy
from polytask.study.plan import RunSpec
from polytask.study.resolve import validate
from polytask.study.store import ResultStore
from polytask.training.finetune import _param_groups, fine_tune_model


def _model(task=None, hidden=(8, 6)):
    torch.manual_seed(0)
    backbone = create_backbone("mlp", (6,), hidden=list(hidden), dropout=0.0)
    return MultiTaskModel(backbone, [task or infer_task("target", torch.arange(3).numpy())])


def test_layerwise_rates_by_hand():
    model = _model()
    train = TrainConfig(lr=0.01, backbone_lr_ratio=0.1)
    groups = _param_groups(model, FineTuneConfig(lr_decay=0.5), train, list(model.heads.parameters()))
    # Two MLP stages: the top one at lr * ratio = 1e-3, the one below at 5e-4; the head at lr.
    assert [g["lr"] for g in groups] == pytest.approx([5e-4, 1e-3, 1e-2])
    stage0 = {id(p) for p in model.backbone.net[1].parameters()}
    assert {id(p) for p in groups[0]["params"]} == stage0
    # Without decay: the whole backbone at lr * ratio, as plain fine-tuning always did.
    plain = _param_groups(model, FineTuneConfig(), train, list(model.heads.parameters()))
    assert [g["lr"] for g in plain] == pytest.approx([1e-3, 1e-2])
    assert len(plain[0]["params"]) == 4


def _target(family):
    d = family["target"]
    return prepare_task(d, infer_task("target", d.y_train), seed=0)


def test_layers_and_lp_ft_train_what_they_should(tiny_family):
    target = _target(tiny_family)
    model = _model(target.task)
    first = model.backbone.net[1].weight.detach().clone()
    train = TrainConfig(**FAST_TRAIN)
    fine_tune_model(model, target, FineTuneConfig(layers=1, lp_ft=True, lp_epochs=1), train, seed=0)
    # layers: 1 keeps the first stage frozen through both phases.
    assert torch.equal(model.backbone.net[1].weight, first)
    assert not model.backbone.net[1].weight.requires_grad and model.backbone.net[4].weight.requires_grad


def test_gradual_unfreeze_ends_with_every_stage_trainable(tiny_family):
    target = _target(tiny_family)
    model = _model(target.task)
    train = TrainConfig(**{**FAST_TRAIN, "max_epochs": 3, "patience": 3})
    fine_tune_model(model, target, FineTuneConfig(unfreeze="gradual"), train, seed=0)
    assert all(p.requires_grad for p in model.backbone.parameters())


@pytest.mark.parametrize(
    "recipe",
    [
        {"regularizer": "l2-sp"},
        {"regularizer": "bss"},
        {"regularizer": "lwf"},
        {"regularizer": "delta", "lp_ft": True, "lp_epochs": 1},
        {"regularizer": "delta", "delta": {"attention": False}},
        {"layers": 1, "lr_decay": 0.5, "freeze_bn": True},
        {"lora": {"r": 2, "alpha": 4}},
    ],
    ids=lambda r: "-".join(f"{k}" for k in r),
)
def test_every_recipe_runs_in_a_study(recipe, tiny_family, tmp_path):
    cfg = tiny_config(tiny_family, seeds=1, fractions=[1.0], strategies=["fine-tune"], **{"fine-tune": recipe}, save_models=True)
    Study(cfg, data=tiny_family).run(out=tmp_path, progress=False)
    rows = ResultStore(tmp_path / "results.jsonl").rows()
    assert {r["status"] for r in rows} == {"ok"}, [r["error"] for r in rows]
    saved = torch.load(tmp_path / "models" / "target" / "fine-tune" / "1" / "seed0.pt", weights_only=True)
    # LoRA is merged for export: the saved backbone has plain weights only.
    assert not any("lora" in k for k in saved["state"])


def test_regularizer_changes_the_result_and_recipe_errors(tiny_family, tmp_path):
    base = tiny_config(tiny_family, seeds=1, fractions=[1.0], strategies=["fine-tune"])
    spec = RunSpec("target", "fine-tune", 1.0, 0)

    def drift(cfg, out):
        # How far fine-tuning moved the backbone from its pretrained start.
        study = Study(cfg, data=tiny_family)
        outcome = get_strategy("fine-tune")(study._context(out, spec))
        start, _ = study._pretrained(out, spec)
        return sum(float((a - b).detach().pow(2).sum()) for a, b in zip(outcome.backbone.parameters(), start.parameters()))

    strong = {**base, "fine-tune": {"regularizer": "l2-sp", "l2-sp": {"alpha": 50.0}}}
    assert drift(strong, tmp_path / "b") < 0.5 * drift(base, tmp_path / "a")
    with pytest.raises(ConfigError, match="lp_ft: true, or delta: {attention: false}"):
        Study({**base, "fine-tune": {"regularizer": "delta"}}, data=tiny_family).execute(tmp_path / "c", RunSpec("target", "fine-tune", 1.0, 0))
    with pytest.raises(ConfigError, match="lora renames the backbone's weights"):
        validate({**base, "fine-tune": {"regularizer": "l2-sp", "lora": {"r": 2}}})
    with pytest.raises(ConfigError, match="unknown fine-tuning regularizer or key 'l3-sp'"):
        validate({**base, "fine-tune": {"regularizer": "l3-sp"}})


def _images(n=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n + 40, 8, 8, generator=g).numpy()
    y = (x[:, :4].mean(axis=(1, 2)) > x[:, 4:].mean(axis=(1, 2))).astype("int64")
    return TaskData(x[:n], y[:n], x[n:], y[n:])


def test_augmentation_in_a_study_and_frozen_feature_extraction(tmp_path):
    data = {"target": _images(seed=0), "source": _images(seed=1)}
    model = {"backbone": "cnn", "cnn": {"channels": [4], "hidden": 8}}
    cfg = tiny_config(data, seeds=1, fractions=[1.0], strategies=["scratch", "feature-extraction", "fine-tune", "mtl"], model=model)
    cfg["tasks"]["target"]["augment"] = {"shift": 1, "noise": 0.05}
    study = Study(cfg, data=data)
    summary = study.run(out=tmp_path, progress=False)
    assert {r["status"] for r in ResultStore(tmp_path / "results.jsonl").rows()} == {"ok"}
    # The study records the augmentation and the report shows it.
    assert summary["augment"] == {"target": {"shift": 1, "noise": 0.05}}
    assert "<h2>Augmentation</h2>" in (tmp_path / "report.html").read_text() and "shift: 1, noise: 0.05" in (tmp_path / "report.html").read_text()
    # Augmented feature extraction trains the head through the frozen backbone: its
    # weights and BatchNorm statistics stay those of pretraining.
    spec = RunSpec("target", "feature-extraction", 1.0, 0)
    outcome = get_strategy("feature-extraction")(study._context(tmp_path, spec))
    pretrained, _ = study._pretrained(tmp_path, spec)
    for k, v in pretrained.state_dict().items():
        assert torch.equal(v, outcome.backbone.state_dict()[k]), k
    bad = {**cfg, "tasks": {**cfg["tasks"], "target": {**cfg["tasks"]["target"], "augment": {"rotate": 400}}}}
    with pytest.raises(ConfigError, match="tasks.target.augment: .*rotate"):
        Study(bad, data=data).load()
