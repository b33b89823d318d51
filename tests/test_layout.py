"""The layout of docs/ARCHITECTURE.md holds: who may import whom, and nobody edits sys.path (tests neither).

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


def _sys_path_edits(path: Path) -> list[int]:
    """Lines of ``path`` that change ``sys.path``: a call on it (insert, append, extend, ...), an assignment to it
    or to a slice of it, or pytest's ``monkeypatch.syspath_prepend``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if ast.unparse(node.func.value) == "sys.path" or node.func.attr == "syspath_prepend":
                lines.append(node.lineno)
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(ast.unparse(t).split("[")[0] == "sys.path" for t in targets):
                lines.append(node.lineno)
    return sorted(lines)


@pytest.mark.parametrize("package", [*sorted(MAY_NOT_IMPORT), "tests", "scripts"])
def test_nobody_edits_sys_path(package: str) -> None:
    wrong = [
        f"{path.relative_to(REPO_ROOT)}:{line}"
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        for line in _sys_path_edits(path)
    ]
    hint = {
        "tests": "tests: reach a helper module through pytest's pythonpath (pyproject.toml [tool.pytest.ini_options])",
        "scripts": "scripts: load a module from a file with importlib.util.spec_from_file_location",
    }.get(package, "run as python -m <package>.<module> from the repository root instead")
    assert not wrong, f"{hint}: " + ", ".join(wrong)


def test_the_sys_path_check_sees_each_kind_of_edit(tmp_path: Path) -> None:
    script = tmp_path / "edits.py"
    script.write_text(
        "import sys\nsys.path.insert(0, 'a')\nsys.path.append('b')\nsys.path.extend(['c'])\nsys.path[:0] = ['d']\n"
        "sys.path = ['e']\nsys.path += ['f']\n\ndef test(monkeypatch):\n    monkeypatch.syspath_prepend('g')\n"
        "print(sys.path[0])\n"
    )
    assert _sys_path_edits(script) == [2, 3, 4, 5, 6, 7, 10]


@pytest.mark.parametrize("package", ["training", "convert", "benchmarks"])
def test_development_code_is_packages(package: str) -> None:
    assert (REPO_ROOT / package / "__init__.py").is_file()
