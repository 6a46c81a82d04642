"""polytask: train from scratch, transfer, or train one multi-task model? Measure it.

Quick use::

    from polytask import Study
    summary = Study.from_yaml("examples/mnist-to-digits.yaml").run(out="runs/demo")
"""

from polytask._version import __version__
from polytask.api import Study
from polytask.config import StudyConfig, load_config
from polytask.data import TaskData
from polytask.errors import ConfigError

__all__ = ["ConfigError", "Study", "StudyConfig", "TaskData", "__version__", "load_config"]
