"""Dataset loaders shared by training and `edgeskin evaluate` (no TensorFlow; scikit-learn only for the split).

Layouts:
- HAM10000: ``HAM10000_metadata.csv`` (lesion_id, image_id, dx, ...) + ``images/<image_id>.jpg``. Rows
  whose image is absent are skipped, counted and reported (``HamDataset.missing``).
- ISIC 2018 Task 3 ground truth: ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` one-hot rows.

Both give (image ids, dx labels as indices into ``edgeskin.labels.DX_CLASSES``).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeskin.labels import DX_CLASSES, ISIC2018_COLUMNS

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass(frozen=True)
class LabelledImages:
    """Images with dx labels. ``groups`` holds the lesion id (or the image id when unknown)."""

    image_ids: tuple[str, ...]
    paths: tuple[Path, ...]
    labels: np.ndarray  # int indices into DX_CLASSES
    groups: tuple[str, ...]
    missing: int = 0
    source: str = ""
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.image_ids)

    def counts(self) -> dict[str, int]:
        return {dx: int((self.labels == i).sum()) for i, dx in enumerate(DX_CLASSES)}

    def subset(self, index: Sequence[int]) -> LabelledImages:
        idx = np.asarray(index, dtype=int)
        return LabelledImages(
            tuple(self.image_ids[i] for i in idx),
            tuple(self.paths[i] for i in idx),
            self.labels[idx],
            tuple(self.groups[i] for i in idx),
            0,
            self.source,
        )


def find_image(images_dir: Path, image_id: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        candidate = images_dir / f"{image_id}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def load_ham10000(metadata_csv: str | Path, images_dir: str | Path) -> LabelledImages:
    """Load the HAM10000 layout, skipping (and counting) metadata rows without an image file."""
    metadata_csv, images_dir = Path(metadata_csv), Path(images_dir)
    ids, paths, labels, groups = [], [], [], []
    missing = 0
    with metadata_csv.open(newline="") as handle:
        reader = csv.DictReader(handle)
        required = {"image_id", "dx"}
        if not required <= set(reader.fieldnames or ()):
            raise ValueError(f"{metadata_csv}: expected columns {sorted(required)}, got {reader.fieldnames}")
        for row in reader:
            dx = row["dx"].strip().lower()
            if dx not in DX_CLASSES:
                raise ValueError(
                    f"{metadata_csv}: unknown dx {dx!r} for {row['image_id']}; expected one of {DX_CLASSES}"
                )
            path = find_image(images_dir, row["image_id"])
            if path is None:
                missing += 1
                continue
            ids.append(row["image_id"])
            paths.append(path)
            labels.append(DX_CLASSES.index(dx))
            groups.append(row.get("lesion_id") or row["image_id"])
    if missing:
        log.warning("%s: %d metadata rows have no image in %s and were skipped", metadata_csv.name, missing, images_dir)
    return LabelledImages(
        tuple(ids), tuple(paths), np.array(labels, dtype=np.int64), tuple(groups), missing, "ham10000"
    )


def load_isic2018_task3(ground_truth_csv: str | Path, images_dir: str | Path) -> LabelledImages:
    """Load an ISIC 2018 Task 3 one-hot ground-truth CSV (``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``)."""
    ground_truth_csv, images_dir = Path(ground_truth_csv), Path(images_dir)
    ids, paths, labels = [], [], []
    missing = 0
    with ground_truth_csv.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        if "image" not in fields or not set(ISIC2018_COLUMNS) <= set(fields):
            raise ValueError(f"{ground_truth_csv}: expected columns image,{','.join(ISIC2018_COLUMNS)}; got {fields}")
        for row in reader:
            onehot = np.array([float(row[c]) for c in ISIC2018_COLUMNS])
            if not np.isclose(onehot.sum(), 1.0) or onehot.max() != 1.0:
                raise ValueError(f"{ground_truth_csv}: row {row['image']} is not one-hot: {onehot.tolist()}")
            dx = ISIC2018_COLUMNS[int(onehot.argmax())].lower()
            path = find_image(images_dir, row["image"])
            if path is None:
                missing += 1
                continue
            ids.append(row["image"])
            paths.append(path)
            labels.append(DX_CLASSES.index(dx))
    if missing:
        log.warning("%s: %d rows have no image in %s and were skipped", ground_truth_csv.name, missing, images_dir)
    return LabelledImages(tuple(ids), tuple(paths), np.array(labels, dtype=np.int64), tuple(ids), missing, "isic2018")


def load_labelled_images(labels_csv: str | Path, images_dir: str | Path) -> LabelledImages:
    """Load either layout, chosen from the CSV header."""
    with Path(labels_csv).open(newline="") as handle:
        header = next(csv.reader(handle), [])
    if "dx" in header and "image_id" in header:
        return load_ham10000(labels_csv, images_dir)
    if "image" in header and "MEL" in header:
        return load_isic2018_task3(labels_csv, images_dir)
    raise ValueError(
        f"{labels_csv}: unrecognised label CSV; expected HAM10000 metadata (image_id, dx) or ISIC 2018 Task 3 "
        f"ground truth (image, MEL, NV, ...), got columns {header}"
    )


def grouped_stratified_split(data: LabelledImages, val_fraction: float = 0.15, seed: int = 0) -> dict[str, list[str]]:
    """Split by lesion (no lesion in both parts), stratified by dx, seeded. Returns image ids per part."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = max(2, round(1 / val_fraction))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    train_idx, val_idx = next(splitter.split(np.zeros(len(data)), data.labels, groups=np.array(data.groups)))
    return {
        "seed": seed,
        "val_fraction": val_fraction,
        "train": sorted(data.image_ids[i] for i in train_idx),
        "val": sorted(data.image_ids[i] for i in val_idx),
    }


def save_split(split: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(split, indent=1))


def apply_split(data: LabelledImages, split: dict, part: str) -> LabelledImages:
    wanted = set(split[part])
    return data.subset([i for i, image_id in enumerate(data.image_ids) if image_id in wanted])
