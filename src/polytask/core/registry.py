"""Named registries for backbones, strategies and datasets.

Like timm's ``register_model``, but stricter: registering a name twice raises, and
asking for an unknown name raises a one-line error listing the known ones.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
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
