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
from polytask.study.resolve import backbone_options

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
        net = create_backbone(name, shape, **backbone_options(cfg, name))
        x = net.tokenizer(TEXTS) if shape == TEXT_SHAPE else torch.rand(3, *shape)
        out = net(x)
        assert out.shape == (3, net.out_features)
        assert torch.isfinite(out).all()


def test_cnn_rejects_tabular_inputs():
    with pytest.raises(ConfigError, match="needs image inputs"):
        create_backbone("cnn", (5,))


def test_multitask_model_routes_to_the_task_head():
    net = create_backbone("mlp", (3,), hidden=[4])
    model = MultiTaskModel(net, [Task("a", "classification", 5), Task("b", "regression", 1)])
    x = torch.randn(2, 3)
    assert model(x, "a").shape == (2, 5) and model(x, "b").shape == (2, 1)
    assert count_params(model) == (3 * 4 + 4) + (4 * 5 + 5) + (4 + 1)
    model.backbone.requires_grad_(False)
    assert count_params(model, trainable_only=True) == (4 * 5 + 5) + (4 + 1)


BUILDERS = ["mlp", "cnn", "gru", "efficientnet-lite0", "minilm", "hf:x", "timm:x"]


@pytest.mark.parametrize("name", BUILDERS)
def test_a_builders_defaults_are_the_configs_defaults(name):
    # A backbone built in Python with no options is the one a study builds from an empty
    # model config: the builder's keyword defaults and the schema's defaults agree (options
    # a study fills from the data, such as a table's embeddings, are not the config's).
    import inspect

    from polytask.methods.backbones import BACKBONES, DATA_OPTIONS, PREFIXES, PRETRAINED

    prefix, sep, _ = name.partition(":")
    fn = PREFIXES[prefix] if sep else PRETRAINED.get(name) or BACKBONES[name]
    params = {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty and k not in DATA_OPTIONS}
    options = backbone_options(ModelConfig(), name)
    assert options and set(options) == set(params)
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()} == options


def test_a_user_backbone_reads_the_config_section_named_after_it(tmp_path):
    from polytask.methods.backbones import BACKBONES, register_backbone
    from polytask.study.resolve import validate

    built = {}

    @register_backbone("test-wide")
    def _wide(input_shape, width: int = 3):
        built["width"] = width
        return create_backbone("mlp", input_shape, hidden=[width])

    try:
        cfg = validate(
            {"tasks": {"a": {"data": {"builtin": "digits"}}}, "model": {"backbone": "test-wide", "test-wide": {"width": 7}}, "strategies": ["scratch"]}
        )
        assert backbone_options(cfg.model) == {"width": 7}
        assert create_backbone("test-wide", (4,), **backbone_options(cfg.model)).out_features == 7 == built["width"]
    finally:
        del BACKBONES["test-wide"], BACKBONES.info["test-wide"]


def test_a_backbone_saved_with_the_whole_model_config_still_loads(tmp_path):
    # Files written before backbones took options hold the model config; its sections the
    # backbone reads rebuild the same architecture.
    import io

    from polytask.methods.backbones.run import SAVED_FORMAT

    net = create_backbone("mlp", (6,), hidden=[5, 3], dropout=0.0)
    old = {
        "format": SAVED_FORMAT,
        "backbone": "mlp",
        "model": ModelConfig(mlp={"hidden": [5, 3], "dropout": 0.0}).model_dump(mode="json"),
        "input_shape": [6],
        "state": net.state_dict(),
    }
    path = tmp_path / "models" / "t" / "scratch" / "1" / "seed0.pt"
    path.parent.mkdir(parents=True)
    buf = io.BytesIO()
    torch.save(old, buf)
    path.write_bytes(buf.getvalue())
    again = create_backbone(f"run:{tmp_path}/t/scratch/seed0", (6,), pretrained=True).eval()
    x = torch.randn(4, 6)
    assert again.out_features == 3 and torch.equal(again(x), net.eval()(x))


def test_an_option_the_user_backbone_does_not_take_is_one_line_naming_it():
    from polytask.methods.backbones import BACKBONES, register_backbone
    from polytask.study.resolve import validate

    register_backbone("test-narrow")(lambda input_shape, width=3: create_backbone("mlp", input_shape, hidden=[width]))
    try:
        with pytest.raises(ConfigError, match=r"field 'model.test-narrow': backbone 'test-narrow' takes no option 'depth' \(it takes: width\)"):
            validate(
                {"tasks": {"a": {"data": {"builtin": "digits"}}}, "model": {"backbone": "test-narrow", "test-narrow": {"depth": 2}}, "strategies": ["scratch"]}
            )
    finally:
        del BACKBONES["test-narrow"], BACKBONES.info["test-narrow"]
