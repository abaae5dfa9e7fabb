"""The package's layers, read from its source: imports flow one way, with no cycles.

Every ``import`` in ``simulation/`` (at module level and inside functions) is resolved to the
project module it names. A module may import its own layer and the layers before it in
``LAYERS``, never a later one; the import graph has no cycle at all (a cycle hidden in a
function-level import counts); imports inside functions are only for the heavy optional
dependencies in ``LAZY_ALLOWED``; the engine uses numpy and numba only. A new upward import
fails here with the file, the line and the rule.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "simulation"

#: the layers, bottom first (docs/architecture.md says what each holds)
LAYERS = ("engine", "config", "biology", "model", "io", "analysis", "viz", "execution", "study",
          "commands", "cli")
#: third-party imports allowed inside a function: optional or heavy, each needed by one path
LAZY_ALLOWED = {
    "distributed": "dask.distributed is heavy; only a sweep on a Dask cluster needs it",
    "fcntl": "POSIX only; the folder lock degrades to none elsewhere",
    "pyabc": "pyABC takes seconds to import; only cartsim fit needs it",
}
#: the project imports allowed inside a function, each where a light entry point defers a
#: heavy layer to first use: the package facade's PEP 562 attributes and the command line
LIGHT_ENTRY_LAZY = {
    "simulation": {
        "simulation.config": "pydantic and pandas; `import simulation` must stay light",
        "simulation.model": "the model loads the engine (numba)",
        "simulation.execution.runner": "the runner loads the model and the pool",
        "simulation.study.api": "the result API draws figures (matplotlib)",
        "simulation.study.fit": "the fit API draws figures too (simulation.fit)"},
    "simulation.cli": {
        "simulation.commands": "the commands load the engine (numba: seconds); cartsim, "
                               "--help and --version answer without it"},
}
ENGINE_THIRD_PARTY = {"numpy", "numba"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    """The layer of a project module (``simulation.x.y`` -> ``x``; the package root: 'top')."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "top"
    return parts[1]


def imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, imported module, inside a function) for every import of ``path``."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                # `from . import kernel` imports a module: resolve each name that is one
                for alias in child.names:
                    candidate = f"{target}.{alias.name}"
                    as_module = (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py")
                    is_package = (PACKAGE.parent / Path(*candidate.split("."))).is_dir()
                    found.append((child.lineno, candidate if as_module.exists() or is_package
                                  else target, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def project_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SOURCES:
        graph[module_name(path)] = {target for _, target, _ in imports(path)
                                    if target.split(".")[0] == "simulation"}
    return graph


def test_every_module_is_in_a_layer():
    unknown = {module_name(p) for p in SOURCES} - {
        m for m in map(module_name, SOURCES) if layer(m) in LAYERS + ("top",)}
    assert not unknown, f"modules outside the layers {LAYERS}: {sorted(unknown)}"


def test_imports_only_go_down_the_layers():
    upward = []
    for path in SOURCES:
        source = module_name(path)
        if layer(source) == "top":
            continue  # the package facade and `python -m simulation` may import any layer
        for line, target, _ in imports(path):
            if target.split(".")[0] != "simulation":
                continue
            if target == "simulation" or layer(target) == "top":
                upward.append(f"{path}:{line}: imports the package facade `{target}`")
            elif LAYERS.index(layer(target)) > LAYERS.index(layer(source)):
                upward.append(f"{path}:{line}: {layer(source)} imports {target} "
                              f"({layer(target)} is above it)")
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    graph = project_graph()
    # Tarjan's strongly connected components: any component of more than one module is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            connect(node)
    assert not cycles, f"import cycles: {cycles}"


def test_function_level_imports_are_only_for_heavy_optional_dependencies():
    lazy = [f"{path}:{line}: `{target}` imported inside a function"
            for path in SOURCES for line, target, in_function in imports(path)
            if in_function and target.split(".")[0] not in LAZY_ALLOWED
            and target not in LIGHT_ENTRY_LAZY.get(module_name(path), {})]
    assert not lazy, "\n".join(lazy)


def test_engine_uses_numpy_and_numba_only():
    found = [f"{path}:{line}: {target}"
             for path in SOURCES if layer(module_name(path)) == "engine"
             for line, target, _ in imports(path)
             if target.split(".")[0] not in ENGINE_THIRD_PARTY | {"simulation", "__future__"}
             and target.split(".")[0] not in sys.stdlib_module_names]
    assert not found, "\n".join(found)


def private_uses(path: Path) -> list[str]:
    """``file:line: name`` for each private (``_``-prefixed, not dunder) name ``path`` takes
    from another project module: ``from .m import _name``, or ``m._name`` on a project module
    it imported as ``m``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    modules = {target.rsplit(".", 1)[-1] for _, target, _ in imports(path)
               if target.split(".")[0] == "simulation"}
    bound: set[str] = set()  # local names bound to project modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(
                "simulation")):
            for alias in node.names:
                if alias.name in modules:
                    bound.add(alias.asname or alias.name)
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path}:{node.lineno}: imports {alias.name}")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in bound and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            found.append(f"{path}:{node.lineno}: uses {node.value.id}.{node.attr}")
    return found


def test_no_module_takes_another_modules_private_name():
    found = [use for path in SOURCES for use in private_uses(path)]
    assert not found, "\n".join(found)


def test_the_checker_sees_an_upward_and_a_hidden_import(tmp_path, monkeypatch):
    """The rules above can fail: a function-level upward import in the engine is caught."""
    fake = tmp_path / "simulation"
    (fake / "engine").mkdir(parents=True)
    (fake / "viz").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "engine" / "__init__.py").write_text("")
    (fake / "viz" / "__init__.py").write_text("")
    (fake / "viz" / "plots.py").write_text("from ..engine import kernel\n")
    (fake / "engine" / "kernel.py").write_text("def f():\n    from ..viz import plots\n")
    (fake / "viz" / "more.py").write_text("from .plots import _helper\nfrom . import plots\n"
                                         "plots._other()\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    monkeypatch.setattr(sys.modules[__name__], "SOURCES", sorted(fake.rglob("*.py")))
    with pytest.raises(AssertionError, match="engine imports simulation.viz.plots"):
        test_imports_only_go_down_the_layers()
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycles()
    with pytest.raises(AssertionError, match="inside a function"):
        test_function_level_imports_are_only_for_heavy_optional_dependencies()
    with pytest.raises(AssertionError, match=r"imports _helper(.|\n)*uses plots._other"):
        test_no_module_takes_another_modules_private_name()


def test_import_simulation_is_light():
    """``import simulation`` (what a notebook does first) loads no plotting, app or cluster
    library: those come with the modules that need them."""
    heavy = ("matplotlib", "solara", "dask", "distributed", "SALib")
    code = ("import sys, simulation; "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == "", f"import simulation loaded {loaded}"
