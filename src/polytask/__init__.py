"""polytask: train from scratch, transfer, or train one multi-task model? Measure it.

Quick use::

    from polytask import Study
    summary = Study.from_yaml("examples/mnist-to-digits.yaml").run(out="runs/demo")

The names below are imported when first used (PEP 562), so that ``import polytask.config``
and the command line's ``--help`` do not load PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from polytask import _moved
from polytask._version import __version__
from polytask.core.errors import ConfigError

_moved.install()

if TYPE_CHECKING:
    from polytask.api import Study
    from polytask.config import StudyConfig
    from polytask.data import TaskData
    from polytask.study.resolve import load_config

# name -> the module that defines it
_LAZY = {"Study": "polytask.api", "StudyConfig": "polytask.config", "TaskData": "polytask.data", "load_config": "polytask.study.resolve"}

__all__ = ["ConfigError", "Study", "StudyConfig", "TaskData", "__version__", "load_config", "weighting"]


def __getattr__(name: str) -> Any:
    if name == "weighting":  # the package of weighting methods, as `from polytask import weighting`
        value = importlib.import_module("polytask.methods.weighting")
        globals()[name] = value
        return value
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'polytask' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
