"""``lwf`` for a model that keeps its old heads: Learning without Forgetting (Li & Hoiem,
TPAMI 2017) distilled through the model's own heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from polytask.core.errors import ConfigError
from polytask.methods.finetuning.regularizers.base import Penalty, _check_nonnegative, _check_positive
from polytask.methods.finetuning.regularizers.lwf import distillation_loss


class SelfDistillation(Penalty):
    """Learning without Forgetting, Eqs. 2-3, with the trained model's own old heads:

    ``L_old = λ · Σ_t mean_n [ −Σ_i softmax(z_old/T)_i · log softmax(z_new/T)_i ]``

    where ``z_old = start.heads[t](start.backbone(x))`` (the model before the update, frozen)
    and ``z_new = model.heads[t](h)`` with ``h`` the trained backbone's features of the same
    batch ``x`` of new inputs (captured by the attach hook, no second forward). A one-output
    head is a binary logit ``z``, read as the logits ``[0, z]``. A regression head has no
    class distribution; its outputs are held with the squared error
    ``λ · mean_n ||z_new − z_old||²`` (both in standardized units).

    Args:
        start: the model before the update (``backbone`` and ``heads``).
        tasks: the old tasks whose outputs are kept (heads of ``start``).
        regression: those of ``tasks`` that are regressions.
        lam: λ (default 1).
        temperature: T (default 2, as in the paper).
    """

    uses_features = True

    def __init__(self, start: nn.Module, tasks: Sequence[str], regression: Sequence[str] = (), lam: float = 1.0, temperature: float = 2.0):
        _check_nonnegative(lam=lam)
        _check_positive(temperature=temperature)
        heads = getattr(start, "heads", None)
        unknown = [t for t in tasks if heads is None or t not in heads]
        if not tasks or unknown:
            raise ConfigError(f"'lwf': tasks {unknown or list(tasks)} are not heads of the model being updated")
        super().__init__(start)
        self.tasks, self.regression, self.lam, self.temperature = list(tasks), set(regression), lam, temperature

    def forward(self, model: nn.Module, x: torch.Tensor, task: str, y: torch.Tensor | None = None) -> torch.Tensor:
        features = self.features(x)[-1]
        with torch.no_grad():
            old_features = self.start.backbone(x)
        total = x.new_zeros(())
        for t in self.tasks:
            z_old, z_new = self.start.heads[t](old_features), model.heads[t](features)
            if t in self.regression:
                total = total + (z_new - z_old).pow(2).sum(1).mean()
            else:
                total = total + distillation_loss(z_old, z_new, self.temperature)
        return self.lam * total
