"""Shared fixtures. Tests that need the real data in ../shared are marked ``shared`` and skip without it."""

from __future__ import annotations

import csv
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


@pytest.fixture()
def isic2019_subset(shared_file, tmp_path: Path):
    """Return a function ``({"MEL": 2, ...}) -> (csv path, rows)``: that many HAM10000 images of each ISIC 2019
    class, written as an ISIC 2019 ground-truth CSV (``image,MEL,...,SCC,UNK``) in ``tmp_path``."""
    from edgeskin.labels import ISIC2019_COLUMNS

    truth = shared_file("data/isic_ground_truth/ISIC_2019_Training_GroundTruth.csv")
    images = shared_file("data/ham10000/images")
    columns = ["image", *ISIC2019_COLUMNS]

    def subset(wanted: dict[str, int]) -> tuple[Path, list[dict[str, str]]]:
        wanted, rows = dict(wanted), []
        with truth.open(newline="") as handle:
            for row in csv.DictReader(handle):
                dx = next(c for c in ISIC2019_COLUMNS if float(row[c]) == 1.0)
                if wanted.get(dx, 0) > 0 and (images / f"{row['image']}.jpg").is_file():
                    wanted[dx] -= 1
                    rows.append({k: row[k] for k in columns})
        path = tmp_path / "isic2019.csv"
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        return path, rows

    return subset
