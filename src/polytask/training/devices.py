"""Where and at what precision runs train: the device a spec names, moving prepared tasks
onto it, autocast and loss scaling for mixed precision, and determinism flags.

``auto`` picks CUDA, then Apple's MPS, then the CPU. Checking for CUDA here does not
initialise it (``torch.cuda.device_count`` asks NVML where it can, unlike
``torch.cuda.is_available``), so a driver that only resolves names can still fork worker
processes that use the GPU.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import replace

import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.data.prepare import PreparedTask, Split

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
PRECISIONS = ("32", "bf16-mixed", "16-mixed")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(spec: str = "auto") -> torch.device:
    """The device ``spec`` names (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``).

    Raises:
        ConfigError: an unknown name, or a device this machine does not have.
    """
    if not DEVICE_PATTERN.fullmatch(spec):
        raise ConfigError(f"device '{spec}' is not one of auto, cpu, cuda, cuda:N, mps")
    if spec == "auto":
        if cuda_count():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if spec.startswith("cuda"):
        count = cuda_count()
        index = int(spec.partition(":")[2] or 0)
        if index >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device (or a CPU-only PyTorch)"
            raise ConfigError(f"device '{spec}' was asked for, but this machine has {have}; use --device cpu or auto")
    if spec == "mps" and not _mps_available():
        raise ConfigError("device 'mps' was asked for, but MPS is not available here; use --device cpu or auto")
    return torch.device(spec)


def cuda_count() -> int:
    """Visible CUDA devices, counted without initialising CUDA in this process."""
    return torch.cuda.device_count() if torch.backends.cuda.is_built() else 0


def worker_gpus(spec: str, workers: int) -> list[str]:
    """The GPU each of several local workers is pinned to, in turn (empty: no pinning).

    With ``auto`` or ``cuda`` and more than one visible GPU, worker ``i`` sees only GPU
    ``i mod n`` (through ``CUDA_VISIBLE_DEVICES``), so N workers spread over the GPUs; a
    named ``cuda:N`` keeps every worker on that GPU.
    """
    if workers <= 1 or spec not in ("auto", "cuda"):
        return []
    count = cuda_count()
    if count <= 1:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else [str(i) for i in range(count)]
    return ids[:count]


def device_name(device: torch.device) -> str:
    """What a result row records: the device type, with the GPU's model for CUDA."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def set_deterministic(device: torch.device) -> None:
    """Flags that make a seeded run repeat its numbers on ``device``'s type.

    On CUDA: cuDNN picks deterministic kernels and no benchmarking, cuBLAS gets a fixed
    workspace (``CUBLAS_WORKSPACE_CONFIG``), and PyTorch warns where an operation has no
    deterministic implementation (``index_add_`` and scatter reductions are the usual
    ones) instead of failing. On the CPU, seeded runs are already deterministic.
    """
    if device.type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


def tasks_to(data: dict[str, PreparedTask], device: torch.device) -> dict[str, PreparedTask]:
    """Prepared tasks whose training and validation splits live on ``device``.

    A tensor several tasks share (tasks on the same inputs) is moved once and stays shared,
    so the engine still sees which tasks can share a forward pass. Test splits stay where
    they are: evaluation moves them batch by batch.
    """
    moved: dict[int, torch.Tensor] = {}

    def to(t: torch.Tensor) -> torch.Tensor:
        if t.device == device:
            return t
        if id(t) not in moved:
            moved[id(t)] = t.to(device)
        return moved[id(t)]

    out = {}
    for name, task in data.items():
        train, val = task.train, task.val
        out[name] = replace(task, train=Split(to(train.x), to(train.y)), val=Split(to(val.x), to(val.y)))
    return out


def module_device(model: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU for one with neither)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def autocast(device: torch.device, precision: str):
    """The context a forward pass runs in: ``torch.autocast`` for mixed precision, else nothing."""
    if precision == "32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16-mixed" else torch.float16)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A loss scaler for ``16-mixed`` (float16 gradients underflow without one); None otherwise."""
    if precision != "16-mixed":
        return None
    return torch.amp.GradScaler(device.type)
