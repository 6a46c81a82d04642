"""Static weights against the formula: combined = sum_t w_t g_t."""

from __future__ import annotations

import pytest
import torch

from polytask.methods.weighting import create


def test_static_weights_scale_each_task_gradient():
    grads = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)
    combined, weights = create("static", 2, weights=[2.0, 0.5]).combine(grads, torch.ones(2, dtype=torch.float64))
    assert combined.tolist() == [2.0 + 1.5, 4.0 - 0.5] and weights.tolist() == [2.0, 0.5]
    assert create("static", 2).combine(grads, torch.ones(2, dtype=torch.float64))[0].tolist() == [4.0, 1.0]  # default: equal


@pytest.mark.parametrize("bad", [[1.0], [1.0, -1.0], [float("nan"), 1.0]])
def test_static_weights_are_checked(bad):
    with pytest.raises(ValueError, match="static"):
        create("static", 2, weights=bad)
