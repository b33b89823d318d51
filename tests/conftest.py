"""Shared fixtures. Tests that need the real data in ../shared are marked ``shared`` and skip without it."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT / ".." / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder beside the repository (real data and weights); skips the test when absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"needs the real data and weights in {SHARED_DIR.resolve()}, which is absent")
    return SHARED_DIR.resolve()


@pytest.fixture(scope="session")
def shared_file(shared_dir: Path):
    """Return a function mapping a path relative to ../shared to a Path, skipping when the file is absent."""

    def resolve(relative: str) -> Path:
        path = shared_dir / relative
        if not path.exists():
            pytest.skip(f"needs {path}, which is absent from ../shared")
        return path

    return resolve
