"""The contract every task-balancing method follows.

A method sees the per-task gradients ``grads`` (Tensor ``[T, D]``: one row per task, on
the shared parameters or on the shared representation) and the task losses
(Tensor ``[T]``), and returns the combined gradient (Tensor ``[D]``) that the optimizer
applies, together with the *effective task weights*: the ``w`` with
``combined = w @ grads`` when the method's output is such a combination of the raw task
gradients (``None`` when it is not). One convention for all methods, so logged
weights mean the same thing everywhere.

State (running averages, learned logits, a random generator) lives in the object.
Randomness comes only from the object's own generator, seeded at construction, so a
run is reproducible whatever else uses Python's or torch's global generators.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from polytask.core.registry import Registry

WEIGHTINGS: Registry[type] = Registry("weighting method")


def register_weighting(name: str):
    """Class decorator registering a :class:`Weighting` subclass as ``name``."""
    return WEIGHTINGS.register_class(name)


class Weighting:
    """Base class of task-balancing methods.

    Subclasses take their hyperparameters as keyword arguments with the paper's
    defaults, store them unchanged, and implement :meth:`combine`. Loss-weighting
    methods, whose output depends on the losses only, set ``requires_grads = False`` and
    implement :meth:`weights`; their :meth:`combine` is ``weights(losses) @ grads``, and an
    engine may apply the weights to the losses instead and skip per-task gradients.

    Args:
        n_tasks: number of tasks ``T``.
        seed: seed of the method's own random generator.
    """

    name = "base"
    requires_grads = True
    # True for methods defined on gradients of the shared representation (MGDA-UB):
    # the engine then takes every task's gradient on one shared batch of inputs.
    representation_only = False

    def __init__(self, n_tasks: int, seed: int = 0, **hparams: Any):
        if n_tasks < 1:
            raise ValueError(f"n_tasks must be at least 1, got {n_tasks}")
        if hparams:
            raise TypeError(f"{self.name}: unknown hyperparameter(s) {sorted(hparams)}")
        self.n_tasks = n_tasks
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.last_weights: Tensor | None = None

    def to(self, device: torch.device | str) -> Weighting:
        """Move the method's tensor state to ``device``, where the model trains. Its random
        generator stays on the CPU (draws are moved), so a seed gives the same draws on
        every device."""
        for key, value in vars(self).items():
            if isinstance(value, Tensor):
                setattr(self, key, value.to(device))
        return self

    def weights(self, losses: Tensor) -> Tensor:
        """Task weights from the losses alone (loss-weighting methods)."""
        raise TypeError(f"{self.name} is a gradient method: call combine(grads, losses)")

    def combine(self, grads: Tensor, losses: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Combined gradient ``[D]`` and effective task weights ``[T]`` (or ``None``)."""
        w = self.weights(self._losses(losses, grads))
        return w @ grads, w

    def after_step(self, losses: Tensor) -> None:
        """Called with the task losses after the optimizer step (methods that learn from it)."""

    def on_epoch_end(self) -> None:
        """Called once per epoch (methods that use epoch-level loss averages)."""

    def _losses(self, losses: Tensor | None, grads: Tensor) -> Tensor:
        if losses is None:
            raise ValueError(f"{self.name} needs the task losses: combine(grads, losses)")
        if losses.shape != (grads.shape[0],):
            raise ValueError(f"{self.name}: losses must have shape [{grads.shape[0]}], got {tuple(losses.shape)}")
        return losses.detach().to(grads.dtype)


def task_vector(value, n_tasks: int, method: str, field: str) -> Tensor | None:
    """A per-task hyperparameter as a float64 ``[T]`` tensor (``None`` stays ``None``)."""
    if value is None:
        return None
    vec = torch.as_tensor(value, dtype=torch.float64)
    if vec.shape != (n_tasks,):
        raise ValueError(f"{method}: {field} must have shape [{n_tasks}], got {tuple(vec.shape)}")
    return vec


def create(name: str, n_tasks: int, **hparams: Any) -> Weighting:
    """A fresh instance of the registered method ``name`` for ``n_tasks`` tasks.

    Example:
        >>> import torch
        >>> m = create("ew", n_tasks=2)
        >>> g, w = m.combine(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        >>> g.tolist(), w.tolist()
        ([1.0, 1.0], [1.0, 1.0])
    """
    return WEIGHTINGS.get_item(name)(n_tasks, **hparams)


def weighting_names() -> list[str]:
    """Registered method names."""
    return WEIGHTINGS.names()


def uses_rep_grad(name: str, rep_grad: bool = False) -> bool:
    """Whether method ``name`` balances gradients of the shared representation: always for
    representation-only methods (``mgda-ub``), else when ``rep_grad`` asks for it."""
    return rep_grad or WEIGHTINGS.get_item(name).representation_only
