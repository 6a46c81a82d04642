"""The contract every weighting method honours, as checks a user's own method can run.

Like scikit-learn's ``check_estimator``: register a method, then

    >>> from polytask.methods.weighting.testing import check_weighting
    >>> check_weighting("pcgrad")  # raises AssertionError naming the broken check

The polytask suite runs the same checks over every registered method
(``tests/weighting/test_conformance.py``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from polytask.methods.weighting.base import Weighting, create

# A method under test: its registered name, or a factory ``make(n_tasks, seed) -> Weighting``.
Factory = Callable[[int, int], Weighting]


def _factory(method: str | Factory) -> Factory:
    return (lambda n, seed: create(method, n, seed=seed)) if isinstance(method, str) else method


def _case(t: int, d: int = 17, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    grads = torch.randn(t, d, generator=g, dtype=torch.float64)
    losses = torch.rand(t, generator=g, dtype=torch.float64) + 0.5
    return grads, losses


def _run(method: Weighting, grads: torch.Tensor, losses: torch.Tensor, steps: int = 3):
    """A few steps as the engine takes them: combine, then the losses after the step."""
    out = None
    for k in range(steps):
        out = method.combine(grads, losses * (1.0 - 0.1 * k))
        method.after_step(losses * (1.0 - 0.1 * k - 0.05))
    method.on_epoch_end()
    return out


def _valid(grads: torch.Tensor, combined: torch.Tensor, w: torch.Tensor | None, what: str) -> None:
    assert combined.shape == (grads.shape[1],), f"{what}: combined has shape {tuple(combined.shape)}, expected ({grads.shape[1]},)"
    assert torch.isfinite(combined).all(), f"{what}: combined gradient is not finite"
    if w is not None:
        assert w.shape == (grads.shape[0],) and torch.isfinite(w).all(), f"{what}: weights must be finite, of shape ({grads.shape[0]},)"
        # The one convention: effective weights on the raw task gradients.
        torch.testing.assert_close(w.to(grads.dtype) @ grads, combined, rtol=1e-4, atol=1e-6, msg=f"{what}: combined != weights @ grads")


def check_weight_convention(method: str | Factory, n_tasks: int = 3) -> None:
    """Finite results; returned weights are the effective weights (``combined == weights @ grads``)."""
    grads, losses = _case(n_tasks)
    _valid(grads, *_run(_factory(method)(n_tasks, 0), grads, losses), f"{n_tasks} tasks")


def check_zero_gradient_row(method: str | Factory) -> None:
    """A task whose gradient is exactly zero breaks nothing."""
    grads, losses = _case(3)
    grads[1] = 0
    _valid(grads, *_run(_factory(method)(3, 0), grads, losses), "a zero gradient row")


def check_single_task(method: str | Factory) -> None:
    """One task has nothing to balance: the update points along its own gradient."""
    grads, losses = _case(1)
    combined, w = _run(_factory(method)(1, 0), grads, losses)
    _valid(grads, combined, w, "one task")
    assert torch.nn.functional.cosine_similarity(combined, grads[0], dim=0) > 0.99, "one task: the update does not follow its gradient"


def check_identical_gradients(method: str | Factory) -> None:
    """Tasks that agree exactly get an update along their common gradient."""
    grads, losses = _case(1)
    grads = grads.repeat(4, 1)
    combined, w = _run(_factory(method)(4, 0), grads, losses.repeat(4))
    _valid(grads, combined, w, "identical gradients")
    assert torch.nn.functional.cosine_similarity(combined, grads[0], dim=0) > 0.99, "identical gradients: the update leaves their direction"


def check_seeded(method: str | Factory) -> None:
    """The same seed gives the same result, whatever the global random state."""
    grads, losses = _case(3)
    a = _run(_factory(method)(3, 5), grads, losses)
    torch.manual_seed(123)
    random.seed(99)
    b = _run(_factory(method)(3, 5), grads, losses)
    torch.testing.assert_close(a[0], b[0], msg="the same seed gave another result after the global random state changed")


def check_stays_on_the_inputs_device(method: str | Factory) -> None:
    """Every tensor the method makes follows the gradients' device (and ``to(device)``
    moves its state), so it runs where the model trains.

    Checked without a GPU: inside ``torch.device("meta")`` a tensor created without an
    explicit device lands on the meta device, and its results would too.
    """
    grads, losses = _case(3)
    expected = _run(_factory(method)(3, 0), grads, losses)
    m = _factory(method)(3, 0).to(grads.device)
    with torch.device("meta"):
        try:
            got = _run(m, grads, losses)
        except (NotImplementedError, RuntimeError, TypeError) as e:  # a meta tensor reached .item(), numpy or a kernel
            raise AssertionError(f"a tensor was created off the gradients' device ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    for a, b, what in ((got[0], expected[0], "combined gradient"), (got[1], expected[1], "weights")):
        if b is not None:
            assert a.device == grads.device, f"the {what} is on {a.device}, not on the gradients' device {grads.device}"
            torch.testing.assert_close(a, b, msg=f"the {what} changed when made on the gradients' device")


CHECKS = (check_weight_convention, check_zero_gradient_row, check_single_task, check_identical_gradients, check_seeded, check_stays_on_the_inputs_device)


def check_weighting(method: str | Factory) -> None:
    """Run every check of the contract (with 2, 3 and 8 tasks for the weight convention).

    Raises:
        AssertionError: naming the check that failed and what it saw.
    """
    for n in (2, 3, 8):
        check_weight_convention(method, n)
    for check in CHECKS[1:]:
        check(method)
