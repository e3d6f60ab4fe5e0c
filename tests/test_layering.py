"""The import graph: floors point one way, no circles, commands are leaves, small pieces.

Floors, bottom to top (ARCHITECTURE.md):

* ``landscape.io`` and ``landscape.errors``: the bottom floor (atomic files, devices, errors);
  every package may import them;
* ``landscape``: the model-agnostic engine; imports nothing of ``training`` or ``analysis``;
* ``training``: SNNs, data, checkpoints; imports only the bottom floor of ``landscape``;
* ``analysis``: the library floor (imports both packages above) and the commands on top of it;
* ``benchmarks``: measure library code; they import no command.

Every import counts, at module level or inside a function.
"""

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("landscape", "training", "analysis", "benchmarks")
BOTTOM = {"landscape.io", "landscape.errors"}
FORBIDDEN = {"training": {"landscape", "analysis"}, "landscape": {"training", "analysis"}}
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    _module_name(path): path
    for package in PACKAGES
    for path in sorted((REPO / package).rglob("*.py"))
}


def _resolve(name: str) -> str | None:
    """The toolkit module an imported name refers to (a submodule, else its package)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imported_names(path: Path) -> set[str]:
    """Dotted names of everything a file imports (``from a import b`` gives ``a.b``)."""
    names, package = set(), _module_name(path).rpartition(".")[0]
    if path.name == "__init__.py":
        package = _module_name(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names |= {f"{base}.{alias.name}" for alias in node.names} | {base}
    return names


def _edges() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        targets = {_resolve(name) for name in _imported_names(path)}
        graph[module] = {target for target in targets if target and target != module}
    return graph


GRAPH = _edges()
COMMANDS = {
    module
    for module, path in MODULES.items()
    if '__name__ == "__main__"' in path.read_text() and not module.startswith("benchmarks")
}


def _is_package_init(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_backward_imports(package):
    offenders = {
        module: sorted(t for t in targets if t.split(".")[0] in FORBIDDEN[package])
        for module, targets in GRAPH.items()
        if module.split(".")[0] == package
    }
    offenders = {
        module: [t for t in targets if t not in BOTTOM] for module, targets in offenders.items()
    }
    offenders = {module: targets for module, targets in offenders.items() if targets}
    assert not offenders, f"{package}/ must not import {sorted(FORBIDDEN[package])}: {offenders}"


def test_bottom_floor_imports_nothing_above_it():
    for module in BOTTOM:
        assert GRAPH[module] <= BOTTOM, f"{module} imports {sorted(GRAPH[module] - BOTTOM)}"


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None (iterative depth-first search with colours)."""
    colour = dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done
    for root in sorted(graph):
        if colour[root]:
            continue
        stack, path = [(root, iter(sorted(graph[root])))], [root]
        colour[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop(), path.pop()
                colour[node] = 2
            elif colour.get(child) == 1:
                return path[path.index(child) :] + [child]
            elif colour.get(child) == 0:
                colour[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_no_import_cycles():
    # A package's __init__ re-exporting its submodules is not a cycle of the code's design; edges
    # *into* an __init__ are kept, edges out of it are not followed.
    graph = {
        module: set() if _is_package_init(module) else targets for module, targets in GRAPH.items()
    }
    assert _find_cycle(graph) is None, f"import cycle: {' -> '.join(_find_cycle(graph))}"


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a"}}) is None


def test_nothing_imports_a_command():
    assert COMMANDS >= {"analysis.hessian", "analysis.demo", "training.run"}
    offenders = {
        module: sorted(targets & COMMANDS)
        for module, targets in GRAPH.items()
        if targets & COMMANDS
    }
    assert not offenders, f"commands are imported by {offenders}"


def test_small_pieces():
    too_long = []
    for module, path in MODULES.items():
        if module.split(".")[0] not in ("training", "landscape", "analysis"):
            continue
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{module}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - first + 1 > MAX_FUNCTION_LINES:
                    too_long.append(f"{module}.{node.name}: {node.end_lineno - first + 1} lines")
    assert not too_long, f"over {MAX_MODULE_LINES}/{MAX_FUNCTION_LINES} lines: {too_long}"


def test_nothing_imports_torchvision_at_module_level():
    for package in ("training", "landscape", "analysis"):
        for path in (REPO / package).rglob("*.py"):
            top_level = [
                n
                for n in ast.parse(path.read_text()).body
                if isinstance(n, (ast.Import, ast.ImportFrom))
            ]
            for node in top_level:
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                assert not any(n.split(".")[0] == "torchvision" for n in names), path
