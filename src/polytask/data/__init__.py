"""Data: loaders, built-in datasets, splits and per-run preparation.

The names below are imported when first used (PEP 562), so that describing the built-in
datasets (``polytask datasets``) does not load PyTorch, which only preparing tensors needs.
"""

from __future__ import annotations

from polytask.core.lazy import lazy_attributes

# name -> the module that defines it
_LAZY = {
    "PreparedTask": "polytask.data.prepare",
    "Split": "polytask.data.prepare",
    "TaskData": "polytask.data.arrays",
    "builtin_names": "polytask.data.builtin",
    "check_task_data": "polytask.data.arrays",
    "describe_builtins": "polytask.data.builtin",
    "load_builtin": "polytask.data.builtin",
    "make_task_family": "polytask.data.synthetic",
    "prepare_task": "polytask.data.prepare",
    "task_from_datasets": "polytask.data.datasets",
    "write_npz_family": "polytask.data.synthetic",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)
