"""Named registries for backbones, strategies and datasets.

Like timm's ``register_model``, but stricter: registering a name twice raises, and
asking for an unknown name raises a one-line error listing the known ones.
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

from polytask.core.errors import ConfigError

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """A ``name -> item`` mapping of one ``kind`` (used in messages)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        # name -> what was said about the item when it was registered (``register(name, **info)``)
        self.info: dict[str, dict] = {}

    def register(self, name: str, **info) -> Callable[[T], T]:
        """Decorator adding the decorated item under ``name``, with ``info`` kept in
        :attr:`info` (e.g. which config sections a backbone reads)."""

        def wrap(item: T) -> T:
            if name in self:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self[name] = item
            self.info[name] = dict(info)
            return item

        return wrap

    def register_class(self, name: str) -> Callable[[type], type]:
        """Class decorator: register the class as ``name`` and set its ``name`` attribute,
        so instances know what they are called (messages, logs)."""
        add = self.register(name)

        def wrap(cls: type) -> type:
            cls.name = name
            return add(cls)

        return wrap

    def get_item(self, name: str) -> T:
        """The item registered as ``name``."""
        if name not in self:
            raise ConfigError(f"unknown {self.kind} '{name}' (known: {', '.join(self.names())})")
        return self[name]

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self)

    def list(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style ``pattern`` (``"mtl*"``, ``"*grad"``), in
        registration order, like timm's ``list_models``."""
        return [n for n in self if fnmatch.fnmatchcase(n, pattern)]


def import_modules(package: str, path: Iterable[str], first: Sequence[str] = ()) -> list[str]:
    """Import every module of a package, so that each registers what it defines.

    Args:
        package: the package's name (``__name__`` in its ``__init__``).
        path: its folder(s) (``__path__``).
        first: modules imported first, in this order: the order the shipped methods'
            names are listed in. Every other module in the folder follows, sorted, so a
            new method file registers itself without any other change.

    Returns:
        The module names, in the order imported.
    """
    found = sorted(m.name for m in pkgutil.iter_modules(list(path)) if not m.name.startswith("_"))
    names = [*first, *(n for n in found if n not in first)]
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names
