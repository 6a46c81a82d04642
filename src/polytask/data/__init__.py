"""Data: loaders, built-in datasets, splits and per-run preparation."""

from polytask.data.arrays import TaskData, check_task_data
from polytask.data.builtin import builtin_names, describe_builtins, load_builtin
from polytask.data.prepare import PreparedTask, Split, prepare_task
from polytask.data.synthetic import make_task_family, write_npz_family

__all__ = [
    "PreparedTask",
    "Split",
    "TaskData",
    "builtin_names",
    "check_task_data",
    "describe_builtins",
    "load_builtin",
    "make_task_family",
    "prepare_task",
    "write_npz_family",
]
