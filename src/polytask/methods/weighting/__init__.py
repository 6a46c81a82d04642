"""Multi-task loss weighting and gradient methods: one registry, one functional API.

Use in your own loop::

    from polytask import weighting
    method = weighting.create("pcgrad", n_tasks=3, seed=0)
    combined, weights = method.combine(grads, losses)   # grads: [T, D], losses: [T]

Every module in this package registers its methods on import.
"""

from polytask.core.registry import import_modules
from polytask.methods.weighting.base import WEIGHTINGS, Weighting, create, register_weighting, uses_rep_grad, weighting_names

# Sorted by file name: that is the order the methods are listed in.
import_modules(__name__, __path__)

__all__ = ["WEIGHTINGS", "Weighting", "create", "register_weighting", "uses_rep_grad", "weighting_names"]
