"""Data flows one way: training -> landscape -> analysis. Imports must not point backwards."""

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

FORBIDDEN = {"training": {"landscape", "analysis"}, "landscape": {"training", "analysis"}}
# The bottom floor: utilities every package may import (one atomic_write, one resolve_device, one
# error hierarchy). They import nothing of the toolkit but each other.
BOTTOM = {"landscape.io", "landscape.errors"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name not in BOTTOM}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module not in BOTTOM:
                names.add(node.module)
    return {name.split(".")[0] for name in names}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_backward_imports(package):
    offenders = {
        str(path.relative_to(REPO)): sorted(_imports(path) & FORBIDDEN[package])
        for path in (REPO / package).rglob("*.py")
        if _imports(path) & FORBIDDEN[package]
    }
    assert not offenders, f"{package}/ must not import {sorted(FORBIDDEN[package])}: {offenders}"


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
