"""Dataset loaders shared by training and `edgeskin evaluate` (no TensorFlow; scikit-learn only for the split).

Layouts (the standard ones of each data set):
- HAM10000: ``HAM10000_metadata.csv`` (lesion_id, image_id, dx, ...) + ``images/<image_id>.jpg``.
- ISIC 2018 Task 3 ground truth: ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` one-hot rows (7 dx).
- ISIC 2019 training ground truth: ``image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK`` one-hot rows (8 dx; UNK = no
  diagnosis), with the metadata CSV (``image,...,lesion_id,...``) for lesion ids.
- ISIC 2017 Part 3 ground truth: ``image_id,melanoma,seborrheic_keratosis`` (neither = naevus).

Rows whose image is absent are skipped and counted (``LabelledImages.missing``), never fatal. Each loader
gives image ids, paths, labels as indices into ``LabelledImages.classes`` (the 7 HAM10000 or the 8 ISIC 2019
diagnoses) and a lesion id per image (the image id when none is known). :func:`load_multisource` merges
HAM10000 and the ISIC 2017/2018 images into one 8-dx table with a ``source`` per image and reports
conflicts and unlabelled images with counts.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeskin.labels import DX8_CLASSES, DX8_TO_DX7, DX_CLASSES, ISIC2018_COLUMNS, ISIC2019_COLUMNS

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass(frozen=True)
class LabelledImages:
    """Images with dx labels.

    Attributes:
        image_ids, paths: One per image.
        labels: int indices into ``classes``.
        groups: The lesion id of each image (the image id when unknown): split by it, never by image.
        missing: Label rows skipped because their image is absent.
        source: The data set's name, or ``"multi"`` when ``sources`` holds one per image.
        extras: Counts and notes of the loader (conflicts, unlabelled images, ...).
        classes: ``DX_CLASSES`` (7 HAM10000 dx) or ``DX8_CLASSES`` (8 ISIC 2019 dx).
        sources: The source of each image (empty: all are ``source``).
    """

    image_ids: tuple[str, ...]
    paths: tuple[Path, ...]
    labels: np.ndarray
    groups: tuple[str, ...]
    missing: int = 0
    source: str = ""
    extras: dict = field(default_factory=dict)
    classes: tuple[str, ...] = DX_CLASSES
    sources: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def image_sources(self) -> tuple[str, ...]:
        """The source of each image."""
        return self.sources or (self.source,) * len(self)

    def counts(self) -> dict[str, int]:
        return {dx: int((self.labels == i).sum()) for i, dx in enumerate(self.classes)}

    def dx7_labels(self) -> np.ndarray:
        """The labels as indices into ``DX_CLASSES`` (ak and scc become akiec)."""
        lookup = np.array([DX_CLASSES.index(DX8_TO_DX7.get(dx, dx)) for dx in self.classes], dtype=np.int64)
        return lookup[self.labels]

    def subset(self, index: Sequence[int]) -> LabelledImages:
        idx = np.asarray(index, dtype=int)
        return LabelledImages(
            tuple(self.image_ids[i] for i in idx),
            tuple(self.paths[i] for i in idx),
            self.labels[idx],
            tuple(self.groups[i] for i in idx),
            0,
            self.source,
            {},
            self.classes,
            tuple(self.sources[i] for i in idx) if self.sources else (),
        )


def find_image(images_dir: Path, image_id: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        candidate = images_dir / f"{image_id}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _ham10000_labels(metadata_csv: Path) -> tuple[dict[str, str], dict[str, str]]:
    """HAM10000 metadata → ``{image_id: dx}`` and ``{image_id: lesion_id}`` (for the rows that have one)."""
    labels: dict[str, str] = {}
    lesions: dict[str, str] = {}
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
            labels[row["image_id"]] = dx
            if row.get("lesion_id"):
                lesions[row["image_id"]] = row["lesion_id"]
    return labels, lesions


def load_ham10000(metadata_csv: str | Path, images_dir: str | Path) -> LabelledImages:
    """Load the HAM10000 layout, skipping (and counting) metadata rows without an image file."""
    metadata_csv = Path(metadata_csv)
    labels, lesions = _ham10000_labels(metadata_csv)
    return _with_images(
        labels, images_dir, "ham10000", metadata_csv.name, lesions, classes=DX_CLASSES, level=logging.WARNING
    )


def _isic2018_labels(ground_truth_csv: Path) -> dict[str, str]:
    """ISIC 2018 Task 3 one-hot ground truth → ``{image: dx}`` in ``DX_CLASSES`` names."""
    labels: dict[str, str] = {}
    with ground_truth_csv.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        if "image" not in fields or not set(ISIC2018_COLUMNS) <= set(fields):
            raise ValueError(f"{ground_truth_csv}: expected columns image,{','.join(ISIC2018_COLUMNS)}; got {fields}")
        for row in reader:
            onehot = np.array([float(row[c]) for c in ISIC2018_COLUMNS])
            if not np.isclose(onehot.sum(), 1.0) or onehot.max() != 1.0:
                raise ValueError(f"{ground_truth_csv}: row {row['image']} is not one-hot: {onehot.tolist()}")
            labels[row["image"]] = ISIC2018_COLUMNS[int(onehot.argmax())].lower()
    return labels


def load_isic2018_task3(ground_truth_csv: str | Path, images_dir: str | Path) -> LabelledImages:
    """Load an ISIC 2018 Task 3 one-hot ground-truth CSV (``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``)."""
    ground_truth_csv = Path(ground_truth_csv)
    return _with_images(
        _isic2018_labels(ground_truth_csv),
        images_dir,
        "isic2018",
        ground_truth_csv.name,
        classes=DX_CLASSES,
        level=logging.WARNING,
    )


def read_isic2019_labels(ground_truth_csv: str | Path) -> tuple[dict[str, str], int]:
    """ISIC 2019 one-hot ground truth → ``{image: dx}`` in ``DX8_CLASSES`` names, and the count of UNK rows.

    UNK rows (no diagnosis) are left out and counted. A row that is not one-hot raises ``ValueError``.
    """
    ground_truth_csv = Path(ground_truth_csv)
    labels: dict[str, str] = {}
    unknown = 0
    with ground_truth_csv.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        if "image" not in fields or not set(ISIC2019_COLUMNS[:-1]) <= set(fields):
            raise ValueError(f"{ground_truth_csv}: expected columns image,{','.join(ISIC2019_COLUMNS)}; got {fields}")
        columns = [c for c in ISIC2019_COLUMNS if c in fields]
        for row in reader:
            onehot = np.array([float(row[c] or 0) for c in columns])
            if not np.isclose(onehot.sum(), 1.0) or onehot.max() != 1.0:
                raise ValueError(f"{ground_truth_csv}: row {row['image']} is not one-hot: {onehot.tolist()}")
            column = columns[int(onehot.argmax())]
            if column == "UNK":
                unknown += 1
                continue
            labels[row["image"]] = column.lower()
    return labels, unknown


def read_isic2019_lesion_ids(metadata_csv: str | Path) -> dict[str, str]:
    """ISIC 2019 metadata → ``{image: lesion_id}`` for the rows that have one."""
    with Path(metadata_csv).open(newline="") as handle:
        reader = csv.DictReader(handle)
        if "image" not in (reader.fieldnames or []) or "lesion_id" not in (reader.fieldnames or []):
            raise ValueError(f"{metadata_csv}: expected columns image and lesion_id, got {reader.fieldnames}")
        return {row["image"]: row["lesion_id"] for row in reader if row.get("lesion_id")}


def read_isic2017_labels(*part3_csvs: str | Path) -> dict[str, str]:
    """ISIC 2017 Part 3 ground truth (``image_id,melanoma,seborrheic_keratosis``) → ``{image: mel|bkl|nv}``.

    A seborrheic keratosis is a benign keratosis-like lesion (``bkl``); neither flag means a naevus (``nv``).
    """
    labels: dict[str, str] = {}
    for path in part3_csvs:
        with Path(path).open(newline="") as handle:
            reader = csv.DictReader(handle)
            fields = set(reader.fieldnames or [])
            if not {"image_id", "melanoma", "seborrheic_keratosis"} <= fields:
                raise ValueError(f"{path}: expected columns image_id,melanoma,seborrheic_keratosis; got {fields}")
            for row in reader:
                mel, sk = float(row["melanoma"]), float(row["seborrheic_keratosis"])
                if mel and sk:
                    raise ValueError(f"{path}: row {row['image_id']} is both melanoma and seborrheic keratosis")
                labels[row["image_id"]] = "mel" if mel else "bkl" if sk else "nv"
    return labels


def _labelled(ids, paths, dx_names, groups, classes, source, missing=0, extras=None, sources=()) -> LabelledImages:
    return LabelledImages(
        tuple(ids),
        tuple(paths),
        np.array([classes.index(dx) for dx in dx_names], dtype=np.int64),
        tuple(groups),
        missing,
        source,
        dict(extras or {}),
        classes,
        tuple(sources),
    )


def _with_images(
    labels: dict[str, str],
    images_dir: str | Path,
    source: str,
    name: str,
    lesions: dict[str, str] | None = None,
    extras: dict | None = None,
    *,
    classes: tuple[str, ...] = DX8_CLASSES,
    level: int = logging.INFO,
) -> LabelledImages:
    """The table of the ``{image_id: dx}`` labels whose image is in ``images_dir``; the others are counted and
    logged at ``level`` under ``name``. ``dx`` names one of ``classes``."""
    images_dir = Path(images_dir)
    ids, paths, names, groups = [], [], [], []
    missing = 0
    for image_id, dx in labels.items():
        path = find_image(images_dir, image_id)
        if path is None:
            missing += 1
            continue
        ids.append(image_id)
        paths.append(path)
        names.append(dx)
        groups.append((lesions or {}).get(image_id, image_id))
    if missing:
        log.log(level, "%s: %d rows have no image in %s and were skipped", name, missing, images_dir)
    return _labelled(ids, paths, names, groups, classes, source, missing, extras)


def load_isic2019(
    ground_truth_csv: str | Path, images_dir: str | Path, metadata_csv: str | Path | None = None
) -> LabelledImages:
    """Load the images of an ISIC 2019 ground-truth CSV that are in ``images_dir`` (8 dx).

    Rows without an image and UNK rows are skipped and counted (``missing``, ``extras["unlabelled"]``).
    Lesion ids come from ``metadata_csv`` when given (default: ``ISIC_2019_Training_Metadata.csv`` beside
    the ground truth, if present), else the image id.
    """
    ground_truth_csv, images_dir = Path(ground_truth_csv), Path(images_dir)
    labels, unknown = read_isic2019_labels(ground_truth_csv)
    if metadata_csv is None:
        default = ground_truth_csv.with_name("ISIC_2019_Training_Metadata.csv")
        metadata_csv = default if default.is_file() else None
    lesions = read_isic2019_lesion_ids(metadata_csv) if metadata_csv else {}
    return _with_images(labels, images_dir, "isic2019", ground_truth_csv.name, lesions, {"unlabelled": unknown})


def load_isic2017_part3(ground_truth_csv: str | Path, images_dir: str | Path) -> LabelledImages:
    """Load an ISIC 2017 Part 3 ground-truth CSV (mel, bkl or nv as 8-dx labels); rows without an image are counted."""
    ground_truth_csv = Path(ground_truth_csv)
    return _with_images(read_isic2017_labels(ground_truth_csv), images_dir, "isic2017", ground_truth_csv.name)


def load_multisource(
    ham_metadata_csv: str | Path,
    ham_images_dir: str | Path,
    isic_images_dir: str | Path,
    ground_truth_dir: str | Path,
) -> LabelledImages:
    """HAM10000 and the ISIC 2017/2018 images of other clinics as one 8-dx table with a source per image.

    Labels: the ISIC 2019 ground truth where it has the image (it splits HAM10000's ``akiec`` into ``ak``
    and ``scc``), else ISIC 2017 Part 3 for the ISIC images, else the HAM10000 metadata (an ``akiec``
    without an ISIC 2019 label cannot be split and is left out, counted). Sources: ``ham10000`` and
    ``isic2017`` (the ISIC 2017 challenge images, mostly Memorial Sloan Kettering). Lesion ids: HAM10000's
    and ISIC 2019 metadata's; otherwise the image id.

    ``extras`` counts what was left out or disagreed, per source: ``unlabelled`` (images with no
    diagnosis in any file: usable for detection only), ``conflicts`` (two label files disagree; the ISIC
    2019 label is kept) with examples, ``missing`` (label rows without an image). Nothing of this fails.
    """
    truth = Path(ground_truth_dir)
    isic2019, unk = read_isic2019_labels(truth / "ISIC_2019_Training_GroundTruth.csv")
    metadata = truth / "ISIC_2019_Training_Metadata.csv"
    lesions = read_isic2019_lesion_ids(metadata) if metadata.is_file() else {}
    part3 = sorted(truth.glob("ISIC-2017_*_Part3_GroundTruth.csv"))
    isic2017 = read_isic2017_labels(*part3) if part3 else {}

    ids, paths, names, groups, sources = [], [], [], [], []
    report: dict[str, dict] = {}

    def note(source: str, key: str, example: str | None = None) -> None:
        entry = report.setdefault(source, {"images": 0, "unlabelled": 0, "conflicts": 0, "missing": 0, "examples": []})
        entry[key] += 1
        if example and len(entry["examples"]) < 5:
            entry["examples"].append(example)

    def add(image_id: str, path: Path, dx: str, lesion: str, source: str) -> None:
        ids.append(image_id)
        paths.append(path)
        names.append(dx)
        groups.append(lesion)
        sources.append(source)
        note(source, "images")

    ham = load_ham10000(ham_metadata_csv, ham_images_dir)
    for _ in range(ham.missing):
        note("ham10000", "missing")
    for image_id, path, label, lesion in zip(ham.image_ids, ham.paths, ham.labels, ham.groups, strict=True):
        ham_dx = DX_CLASSES[int(label)]
        dx = isic2019.get(image_id)
        if dx is None:
            if ham_dx == "akiec":
                note("ham10000", "unlabelled", f"{image_id}: akiec without an ISIC 2019 ak/scc label")
                continue
            dx = ham_dx
        elif DX8_TO_DX7[dx] != ham_dx:
            note("ham10000", "conflicts", f"{image_id}: HAM10000 {ham_dx}, ISIC 2019 {dx}")
        add(image_id, path, dx, lesion, "ham10000")

    isic_dir = Path(isic_images_dir)
    for path in sorted(p for p in isic_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        image_id = path.stem
        dx, dx2017 = isic2019.get(image_id), isic2017.get(image_id)
        if dx is not None and dx2017 is not None and dx != dx2017:
            note("isic2017", "conflicts", f"{image_id}: ISIC 2019 {dx}, ISIC 2017 {dx2017}")
        dx = dx or dx2017
        if dx is None:
            note("isic2017", "unlabelled")
            continue
        add(image_id, path, dx, lesions.get(image_id, image_id), "isic2017")
    for source, entry in report.items():
        log.info(
            "%s: %d labelled images, %d unlabelled, %d label conflicts (ISIC 2019 kept), %d label rows without image",
            source, entry["images"], entry["unlabelled"], entry["conflicts"], entry["missing"],
        )  # fmt: skip
    extras = {"per_source": report, "isic2019_unk_rows": unk}
    return _labelled(ids, paths, names, groups, DX8_CLASSES, "multi", 0, extras, sources)


PH2_DIAGNOSES = {"common_nevus": "nv", "atypical_nevus": "nv", "melanoma": "mel"}


def load_ph2(labels_csv: str | Path, images_dir: str | Path) -> LabelledImages:
    """PH2's ``image_id,diagnosis`` (common_nevus, atypical_nevus, melanoma) as 8-dx labels (nv, nv, mel)."""
    labels_csv = Path(labels_csv)
    labels = {}
    with labels_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            dx = PH2_DIAGNOSES.get(row["diagnosis"].strip().lower())
            if dx is None:
                raise ValueError(f"{labels_csv}: unknown PH2 diagnosis {row['diagnosis']!r} for {row['image_id']}")
            labels[row["image_id"]] = dx
    return _with_images(labels, images_dir, "ph2", labels_csv.name)


