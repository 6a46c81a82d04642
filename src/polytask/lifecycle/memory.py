"""What a model directory keeps of its data for later updates (``memory.safetensors``).

Per task, as the model reads them (inputs after the saved preprocessing, targets encoded):

- ``train``: a seeded sample of at most :data:`REHEARSAL_ROWS` training rows, which the
  ``rehearsal`` guard trains on again and ``ewc`` measures the Fisher information on;
- ``gate``: rows no version of the model has trained on, which the regression gate judges
  every update on: the validation rows of ``polytask train`` (used to choose its epoch,
  never to fit it; that choice favours the current model, which makes the gate stricter),
  then each accepted update's gate split of its new rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from polytask.core.errors import ConfigError
from polytask.core.io import write_atomic

MEMORY, REHEARSAL_ROWS = "memory.safetensors", 1000


@dataclass
class Rows:
    """Model inputs and encoded targets of some rows of one task."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def take(self, rows: np.ndarray) -> Rows:
        index = torch.as_tensor(rows, dtype=torch.long)
        return Rows(self.x[index], self.y[index])

    def plus(self, other: Rows, pad_id: int = 0) -> Rows:
        """These rows, then ``other``'s (token ids padded to the wider of the two)."""
        a, b = self.x, other.x
        if a.ndim == 2 and not a.is_floating_point() and a.shape[1] != b.shape[1]:
            width = max(a.shape[1], b.shape[1])
            a, b = (torch.nn.functional.pad(t, (0, width - t.shape[1]), value=pad_id) for t in (a, b))
        return Rows(torch.cat([a, b]), torch.cat([self.y, other.y]))


@dataclass
class Memory:
    """Per task, the kept training sample and gate rows."""

    train: dict[str, Rows]
    gate: dict[str, Rows]

    def save(self, folder: Path) -> None:
        tensors = {}
        for part, rows in (("train", self.train), ("gate", self.gate)):
            for task, r in rows.items():
                tensors[f"{task}/{part}/x"] = r.x.detach().cpu().contiguous()
                tensors[f"{task}/{part}/y"] = r.y.detach().cpu().contiguous()
        write_atomic(Path(folder) / MEMORY, save_safetensors(tensors))

    @classmethod
    def read(cls, folder: Path) -> Memory:
        path = Path(folder) / MEMORY
        if not path.is_file():
            raise ConfigError(f"{folder}: no {MEMORY} (the rows updates are judged on); train the model again with this version")
        tensors = load_safetensors(path.read_bytes())
        out: Memory = cls({}, {})
        for key in tensors:
            task, part, what = key.rsplit("/", 2)
            if what == "x":
                getattr(out, part)[task] = Rows(tensors[key], tensors[f"{task}/{part}/y"])
        return out


def sample(n: int, seed: int, rows: int = REHEARSAL_ROWS) -> np.ndarray:
    """Which of ``n`` rows a bounded sample keeps (seeded, in order)."""
    return np.sort(np.random.default_rng([seed, 7]).choice(n, min(n, rows), replace=False))
