"""Multi-task loss weighting and gradient methods: one registry, one functional API.

Use in your own loop::

    from polytask import weighting
    method = weighting.create("pcgrad", n_tasks=3, seed=0)
    combined, weights = method.combine(grads, losses)   # grads: [T, D], losses: [T]

Every module in this package registers its methods on import.
"""

import importlib
import pkgutil

from polytask.methods.weighting.base import WEIGHTINGS, Weighting, create, register_weighting, uses_rep_grad, weighting_names

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["WEIGHTINGS", "Weighting", "create", "register_weighting", "uses_rep_grad", "weighting_names"]