def load_labelled_images(labels_csv: str | Path, images_dir: str | Path) -> LabelledImages:
    """Load any of the supported ground-truth layouts, chosen from the CSV header."""
    with Path(labels_csv).open(newline="") as handle:
        header = next(csv.reader(handle), [])
    if "dx" in header and "image_id" in header:
        return load_ham10000(labels_csv, images_dir)
    if "image" in header and "SCC" in header and "AK" in header:
        return load_isic2019(labels_csv, images_dir)
    if "image" in header and "MEL" in header:
        return load_isic2018_task3(labels_csv, images_dir)
    if "image_id" in header and "melanoma" in header and "seborrheic_keratosis" in header:
        return load_isic2017_part3(labels_csv, images_dir)
    if header == ["image_id", "diagnosis"]:
        return load_ph2(labels_csv, images_dir)
    raise ValueError(
        f"{labels_csv}: unrecognised label CSV; expected HAM10000 metadata (image_id, dx), ISIC 2018 Task 3 "
        f"(image, MEL, NV, ..., AKIEC), ISIC 2019 (image, MEL, ..., AK, ..., SCC, UNK) or ISIC 2017 Part 3 "
        f"(image_id, melanoma, seborrheic_keratosis) ground truth, or PH2 labels (image_id, diagnosis); got columns {header}"
    )


