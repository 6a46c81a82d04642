"""``lwf``: Learning without Forgetting (Li & Hoiem, TPAMI 2017), distillation of the
start model's old-task heads into the fine-tuned model."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from polytask.core.errors import ConfigError
from polytask.methods.finetuning.regularizers.base import Penalty, _check_nonnegative, _check_positive, _reference_of, register_regularizer

__all__ = ["LwF", "distillation_loss"]


def distillation_loss(z_old: torch.Tensor, z_new: torch.Tensor, temperature: float) -> torch.Tensor:
    """LwF's modified cross-entropy (Eqs. 2-3) of one old task over a batch:
    ``mean_n [ −Σ_i softmax(z_old/T)_i · log softmax(z_new/T)_i ]``; a one-output head is a
    binary logit ``z``, read as the two logits ``[0, z]``."""

    def logits(z: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(z), z], dim=1) if z.shape[1] == 1 else z

    soft_targets = F.softmax(logits(z_old) / temperature, dim=1)
    return -(soft_targets * F.log_softmax(logits(z_new) / temperature, dim=1)).sum(1).mean()


@register_regularizer("lwf")
class LwF(Penalty):
    """Learning without Forgetting (Li & Hoiem, TPAMI 2017), Eqs. 2-3:

    ``L_old = λ · Σ_t mean_n [ −Σ_i y'_ti · log ŷ'_ti ]``,
    ``y' = softmax(z_old / T)``, ``ŷ' = softmax(z_new / T)``

    — the paper's modified cross-entropy (``y_i^{1/T} / Σ_j y_j^{1/T}`` of softmax outputs
    is ``softmax(z / T)``). It equals ``KL(y' || ŷ')`` plus the targets' entropy, a
    constant, so the gradients are those of the KL form.

    - ``z_old``: the old task ``t``'s head in the frozen start model on the current batch
      (the paper records these before training; the start is frozen and in eval mode, so
      computing them on the fly gives the same values).
    - ``z_new``: a copy of that old head applied to the trained backbone's features
      (captured by the attach hook). The fine-tuned model has no old heads, so the penalty
      owns them (``self.old_heads``); as in the paper they train jointly with the new task
      unless ``train_old_heads`` is False. Add :meth:`trainable_parameters` to the
      optimizer.
    - A one-output head is a binary logit ``z``, read as the two logits ``[0, z]``
      (``softmax([0, z] / T)`` is ``[1 − σ(z/T), σ(z/T)]``). Regression heads have no
      class distribution: leave them out with ``tasks``.

    Args:
        start: the pretrained model with ``backbone`` and ``heads`` of the old tasks,
            callable as ``start.heads[t](start.backbone(x))``.
        lam: weight λ_o of the old-task loss (default 1).
        temperature: T (default 2).
        tasks: old tasks to preserve (default: every head of ``start``).
        train_old_heads: train the copied old heads (True, the paper) or keep them fixed.
    """

    uses_features = True

    def __init__(
        self,
        start: nn.Module | None,
        lam: float = 1.0,
        temperature: float = 2.0,
        tasks: Sequence[str] | None = None,
        train_old_heads: bool = True,
    ):
        _check_nonnegative(lam=lam)
        _check_positive(temperature=temperature)
        _reference_of(start, "lwf")
        heads = getattr(start, "heads", None)
        if not isinstance(heads, nn.ModuleDict) or len(heads) == 0:
            raise ConfigError("'lwf' needs the start model's old-task `heads` (a non-empty nn.ModuleDict)")
        tasks = list(heads) if tasks is None else list(tasks)
        unknown = [t for t in tasks if t not in heads]
        if not tasks or unknown:
            raise ConfigError(f"'lwf': tasks {unknown or tasks} are not old tasks of the start model (heads: {', '.join(heads)})")
        super().__init__(start)
        self.lam, self.temperature, self.tasks, self.train_old_heads = lam, temperature, tasks, train_old_heads
        self.old_heads = nn.ModuleDict({t: copy.deepcopy(heads[t]) for t in tasks})
        self.old_heads.requires_grad_(bool(train_old_heads))

    def forward(self, model: nn.Module, x: torch.Tensor, task: str, y: torch.Tensor | None = None) -> torch.Tensor:
        features = self.features(x)[-1]
        with torch.no_grad():
            start_features = self.start.backbone(x)
        total = x.new_zeros(())
        for t in self.tasks:
            total = total + distillation_loss(self.start.heads[t](start_features), self.old_heads[t](features), self.temperature)
        return self.lam * total
