"""polytask: train from scratch, transfer, or train one multi-task model? Measure it.

Quick use::

    from polytask import Study
    summary = Study.from_yaml("examples/mnist-to-digits.yaml").run(out="runs/demo")
    model = polytask.load("models/digits")  # a model directory from `polytask train`
    labels = model.predict(images)

The names below are imported when first used (PEP 562), so that ``import polytask.config``
and the command line's ``--help`` do not load PyTorch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from polytask import _moved
from polytask._version import __version__
from polytask.core.errors import ConfigError
from polytask.core.lazy import lazy_attributes

_moved.install()

if TYPE_CHECKING:  # for type checkers and editors only: at run time the names load lazily
    from polytask.api import Study
    from polytask.config import StudyConfig
    from polytask.data import TaskData
    from polytask.lifecycle.predictor import SavedModel, load
    from polytask.methods import weighting
    from polytask.study.resolve import load_config

# name -> the module that defines it (``weighting`` is the package of weighting methods)
_LAZY = {
    "Study": "polytask.api",
    "StudyConfig": "polytask.config",
    "TaskData": "polytask.data",
    "load_config": "polytask.study.resolve",
    "load": "polytask.lifecycle.predictor",
    "SavedModel": "polytask.lifecycle.predictor",
    "weighting": "polytask.methods.weighting",
}

__all__ = ["ConfigError", "SavedModel", "Study", "StudyConfig", "TaskData", "__version__", "load", "load_config", "weighting"]

__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)
