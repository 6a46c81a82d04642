"""Registries: one registration idiom, per-name info, and packages that import every method
file they hold (a new method is one new file)."""

from __future__ import annotations

import importlib
import sys

import pytest

from polytask.core.errors import ConfigError
from polytask.core.registry import Registry


def test_register_keeps_info_and_refuses_a_second_name():
    r: Registry = Registry("thing")
    r.register("a", options=("x",))(len)
    assert r["a"] is len and r.info["a"] == {"options": ("x",)}
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        r.register("a")(len)
    with pytest.raises(ConfigError, match=r"unknown thing 'b' \(known: a\)"):
        r.get_item("b")


def test_a_package_imports_its_listed_modules_first_then_any_new_file(tmp_path, monkeypatch):
    pkg = tmp_path / "plugins_demo"
    pkg.mkdir()
    (pkg / "registry.py").write_text("from polytask.core.registry import Registry\nTHINGS = Registry('thing')\n")
    for name in ("zeta", "alpha", "new_one"):
        (pkg / f"{name}.py").write_text(f"from plugins_demo.registry import THINGS\nTHINGS.register('{name}')(object)\n")
    (pkg / "_private.py").write_text("raise AssertionError('private modules are not imported')\n")
    (pkg / "__init__.py").write_text(
        "from polytask.core.registry import import_modules\nORDER = import_modules(__name__, __path__, first=('zeta', 'alpha'))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        mod = importlib.import_module("plugins_demo")
        things = importlib.import_module("plugins_demo.registry").THINGS
        # The listed ones keep their order; the file nobody listed registers itself after them.
        assert things.names() == ["zeta", "alpha", "new_one"]
        assert mod.ORDER == ["zeta", "alpha", "new_one", "registry"]
    finally:
        for name in [m for m in sys.modules if m.startswith("plugins_demo")]:
            del sys.modules[name]
