"""The import graph: floors point one way, no circles, commands are leaves.

Floors, bottom to top (ARCHITECTURE.md):

* ``toolkit``: errors and exit codes, files and devices, settings and flags, the command runner;
  imports nothing else of the toolkit;
* ``landscape`` (the model-agnostic engine) and ``training`` (SNNs, data, runs): siblings that
  import only ``toolkit``, never each other or ``analysis``;
* ``analysis``: its library subpackages, and the commands on top of them;
* ``benchmarks``: measure library code; they import no command.

A command is a module with ``if __name__ == "__main__"``; in ``training/`` and ``analysis/``
the commands are exactly the files directly in the package folder, and library code lives in
subpackages, so the tree alone tells the two apart. Every import counts, at module level or
inside a function.
"""

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("toolkit", "landscape", "training", "analysis", "benchmarks")
FORBIDDEN = {
    "toolkit": {"landscape", "training", "analysis", "benchmarks"},
    "landscape": {"training", "analysis", "benchmarks"},
    "training": {"landscape", "analysis", "benchmarks"},
    "analysis": {"benchmarks"},
}
ANALYSIS_FLOORS = ("measures", "surfaces", "connectivity", "evidence", "plots", "pipeline", "cli")


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
def test_floors_point_down(package):
    offenders = {
        module: sorted(t for t in targets if t.split(".")[0] in FORBIDDEN[package])
        for module, targets in GRAPH.items()
        if module.split(".")[0] == package
    }
    offenders = {module: targets for module, targets in offenders.items() if targets}
    assert not offenders, f"{package}/ must not import {sorted(FORBIDDEN[package])}: {offenders}"


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
    # A package's __init__ importing its submodules (to fill a registry, or as the package's
    # face) is not a cycle of the code's design; edges *into* an __init__ are kept, edges out of
    # it are not followed.
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


@pytest.mark.parametrize("package", ("training", "analysis"))
def test_the_tree_tells_commands_from_library(package):
    flat = {_module_name(p) for p in (REPO / package).glob("*.py") if p.name != "__init__.py"}
    commands = {module for module in COMMANDS if module.startswith(f"{package}.")}
    assert flat == commands, (
        f"flat files that are not commands, or commands in subpackages: {flat ^ commands}"
    )


def test_analysis_library_is_in_named_subpackages():
    found = {p.name for p in (REPO / "analysis").iterdir() if (p / "__init__.py").is_file()}
    assert found == set(ANALYSIS_FLOORS)


def test_no_sys_path_hack_outside_command_files():
    for module, path in MODULES.items():
        if "sys.path.insert" in path.read_text():
            assert module in COMMANDS or module.startswith("benchmarks"), module


def test_no_compatibility_re_exports():
    """A module's ``__all__`` lists only what it defines (package faces aside)."""
    offenders = {}
    for module, path in MODULES.items():
        if _is_package_init(module) or module.startswith("benchmarks"):
            continue
        tree = ast.parse(path.read_text())
        imported = {
            alias.asname or alias.name
            for node in tree.body
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        exported = next(
            (
                [element.value for element in node.value.elts]
                for node in tree.body
                if isinstance(node, ast.Assign)
                and any(getattr(target, "id", "") == "__all__" for target in node.targets)
            ),
            [],
        )
        if set(exported) & imported:
            offenders[module] = sorted(set(exported) & imported)
    assert not offenders, f"re-exported names (import them from their module): {offenders}"


def test_no_fmt_skip():
    for package in ("toolkit", "landscape", "training", "analysis"):
        for path in (REPO / package).rglob("*.py"):
            assert "fmt: skip" not in path.read_text() and "fmt: off" not in path.read_text(), path


def test_nothing_imports_torchvision_at_module_level():
    for package in ("toolkit", "training", "landscape", "analysis"):
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
