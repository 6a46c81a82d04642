"""Names of a package imported when first used (PEP 562), so that importing the package
(``import polytask``, the command line's ``--help``) does not load PyTorch."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_attributes(package: str, namespace: dict[str, Any], table: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose names load on first use.

    Args:
        package: the package's name (its ``__name__``), for messages.
        namespace: its ``globals()``: a loaded name is kept there, so it loads once.
        table: ``name -> module``. The name is the module's attribute of that name, or the
            module itself when the module's last dotted part is the name
            (``"weighting": "polytask.methods.weighting"``).
    """

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module '{package}' has no attribute {name!r}")
        module = importlib.import_module(table[name])
        value = module if table[name].rpartition(".")[2] == name else getattr(module, name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *table})

    return __getattr__, __dir__
