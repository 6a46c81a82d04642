"""Modules that moved when the package took its layered layout, importable by their old
names: ``import polytask.weighting`` gives :mod:`polytask.methods.weighting` itself (the
same module object, so one registry), and so on for the entries of :data:`MOVED`."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

# old name -> new name; a package's submodules follow it (polytask.weighting.testing too).
MOVED = {
    "polytask.weighting": "polytask.methods.weighting",
    "polytask.errors": "polytask.core.errors",
    "polytask.registry": "polytask.core.registry",
    "polytask.metrics": "polytask.core.metrics",
    "polytask.tasks": "polytask.core.tasks",
    "polytask.engine": "polytask.training.engine",
    "polytask.taskgrads": "polytask.training.taskgrads",
    "polytask.sampling": "polytask.training.sampling",
    "polytask.comparison": "polytask.insights.comparison",
    "polytask.analysis": "polytask.insights.analysis",
    "polytask.relate": "polytask.insights.relate",
    "polytask.transfer.adapt": "polytask.methods.adaptation",
    "polytask.transfer.validators": "polytask.methods.adaptation.validators",
    "polytask.transfer.regularizers": "polytask.methods.finetuning.regularizers",
    "polytask.transfer.recipes": "polytask.methods.finetuning.recipes",
    "polytask.transfer.lora": "polytask.methods.finetuning.lora",
    "polytask.transfer.transferability": "polytask.methods.transferability",
}
# Old packages that now hold nothing but moved modules.
EMPTY = {"polytask.transfer"}


def new_name(name: str) -> str | None:
    """Where module ``name`` lives now, or None when it did not move."""
    for old, new in MOVED.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old) :]
    return None


class MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an old name with the module under its new one."""

    def find_spec(self, name, path=None, target=None):
        if name in EMPTY or new_name(name):
            return importlib.util.spec_from_loader(name, self, is_package=name in EMPTY)
        return None

    def create_module(self, spec):
        if spec.name in EMPTY:
            return types.ModuleType(spec.name, "Moved modules; see polytask._moved.")
        return importlib.import_module(new_name(spec.name))

    def exec_module(self, module):
        pass


def install() -> None:
    """Put the finder first, so an old name never loads a second copy of a moved file."""
    if not any(isinstance(f, MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedFinder())
