"""The rules of the house that code can check: workflows/ stays pure."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_workflows_import_only_the_standard_library_and_themselves() -> None:
    files = sorted(WORKFLOWS.rglob("*.py"))
    assert files
    for path in files:
        foreign = {n for n in _imports(path) if n != "workflows" and n not in sys.stdlib_module_names}
        assert not foreign, f"{path.name} imports {sorted(foreign)}: workflows/ must stay pure"


def test_no_float_arithmetic_in_workflows() -> None:
    for path in sorted(WORKFLOWS.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float":
                raise AssertionError(f"{path.name}:{node.lineno} calls float(): money is integer minor units")
            if isinstance(node, ast.Constant) and isinstance(node.value, float):
                raise AssertionError(f"{path.name}:{node.lineno} has a float literal")
