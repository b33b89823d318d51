"""The layout of docs/ARCHITECTURE.md holds: who may import whom, and nobody edits sys.path.

edgeskin (the wheel) imports none of training, convert, benchmarks; training imports neither convert nor
benchmarks; convert does not import benchmarks. Scripts are run as packages (``python -m training.x``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MAY_NOT_IMPORT = {
    "edgeskin": {"training", "convert", "benchmarks"},
    "training": {"convert", "benchmarks"},
    "convert": {"benchmarks"},
    "benchmarks": set(),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("package", sorted(MAY_NOT_IMPORT))
def test_packages_import_only_downwards(package: str) -> None:
    wrong = [
        f"{path.relative_to(REPO_ROOT)}:{line} imports {name}"
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        for line, name in _imports(path)
        if name in MAY_NOT_IMPORT[package]
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", sorted(MAY_NOT_IMPORT))
def test_nobody_edits_sys_path(package: str) -> None:
    wrong = []
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"insert", "append"}
                and ast.unparse(node.func.value) == "sys.path"
            ):
                wrong.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert not wrong, "run as python -m <package>.<module> from the repository root instead: " + ", ".join(wrong)


@pytest.mark.parametrize("package", ["training", "convert", "benchmarks"])
def test_development_code_is_packages(package: str) -> None:
    assert (REPO_ROOT / package / "__init__.py").is_file()