def grouped_stratified_split(data: LabelledImages, val_fraction: float = 0.15, seed: int = 0) -> dict[str, list[str]]:
    """Split by lesion (no lesion in both parts), stratified by dx and source, seeded. Image ids per part."""
    from sklearn.model_selection import StratifiedGroupKFold

    n_splits = max(2, round(1 / val_fraction))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    names = sorted(set(data.image_sources))
    strata = data.labels * len(names) + np.array([names.index(s) for s in data.image_sources])
    train_idx, val_idx = next(splitter.split(np.zeros(len(data)), strata, groups=np.array(data.groups)))
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


def source_holdout(data: LabelledImages, source: str, fraction: float = 1 / 3, seed: int = 0) -> list[str]:
    """A seeded, lesion-grouped, dx-stratified ``fraction`` of one source's images, to hold out of training.

    Used for the source-held-out score: a model trained without these images is scored on them, and they
    are never used for calibration or model choice.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    index = [i for i, s in enumerate(data.image_sources) if s == source]
    if not index:
        raise ValueError(f"no images of source {source!r}; sources are {sorted(set(data.image_sources))}")
    part = data.subset(index)
    splitter = StratifiedGroupKFold(n_splits=max(2, round(1 / fraction)), shuffle=True, random_state=seed)
    _, held = next(splitter.split(np.zeros(len(part)), part.labels, groups=np.array(part.groups)))
    return sorted(part.image_ids[i] for i in held)
