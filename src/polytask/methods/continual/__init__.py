"""Keeping old tasks while a model learns new data: the forgetting guards of ``polytask update``.

- ``rehearsal``: old training rows (a bounded sample kept with the model) are trained on
  again beside the new ones (experience replay; Chaudhry et al. 2019, "On Tiny Episodic
  Memories in Continual Learning"). A data choice: no penalty.
- ``lwf``: :class:`SelfDistillation`, Learning without Forgetting (Li & Hoiem, TPAMI 2017)
  for a model that keeps its old heads.
- ``ewc``: :class:`EWC`, Elastic Weight Consolidation (Kirkpatrick et al., PNAS 2017).
"""

from polytask.methods.continual.distill import SelfDistillation
from polytask.methods.continual.ewc import EWC, fisher_diagonal

GUARDS = ("rehearsal", "lwf", "ewc")

__all__ = ["EWC", "GUARDS", "SelfDistillation", "fisher_diagonal"]
