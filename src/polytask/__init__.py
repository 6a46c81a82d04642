"""polytask: train from scratch, transfer, or train one multi-task model? Measure it.

Quick use::

    from polytask import Study
    summary = Study.from_yaml("examples/mnist-to-digits.yaml").run(out="runs/demo")
"""

from polytask.config import StudyConfig, load_config
from polytask.data import TaskData
from polytask.errors import ConfigError
from polytask.study import Study

__version__ = "0.1.0"

__all__ = ["ConfigError", "Study", "StudyConfig", "TaskData", "__version__", "load_config"]
