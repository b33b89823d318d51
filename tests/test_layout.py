"""The layout of docs/ARCHITECTURE.md holds: who may import whom, and nobody edits sys.path (tests neither).

edgeskin (the wheel) imports none of training, convert, benchmarks; training imports neither convert nor
benchmarks; convert does not import benchmarks. Scripts are run as packages (``python -m training.x``).
"""

from __future__ import annotations

import ast
import re
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


# The package stands alone: no path of a source checkout (its training outputs, records, data or benchmark
# files) appears in its code. Comments and docstrings may name them; string constants may not.
CHECKOUT_PATH = re.compile(r"artifacts|training/runs|\.\./shared|benchmarks/")
CHECKOUT_FOLDERS = {"artifacts", "shared", "benchmarks", "training", ".."}


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, nodes)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def checkout_paths_in(path: Path) -> list[str]:
    """``path:line`` and the text of each string constant in ``path`` (docstrings aside) that names a checkout path,
    and each reach from ``__file__`` above the package (``parents[N]``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if CHECKOUT_PATH.search(node.value) or node.value in CHECKOUT_FOLDERS:
                found.append(f"{node.lineno}: {node.value[:80]!r}")
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith(".parents"):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_package_names_no_checkout_path() -> None:
    wrong = [
        f"{path.relative_to(REPO_ROOT)}:{hit}"
        for path in sorted((REPO_ROOT / "edgeskin").rglob("*.py"))
        for hit in checkout_paths_in(path)
    ]
    assert not wrong, "pass such paths in as arguments (the development scripts keep the defaults):\n" + "\n".join(
        wrong
    )


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ('X = ROOT / "artifacts" / "bench"\n', True),
        ('X = Path("../shared/data")\n', True),
        ('X = REPO.parent / "shared"\n', True),
        ('X = f"{root}/training/runs/split.json"\n', True),
        ('X = "see benchmarks/reference"\n', True),
        ("X = Path(__file__).resolve().parents[2]\n", True),
        ('"""Reads artifacts/ and ../shared (a docstring)."""\n# artifacts/ in a comment\nX = 1\n', False),
        ('def f():\n    """From benchmarks/reference."""\n    return "a folder of your own"\n', False),
    ],
)
def test_the_checkout_path_check_finds_what_it_should(tmp_path: Path, source: str, found: bool) -> None:
    path = tmp_path / "module.py"
    path.write_text(source)
    assert bool(checkout_paths_in(path)) is found


@pytest.mark.parametrize("script", ["scripts/install.sh", "Makefile"])
def test_the_install_steps_name_only_files_that_exist(script: str) -> None:
    """A path of the repository named in the install script or the Makefile (``dir/name.ext``) is there."""
    text = (REPO_ROOT / script).read_text()
    named = set(re.findall(r"(?<![\w$./-])((?:[\w-]+/)+[\w.-]+\.(?:py|sh|toml|txt|json|yaml|md))\b", text))
    absent = sorted(name for name in named if not (REPO_ROOT / name).exists())
    assert named and not absent, f"{script} names files that do not exist: {absent}"


MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|home|root|tmp|Users|mnt|opt)/[\w.-]+")


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (REPO_ROOT / "edgeskin" / "models").iterdir() if p.suffix in {".json", ".md"})
)
def test_shipped_specs_and_cards_name_no_path_of_the_build_machine(name: str) -> None:
    """A shipped spec or card records commands and files relative to the checkout, never a machine's own paths."""
    text = (REPO_ROOT / "edgeskin" / "models" / name).read_text()
    assert not MACHINE_PATH.findall(text), f"{name} names paths of the machine it was built on"
