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

from polytask._version import __version__
from polytask.errors import ConfigError

if TYPE_CHECKING:
    from polytask.api import Study
    from polytask.config import StudyConfig
    from polytask.data import TaskData
    from polytask.study.resolve import load_config

# name -> the module that defines it
_LAZY = {"Study": "polytask.api", "StudyConfig": "polytask.config", "TaskData": "polytask.data", "load_config": "polytask.study.resolve"}

__all__ = ["ConfigError", "Study", "StudyConfig", "TaskData", "__version__", "load_config"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'polytask' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
