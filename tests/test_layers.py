"""The import contract: each layer imports only the layers before it, and no module takes
part in an import cycle. Imports inside functions count: one that only dodges a cycle is
the cycle."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from polytask import _moved

SRC = Path(__file__).resolve().parents[1] / "src" / "polytask"

# Lowest first. A module belongs to the first layer with a prefix of its name; it may import
# its own layer and the ones listed before it.
LAYERS = [
    ("core", ["polytask._version", "polytask.core"]),
    ("config", ["polytask.config"]),
    ("methods", ["polytask.methods"]),
    ("data", ["polytask.data"]),
    ("training", ["polytask.training"]),
    ("strategies", ["polytask.strategies"]),
    ("study", ["polytask.study"]),
    ("insights", ["polytask.insights"]),
    ("lifecycle", ["polytask.lifecycle"]),
    ("report", ["polytask.report"]),
    # A study folder's answer (the analysis, then the report) and the study users run.
    ("api", ["polytask.finalize", "polytask.api", "polytask"]),
    ("cli", ["polytask.cli", "polytask.__main__"]),
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module an imported name lives in (``polytask.a.b`` for ``from polytask.a import b``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> dict[str, int]:
    """polytask modules ``module`` imports, anywhere in it, with a line of each."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("polytask"):
            names = [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("polytask")]
        for n in names:
            target = _owner(n)
            if target and target != module and not module.startswith(target + "."):  # a package's own __init__ is no edge
                found.setdefault(target, node.lineno)
    return found


def _layer(module: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    assert rank is not None, f"module {module} is in no layer of the contract"
    return rank


GRAPH = {m: _imports(m) for m in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_layer_and_the_ones_below(module):
    upward = [
        f"{module}:{line} imports {target} ({LAYERS[_layer(target)][0]} is above {LAYERS[_layer(module)][0]})"
        for target, line in GRAPH[module].items()
        if _layer(target) > _layer(module)
    ]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("polytask.methods")))
def test_a_method_knows_no_config(module):
    # Methods are plain PyTorch with keyword options: usable without a study, and a new
    # config section never reaches into them.
    assert not [t for t in GRAPH[module] if t.startswith("polytask.config")]


def test_no_import_cycle():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_an_upward_import_and_a_cycle(monkeypatch):
    # The contract must be able to fail: a config that imports a strategy, and that strategy's
    # import of config, are caught.
    monkeypatch.setitem(GRAPH, "polytask.config", {**GRAPH["polytask.config"], "polytask.strategies.base": 1})
    with pytest.raises(AssertionError, match="polytask.config:1 imports polytask.strategies.base"):
        test_a_module_imports_only_its_layer_and_the_ones_below("polytask.config")
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycle()


@pytest.mark.parametrize("code", ["import polytask.config", "import polytask.cli", "import polytask.core.tasks, polytask.data.arrays, polytask.data.builtin"])
def test_the_schema_and_the_command_line_load_no_torch(code):
    # --help and --version answer at once; PyTorch loads when a command needs it.
    out = subprocess.run([sys.executable, "-c", f"{code}; import sys; print('torch' in sys.modules)"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_a_moved_module_answers_to_its_old_name_with_the_same_module(old):
    # The README's component paths from before the layered layout keep working, and an old
    # name never loads a second copy (a second weighting registry would miss registrations).
    assert importlib.import_module(old) is importlib.import_module(_moved.MOVED[old])


def test_old_submodule_paths_and_the_package_attribute_still_work():
    from polytask.weighting.testing import check_weighting as old

    from polytask import weighting
    from polytask.methods.weighting.testing import check_weighting

    assert old is check_weighting and weighting.create is importlib.import_module("polytask.weighting").create


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["datasets"]])
def test_help_version_and_datasets_answer_without_torch(args):
    code = (
        "import sys\n"
        "from polytask.cli import app\n"
        f"try:\n    app({args!r})\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
