"""``run:<dir>/<task>/<strategy>[/<fraction>]/seed<k>``: a backbone an earlier polytask study
saved (``save_models: true``), rebuilt from what the file says and loaded with
``torch.load(weights_only=True)``: no file is unpickled."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.core.inputs import TEXT_SHAPE
from polytask.core.io import write_atomic
from polytask.methods.backbones.base import create_backbone, option_sections, register_prefix

SAVED_FORMAT = "polytask-backbone/1"


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


def save_backbone(path: Path, backbone: nn.Module, name: str, options: dict, input_shape: tuple) -> None:
    """Write a backbone with what rebuilding it needs (its name and the options it was
    built with, an ``mlp``'s ``embeddings`` of a table's code columns included, so
    ``run:`` rebuilds them); readable with ``weights_only=True``."""
    payload = {
        "format": SAVED_FORMAT,
        "backbone": name,
        "options": dict(options),
        "input_shape": list(input_shape),
        "state": {k: v.detach().cpu() for k, v in backbone.state_dict().items()},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    write_atomic(path, buf.getvalue())


def saved_options(saved: dict) -> dict:
    """The options a saved backbone was built with. Files written before backbones took
    options hold the whole model config instead; its sections the backbone reads give them."""
    if "options" in saved:
        return dict(saved["options"])
    model = saved.get("model") or {}
    return {k: v for section in option_sections(saved["backbone"]) for k, v in (model.get(section) or {}).items()}


def saved_recipe(spec: str) -> tuple[str, dict]:
    """The backbone name and options that ``run:<spec>``'s file was built with."""
    saved = _read_saved(spec)
    return saved["backbone"], saved_options(saved)


def _read_saved(spec: str) -> dict:
    """The file behind ``run:<spec>``, read without unpickling; one line when it is not one."""
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
    return saved


@register_prefix("run")
def build_run(spec: str, input_shape: tuple, pretrained: bool) -> nn.Module:
    """The saved backbone behind ``spec``: its architecture, with its weights when ``pretrained``."""
    saved = _read_saved(spec)
    shape = tuple(saved["input_shape"]) if saved["input_shape"] != list(TEXT_SHAPE) else TEXT_SHAPE
    if tuple(input_shape) != shape:
        raise ConfigError(f"backbone 'run:{spec}' was trained on samples of shape {shape}, but this study's are {tuple(input_shape)}")
    # The saved architecture (a pretrained one by name, or a registered one), randomly initialized.
    net = create_backbone(saved["backbone"], shape, pretrained=False, **saved_options(saved))
    if pretrained:
        net.load_state_dict(saved["state"])
    return net
