"""Backbones and the multi-task model."""

from __future__ import annotations

import pytest
import torch

from polytask.config import ModelConfig
from polytask.core.errors import ConfigError
from polytask.core.tasks import Task
from polytask.data.arrays import TEXT_SHAPE
from polytask.methods.architectures import MultiTaskModel, count_params
from polytask.methods.backbones import backbone_names, create_backbone

SHAPES = {
    "mlp": [(5,), (1, 8, 8)],
    "cnn": [(1, 8, 8), (1, 16, 16), (3, 36, 36)],
    "efficientnet-lite0": [(1, 8, 8), (3, 20, 20)],
    "gru": [TEXT_SHAPE],
    "minilm": [TEXT_SHAPE],
}
TEXTS = ["a fine film .", "dull", "not bad at all, really"]


@pytest.mark.parametrize("name", backbone_names())
def test_every_backbone_maps_a_batch_to_out_features(name):
    # Every registered backbone, randomly initialized (pretrained weights: test_pretrained.py).
    cfg = ModelConfig(imagenet={"resize": 32})
    for shape in SHAPES[name]:
        net = create_backbone(name, shape, cfg)
        x = net.tokenizer(TEXTS) if shape == TEXT_SHAPE else torch.rand(3, *shape)
        out = net(x)
        assert out.shape == (3, net.out_features)
        assert torch.isfinite(out).all()


def test_cnn_rejects_tabular_inputs():
    with pytest.raises(ConfigError, match="needs image inputs"):
        create_backbone("cnn", (5,), ModelConfig())


def test_multitask_model_routes_to_the_task_head():
    net = create_backbone("mlp", (3,), ModelConfig(mlp={"hidden": [4]}))
    model = MultiTaskModel(net, [Task("a", "classification", 5), Task("b", "regression", 1)])
    x = torch.randn(2, 3)
    assert model(x, "a").shape == (2, 5) and model(x, "b").shape == (2, 1)
    assert count_params(model) == (3 * 4 + 4) + (4 * 5 + 5) + (4 + 1)
    model.backbone.requires_grad_(False)
    assert count_params(model, trainable_only=True) == (4 * 5 + 5) + (4 + 1)
