"""Detector data from expert lesion masks: mask boxes, close-ups, hard negatives, held-out slices.

Builds the YOLO dataset of the mask-trained detector (issue 12) from

* HAM10000 images with their lesion masks (``ham10000/masks``), put back to 4:3 (the shared copies are
  stretched squares), split by the classifier's committed HAM split (``training/runs/classifier-ham7/split.json``):
  its validation images, and every image of a lesion among them, never enter training;
* ISIC 2017/2018 Task 1 images with expert masks (``isic2018_task1``): a fixed, seeded third is held out
  (:func:`isic_holdout`, written to ``training/runs/detector/isic_holdout.json``) for the no-lesion-dismissed
  check and never trained on;
* the PH2 training half (expert masks) as before; the PH2 validation half (``ph2_split.json``) stays out;
* close-ups (:func:`closeup_crop`): zoomed crops where the lesion fills most or all of the frame, so a box
  that touches every border is a normal answer;
* real zoom-ins (``zoomins_train``, :func:`zoomin_crop`): crops narrower than the lesion, so it fills and leaves
  the frame, of HAM10000/ISIC training images, never of an image of the detector test split
  (``benchmarks/detector_test_split.json``);
* composites of small, off-centre lesions on skin scenes (:func:`training.detector_data.composite_scene`);
* hard negatives with empty label files: plain skin and hair and the dark dermoscope vignette outside the
  masks (:func:`negative_crop`), lesion-free skin scenes, crops of everyday photos that are not the
  evaluation photos (:func:`photo_negative`) and synthetic clutter (:func:`clutter_negative`).

A tight box of the whole mask is the ground truth, as for PH2 (:func:`box_from_mask`, which drops
specks far smaller than the lesion first). Validation images get name prefixes per slice (``ham_``,
``isic_``, ``close_``, ``comp_``, ``neg_``) so each slice can be scored on its own.

    python -m training.detector_masks --out /work/artifacts/detector/dataset [--config CONFIG]
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from edgeskin.core.boxes import mask_to_box
from training.detector_data import (
    SHARED_DATA,
    _fit_long_side,
    _ph2_variant,
    _progress,
    _write_sample,
    empty_yolo_folders,
    inpaint_hole,
    load_ph2,
    read_mask,
    read_rgb,
    skin_scene,
    split_ph2,
    write_composites,
    write_data_yaml,
)

LOG = logging.getLogger("edgeskin.detector_masks")
REPO_ROOT = Path(__file__).resolve().parents[1]
CLASSIFIER_SPLIT = REPO_ROOT / "training" / "runs" / "classifier-ham7" / "split.json"
ISIC_HOLDOUT = REPO_ROOT / "training" / "runs" / "detector" / "isic_holdout.json"
# The detector test split (issue 29): no image of it may enter a detector's training data.
TEST_SPLIT = REPO_ROOT / "benchmarks" / "detector_test_split.json"
# Everyday photos shipped inside installed packages; none is one of the evaluation photos of
# ../shared/data/non_lesion (panda, cat, bird, Grace Hopper), so they can teach "no lesion here".
# scikit-image's sample photos (the [train] extra) add a cat, a person, food, a vehicle, textures and a
# star field; its fundus and microscopy images are left out (too close to a lesion in a dark vignette).
PHOTO_CANDIDATES = (
    "sklearn/datasets/images/china.jpg",
    "sklearn/datasets/images/flower.jpg",
    "ultralytics/assets/zidane.jpg",
    "ultralytics/assets/bus.jpg",
    "skimage/data/astronaut.png",
    "skimage/data/chelsea.png",
    "skimage/data/coffee.png",
    "skimage/data/rocket.jpg",
    "skimage/data/motorcycle_left.png",
    "skimage/data/brick.png",
    "skimage/data/grass.png",
    "skimage/data/gravel.png",
    "skimage/data/hubble_deep_field.jpg",
)


# --------------------------------------------------------------------------------------------- boxes
def box_from_mask(mask: np.ndarray, min_component_share: float = 0.01) -> np.ndarray | None:
    """Tight xyxy box (x1/y1 exclusive) of a lesion mask, ignoring specks.

    Connected components smaller than ``min_component_share`` of the largest one are dropped first, so
    a stray annotation pixel cannot stretch the box. Returns None for an empty mask.
    """
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"mask: expected shape (H, W), got {mask.shape}")
    if not mask.any():
        return None
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count > 2:
        areas = stats[1:, cv2.CC_STAT_AREA]
        keep = np.flatnonzero(areas >= min_component_share * areas.max()) + 1
        mask = np.isin(labels, keep)
    return mask_to_box(mask)


def touches_all_borders(box: np.ndarray, width: int, height: int, margin: float = 1.0) -> bool:
    """Whether an xyxy box reaches every border of a width x height frame (within ``margin`` pixels)."""
    return bool(box[0] <= margin and box[1] <= margin and box[2] >= width - margin and box[3] >= height - margin)


# ------------------------------------------------------------------------------------------ close-ups
def resize_long_side(
    crop: np.ndarray, out_side: int, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """A crop resized so its long side is ``out_side`` (INTER_AREA down, INTER_LINEAR up) and its mask with it
    (nearest neighbour; None stays None)."""
    height, width = crop.shape[:2]
    scale = out_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if mask is not None:
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return crop, mask


def closeup_crop(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    zoom: tuple[float, float] = (0.7, 1.35),
    jitter: float = 0.12,
    min_fill: float = 0.45,
    out_side: int = 320,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A zoomed crop where the lesion fills most or all of the frame.

    The crop's width and height are the lesion box's times a random ``zoom`` each (below 1 the lesion is
    cut by the crop: its box touches those borders), centred on the lesion with a random shift of up to
    ``jitter`` of the crop size, moved inside the image. The crop is resized so its long side is
    ``out_side`` (INTER_AREA down, INTER_LINEAR up; the mask with nearest neighbour).

    Returns:
        ``(crop_rgb, crop_mask, box)`` with the box of the mask inside the crop in crop pixels, or None
        when the mask is empty or the lesion fills less than ``min_fill`` of the crop (lesion too big for
        the image to zoom out that far).
    """
    box = box_from_mask(mask)
    if box is None:
        return None
    height, width = mask.shape
    bw, bh = float(box[2] - box[0]), float(box[3] - box[1])
    crop_w = int(round(min(width, max(8.0, bw * rng.uniform(*zoom)))))
    crop_h = int(round(min(height, max(8.0, bh * rng.uniform(*zoom)))))
    # Keep the frame's aspect ratio between 1:2 and 2:1.
    crop_w = min(crop_w, 2 * crop_h, width)
    crop_h = min(crop_h, 2 * crop_w, height)
    cx = (box[0] + box[2]) / 2 + rng.uniform(-jitter, jitter) * crop_w
    cy = (box[1] + box[3]) / 2 + rng.uniform(-jitter, jitter) * crop_h
    x0 = int(np.clip(round(cx - crop_w / 2), 0, width - crop_w))
    y0 = int(np.clip(round(cy - crop_h / 2), 0, height - crop_h))
    crop_mask = mask[y0 : y0 + crop_h, x0 : x0 + crop_w]
    crop_box = box_from_mask(crop_mask)
    if crop_box is None:
        return None
    fill = float((crop_box[2] - crop_box[0]) * (crop_box[3] - crop_box[1])) / (crop_w * crop_h)
    if fill < min_fill:
        return None
    crop, crop_mask = resize_long_side(image[y0 : y0 + crop_h, x0 : x0 + crop_w], out_side, crop_mask)
    out_box = box_from_mask(crop_mask)
    if out_box is None:
        return None
    return crop, crop_mask, out_box


# ---------------------------------------------------------------------------------------- negatives
def negative_crop(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    share: tuple[float, float] = (0.3, 0.6),
    margin: float = 0.04,
    corner_bias: float = 0.5,
    out_side: int = 320,
    tries: int = 30,
) -> np.ndarray | None:
    """A crop of a dermoscopy image with no lesion pixel in it (plain skin, hair, the dark vignette).

    The mask is dilated by ``margin`` of the image diagonal first. With probability ``corner_bias`` the
    crop is anchored at a random image corner (where the dermoscope's dark vignette is). Returns the crop
    resized to a long side of ``out_side``, or None when no lesion-free window was found.
    """
    height, width = mask.shape
    radius = max(2, round(margin * float(np.hypot(height, width))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    forbidden = cv2.dilate(mask.astype(np.uint8), kernel) > 0
    integral = np.pad(forbidden.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    for _ in range(tries):
        side = rng.uniform(*share)
        crop_h = max(16, int(side * height))
        crop_w = max(16, min(width, int(crop_h * rng.uniform(1.0, 1.4))))
        if rng.random() < corner_bias:
            x0 = 0 if rng.random() < 0.5 else width - crop_w
            y0 = 0 if rng.random() < 0.5 else height - crop_h
        else:
            x0 = int(rng.integers(0, width - crop_w + 1))
            y0 = int(rng.integers(0, height - crop_h + 1))
        total = (
            integral[y0 + crop_h, x0 + crop_w]
            - integral[y0, x0 + crop_w]
            - integral[y0 + crop_h, x0]
            + integral[y0, x0]
        )
        if total == 0:
            return resize_long_side(image[y0 : y0 + crop_h, x0 : x0 + crop_w], out_side)[0]
    return None


def photo_negative(photo: np.ndarray, rng: np.random.Generator, out_side: int = 320) -> np.ndarray:
    """A random crop (30-100 % of the short side) of an everyday photo, maybe flipped, brightness changed."""
    height, width = photo.shape[:2]
    crop_h = max(32, int(min(height, width) * rng.uniform(0.3, 1.0)))
    crop_w = min(width, int(crop_h * rng.uniform(1.0, 1.5)))
    y0 = int(rng.integers(0, height - crop_h + 1))
    x0 = int(rng.integers(0, width - crop_w + 1))
    crop = photo[y0 : y0 + crop_h, x0 : x0 + crop_w]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    scale = out_side / max(crop.shape[:2])
    size = (round(crop.shape[1] * scale), round(crop.shape[0] * scale))
    crop = cv2.resize(np.ascontiguousarray(crop), size, interpolation=cv2.INTER_AREA)
    values = crop.astype(np.float32)
    mean = values.mean()
    values = (values - mean) * rng.uniform(0.8, 1.2) + mean * rng.uniform(0.6, 1.3)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def clutter_negative(rng: np.random.Generator, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """Synthetic non-skin content: a colour gradient with random rectangles, lines, ellipses and text."""
    width, height = size
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    image = np.repeat((c0 * (1 - t) + c1 * t).astype(np.uint8), height, axis=0)
    image = np.ascontiguousarray(image)
    for _ in range(int(rng.integers(3, 12))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = rng.integers(0, 4)
        p0 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if kind == 0:
            cv2.rectangle(image, p0, p1, colour, -1 if rng.random() < 0.6 else int(rng.integers(1, 6)))
        elif kind == 1:
            cv2.line(image, p0, p1, colour, int(rng.integers(1, 8)))
        elif kind == 2:
            axes = (int(rng.integers(5, width // 3)), int(rng.integers(5, height // 3)))
            cv2.ellipse(image, p0, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        else:
            text = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(3, 9))))
            cv2.putText(image, text, p0, cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.5, 2.0)), colour, 2)
    noise = rng.normal(0, rng.uniform(1, 8), image.shape)
    return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ sources
@dataclass(frozen=True)
class MaskedImage:
    """A dermoscopy image with its lesion mask, source and diagnosis (``""`` when unknown)."""

    image_id: str
    image_path: str
    mask_path: str
    source: str
    dx: str = ""
    group: str = ""


def load_masked(
    images_dir: Path, masks_dir: Path, source: str, labels: dict[str, str], groups: dict[str, str] | None = None
) -> list[MaskedImage]:
    """Images of ``images_dir`` that have a ``<id>_segmentation.png`` mask, sorted by id."""
    items = []
    for mask_path in sorted(Path(masks_dir).glob("*_segmentation.png")):
        image_id = mask_path.name[: -len("_segmentation.png")]
        image_path = Path(images_dir) / f"{image_id}.jpg"
        if image_path.is_file():
            group = (groups or {}).get(image_id, image_id)
            items.append(
                MaskedImage(image_id, str(image_path), str(mask_path), source, labels.get(image_id, ""), group)
            )
    return items


def ham_labels(metadata_csv: Path) -> tuple[dict[str, str], dict[str, str]]:
    """``({image_id: dx}, {image_id: lesion_id})`` from HAM10000_metadata.csv."""
    dx, groups = {}, {}
    with Path(metadata_csv).open(newline="") as handle:
        for row in csv.DictReader(handle):
            dx[row["image_id"]] = row["dx"].strip().lower()
            groups[row["image_id"]] = row.get("lesion_id") or row["image_id"]
    return dx, groups


def isic_labels(ground_truth_dir: Path) -> dict[str, str]:
    """ISIC diagnoses: ISIC 2019 ground truth where it has the image, else ISIC 2017 Part 3 (mel/bkl/nv)."""
    labels: dict[str, str] = {}
    for name in ("ISIC-2017_Training_Part3_GroundTruth.csv", "ISIC-2017_Validation_Part3_GroundTruth.csv"):
        path = Path(ground_truth_dir) / name
        if not path.is_file():
            continue
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                mel, sk = float(row["melanoma"]), float(row["seborrheic_keratosis"])
                labels[row["image_id"]] = "mel" if mel >= 0.5 else "bkl" if sk >= 0.5 else "nv"
    path = Path(ground_truth_dir) / "ISIC_2019_Training_GroundTruth.csv"
    if path.is_file():
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            classes = [c for c in reader.fieldnames or () if c != "image"]
            for row in reader:
                hot = [c for c in classes if float(row[c]) >= 0.5]
                if hot:
                    labels[row["image"]] = hot[0].lower()
    return labels


def isic_holdout(
    items: Sequence[MaskedImage], fraction: float = 1 / 3, seed: int = 0, data_root: Path = SHARED_DATA
) -> dict:
    """The held-out share of ISIC 2017/2018 images: the classifier's when ``edgeskin.datasets`` has it.

    With ``edgeskin.datasets.source_holdout`` (the lead's source-held-out third of the labelled ISIC images,
    lesion-grouped and diagnosis-stratified) those ids are used, so the detector and the classifier are
    scored on the same images; otherwise a seeded ``fraction`` of all ISIC images stratified by diagnosis
    (unlabelled images as one stratum).
    """
    try:
        from edgeskin.datasets import load_multisource, source_holdout
    except ImportError:
        source_holdout = None
    if source_holdout is not None:
        root = Path(data_root)
        data = load_multisource(
            root / "ham10000" / "HAM10000_metadata.csv",
            root / "ham10000" / "images",
            root / "isic2018_task1" / "images",
            root / "isic_ground_truth",
        )
        held = sorted(set(source_holdout(data, "isic2017", fraction, seed)) & {it.image_id for it in items})
        return {
            "method": f"edgeskin.datasets.source_holdout(load_multisource(...), 'isic2017', {fraction:.4f}, seed={seed})",
            "seed": seed,
            "heldout": held,
        }
    rng = np.random.default_rng(seed)
    by_dx: dict[str, list[str]] = {}
    for item in sorted(items, key=lambda it: it.image_id):
        by_dx.setdefault(item.dx or "unlabelled", []).append(item.image_id)
    held = []
    for dx in sorted(by_dx):
        ids = list(by_dx[dx])
        rng.shuffle(ids)
        held.extend(ids[: round(len(ids) * fraction)])
    return {
        "method": f"seeded (seed {seed}) {fraction:.4f} of the ISIC 2017/2018 Task 1 images, stratified by diagnosis",
        "seed": seed,
        "heldout": sorted(held),
    }


def read_pair(item: MaskedImage, ham_width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Image and bool mask; HAM images (stretched squares) are put back to 4:3 at ``ham_width``."""
    image, mask = read_rgb(item.image_path), read_mask(item.mask_path)
    if mask.shape != image.shape[:2]:
        mask = cv2.resize(mask.astype(np.uint8), (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    if ham_width:
        size = (ham_width, ham_width * 3 // 4)
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return image, mask


# ------------------------------------------------------------------------------------------ dataset
@dataclass
class MaskDatasetConfig:
    """How many images of each kind go into the mask-trained detector's dataset."""

    data_root: str = str(SHARED_DATA)
    ph2_val: int = 50
    split_seed: int = 0
    seed: int = 0
    isic_holdout_fraction: float = 1 / 3
    ph2_copies: int = 3
    ph2_side: int = 480
    ham_width: int = 320
    ham_train: int = 850
    # Extra HAM10000 training images of these diagnoses, from the same training pool, beyond ham_train: the
    # malignant lesions the ISIC 2017/2018 images lack (BCC, akiec) keep their scores when ISIC grows.
    ham_boost_train: int = 0
    ham_boost_dx: tuple[str, ...] = ("bcc", "akiec")
    isic_train: int = 650
    closeups_train: int = 550
    composites_train: int = 550
    neg_skin_train: int = 150
    # Extra skin negatives cut from the PH2 training half (never the validation half): dermoscopic skin of the
    # kind the PH2 skin crops among the non-lesion frames show. 0 keeps the datasets built before this.
    neg_skin_ph2_train: int = 0
    # Real zoom-ins (issue 29 part 2): crops of HAM10000/ISIC training images around the lesion, narrower than its
    # box, so the lesion fills the frame and runs off it (:func:`write_zoomins`). 0 keeps the datasets built before.
    zoomins_train: int = 0
    # More ISIC training images, drawn after every other pick by a generator of their own (seeded from ``seed``) from
    # the ISIC pool outside the held-out third, the ``isic_train`` picks and the detector test split. They join
    # ``isic_train`` (whole images, close-ups, composites, zoom-ins). 0 keeps the datasets built before.
    isic_extra_train: int = 0
    neg_scene_train: int = 60
    neg_photo_train: int = 80
    neg_clutter_train: int = 60
    ham_val: int = 100
    isic_val: int = 80
    closeups_val: int = 80
    composites_val: int = 60
    negatives_val: int = 40
    scene_size: tuple[int, int] = (480, 360)
    # "Real skin" scenes (a HAM image with its lesion inpainted away) only from images whose inpainted region
    # (training.detector_data.inpaint_hole) covers at most this share of the frame. Inpainting a larger hole
    # leaves radial streaks that look like a lesion region: 4 of the shipped detector's 13 composite misses
    # were whole-frame boxes on such scenes. 1.0 keeps every image, as the datasets built before this did.
    background_lesion_share_max: float = 0.2


def load_mask_dataset_config(path: str | Path | None) -> MaskDatasetConfig:
    """MaskDatasetConfig with the ``data`` section of a YAML config applied (unknown keys are an error)."""
    config = MaskDatasetConfig()
    if path and Path(path).is_file():
        import yaml

        section = (yaml.safe_load(Path(path).read_text()) or {}).get("data", {}) or {}
        for key, value in section.items():
            if key == "recipe":
                continue
            if not hasattr(config, key):
                raise ValueError(f"unknown data option {key!r} in {path}; expected one of {list(asdict(config))}")
            setattr(config, key, tuple(value) if isinstance(value, list) else value)
    return config


def heldout_sets(
    config: MaskDatasetConfig, ph2_split_path: Path | None = None, holdout_path: Path | None = ISIC_HOLDOUT
) -> dict:
    """The held-out dermoscopy sets: ``{"ph2_val", "isic_heldout", "ham_val"}`` -> lists of MaskedImage,
    plus ``"train"`` pools (``ham``, ``isic``, ``ph2``) for the dataset builder.

    The ISIC held-out ids come from ``holdout_path`` when it exists (the committed record), else from
    :func:`isic_holdout`. HAM validation = the classifier's committed split's ``val`` images; every
    image of one of their lesions is kept out of training.
    """
    root = Path(config.data_root)
    ham_dx, ham_groups = ham_labels(root / "ham10000" / "HAM10000_metadata.csv")
    ham = load_masked(root / "ham10000" / "images", root / "ham10000" / "masks", "ham10000", ham_dx, ham_groups)
    isic = load_masked(
        root / "isic2018_task1" / "images",
        root / "isic2018_task1" / "masks",
        "isic2018",
        isic_labels(root / "isic_ground_truth"),
    )
    ph2_items = load_ph2(root / "ph2")
    if ph2_split_path is not None and Path(ph2_split_path).is_file():
        split = json.loads(Path(ph2_split_path).read_text())
    else:
        split = split_ph2(ph2_items, n_val=config.ph2_val, seed=config.split_seed)
    ph2 = [MaskedImage(it.image_id, it.image_path, it.mask_path, "ph2", it.diagnosis) for it in ph2_items]
    if holdout_path is not None and Path(holdout_path).is_file():
        holdout = json.loads(Path(holdout_path).read_text())
    else:
        holdout = isic_holdout(isic, config.isic_holdout_fraction, config.seed, root)
        holdout["ham_val"] = sorted(json.loads(CLASSIFIER_SPLIT.read_text())["val"])
    ham_val_ids = set(holdout["ham_val"])
    ham_val_groups = {it.group for it in ham if it.image_id in ham_val_ids}
    isic_held = set(holdout["heldout"])
    return {
        "ph2_val": [it for it in ph2 if it.image_id in set(split["val"])],
        "isic_heldout": [it for it in isic if it.image_id in isic_held],
        "ham_val": [it for it in ham if it.image_id in ham_val_ids],
        "train": {
            "ham": [it for it in ham if it.group not in ham_val_groups],
            "isic": [it for it in isic if it.image_id not in isic_held],
            "ph2": [it for it in ph2 if it.image_id in set(split["train"])],
        },
        "ph2_split": split,
        "isic_holdout": holdout,
    }


def _photos() -> list[np.ndarray]:
    import site

    photos = []
    for base in site.getsitepackages():
        for rel in PHOTO_CANDIDATES:
            path = Path(base) / rel
            if path.is_file():
                photos.append(read_rgb(path))
    return photos


# A dermoscopy image read and sized for the dataset, with its (non-empty) lesion mask.
LoadedImage = tuple[MaskedImage, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class LoadedPools:
    """The dermoscopy images each slice of the dataset draws from, read and sized (see :func:`load_pools`)."""

    ham_train: list[LoadedImage]
    isic_train: list[LoadedImage]
    ph2_train: list[LoadedImage]
    ham_val: list[LoadedImage]
    isic_val: list[LoadedImage]

    @property
    def train_lesions(self) -> list[LoadedImage]:
        """The lesion sources of the training close-ups and composites."""
        return self.ham_train + self.isic_train + self.ph2_train

    @property
    def val_lesions(self) -> list[LoadedImage]:
        """The lesion sources of the validation close-ups, composites and skin negatives."""
        return self.ham_val + self.isic_val


class RealSkin(NamedTuple):
    """The ``(image, mask)`` of the HAM images fit to be a real-skin scene, per split (:func:`real_skin_sources`)."""

    train: list[tuple[np.ndarray, np.ndarray]]
    val: list[tuple[np.ndarray, np.ndarray]]


class NegativeMix(NamedTuple):
    """How many hard negatives of each kind one split gets."""

    skin: int
    scene: int
    photo: int
    clutter: int

    @classmethod
    def train(cls, config: MaskDatasetConfig) -> NegativeMix:
        return cls(config.neg_skin_train, config.neg_scene_train, config.neg_photo_train, config.neg_clutter_train)

    @classmethod
    def val(cls, config: MaskDatasetConfig) -> NegativeMix:
        """``negatives_val`` shared out: a quarter each of scenes, photos and clutter, the rest skin crops."""
        quarter = config.negatives_val // 4
        return cls(config.negatives_val - 3 * quarter, quarter, quarter, quarter)


class SampleWriter:
    """Writes samples into the YOLO folders under ``out`` and counts them per ``<kind>_<split>``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.counts: dict[str, int] = {}  # insertion order is the manifest's order

    def write(self, split: str, name: str, image: np.ndarray, boxes: Sequence[np.ndarray], kind: str) -> None:
        _write_sample(self.out, split, name, image, boxes)
        self.count(kind, split)

    def count(self, kind: str, split: str, n: int = 1) -> None:
        """Add ``n`` samples written elsewhere; a kind with none gets no entry."""
        if n:
            self.counts[f"{kind}_{split}"] = self.counts.get(f"{kind}_{split}", 0) + n


def pick(pool: Sequence[MaskedImage], n: int, rng: np.random.Generator) -> list[MaskedImage]:
    """``n`` random items of ``pool`` (all when it is smaller), in pool order."""
    order = rng.permutation(len(pool))[: min(n, len(pool))]
    return [pool[i] for i in sorted(order)]


def load_images(
    items: Sequence[MaskedImage], config: MaskDatasetConfig, desc: str, progress: bool = True
) -> list[LoadedImage]:
    """Read ``items`` (HAM at ``ham_width``, PH2 at a long side of ``ph2_side``); drops empty masks."""
    loaded = []
    for item in _progress(items, desc, progress):
        image, mask = read_pair(item, config.ham_width if item.source == "ham10000" else None)
        if item.source == "ph2":
            image, mask = _fit_long_side(image, mask, config.ph2_side)
        if box_from_mask(mask) is not None:
            loaded.append((item, image, mask))
    return loaded


class DrawnItems(NamedTuple):
    """The dermoscopy images each slice of the dataset draws, before they are read (:func:`draw_items`)."""

    ham_train: list[MaskedImage]
    isic_train: list[MaskedImage]
    ph2_train: list[MaskedImage]
    ham_val: list[MaskedImage]
    isic_val: list[MaskedImage]


def draw_items(sets: dict, config: MaskDatasetConfig, rng: np.random.Generator) -> DrawnItems:
    """Draw the images of every slice: the HAM picks (plus the diagnosis boost), ISIC, PH2, validation.

    Reads no image, so the ids a recipe trained on can be recomputed from its config and seed alone; the picks
    are the first draws of the dataset's generator (:func:`build_mask_dataset`).
    """
    pools = sets["train"]
    ham_picked = pick(pools["ham"], config.ham_train, rng)
    if config.ham_boost_train:
        taken = {item.image_id for item in ham_picked}
        boost_pool = [it for it in pools["ham"] if it.dx in config.ham_boost_dx and it.image_id not in taken]
        ham_picked += pick(boost_pool, config.ham_boost_train, rng)
    isic_train = pick(pools["isic"], config.isic_train, rng)
    ham_val = pick(sets["ham_val"], config.ham_val, rng)
    isic_val = pick(sets["isic_heldout"], config.isic_val, rng)
    if config.isic_extra_train:
        isic_train = isic_train + extra_isic(pools["isic"], isic_train, config)
    drawn = DrawnItems(ham_picked, isic_train, list(pools["ph2"]), ham_val, isic_val)
    check_outside_test_split(drawn)
    return drawn


def extra_isic(
    pool: Sequence[MaskedImage], picked: Sequence[MaskedImage], config: MaskDatasetConfig
) -> list[MaskedImage]:
    """``config.isic_extra_train`` ISIC images of ``pool`` outside ``picked`` and the detector test split.

    A generator of their own draws them, so the recipe's generator, and every slice it draws, stays as without them.
    """
    excluded = {item.image_id for item in picked} | detector_test_ids()
    rest = [item for item in pool if item.image_id not in excluded]
    return pick(rest, config.isic_extra_train, np.random.default_rng([config.seed, 1]))


def check_outside_test_split(drawn: DrawnItems, test_ids: set[str] | None = None) -> None:
    """Refuse a recipe whose training or validation draws touch the detector test split.

    The split was drawn from images no recipe before it had touched, so every recorded recipe passes; a new recipe
    that draws more images from the pools would otherwise train or choose on the test split without a word.
    """
    test_ids = detector_test_ids() if test_ids is None else test_ids
    touched = sorted({item.image_id for items in drawn for item in items} & test_ids)
    if touched:
        raise ValueError(
            f"this recipe draws {len(touched)} image(s) of the detector test split ({', '.join(touched[:3])}...): "
            f"{TEST_SPLIT.name} must stay untouched; draw fewer images or exclude the split from the pools"
        )


def load_pools(sets: dict, config: MaskDatasetConfig, rng: np.random.Generator, progress: bool = True) -> LoadedPools:
    """Draw (:func:`draw_items`) and read the images of every slice."""
    drawn = draw_items(sets, config, rng)
    descriptions = ("HAM train", "ISIC train", "PH2 train", "HAM val", "ISIC val")
    return LoadedPools(
        *(load_images(items, config, desc, progress) for items, desc in zip(drawn, descriptions, strict=True))
    )


def write_whole_images(writer: SampleWriter, pools: LoadedPools, ph2_copies: int, rng: np.random.Generator) -> None:
    """Stage 1: whole images with their mask boxes; each PH2 training image with ``ph2_copies - 1`` variants."""
    slices = (
        ("train", "ham", pools.ham_train),
        ("train", "isic", pools.isic_train),
        ("train", "ph2", pools.ph2_train),
        ("val", "ham", pools.ham_val),
        ("val", "isic", pools.isic_val),
    )
    for split, kind, loaded in slices:
        copies = ph2_copies if kind == "ph2" else 1
        for item, image, mask in loaded:
            writer.write(split, f"{kind}_{item.image_id}", image, [box_from_mask(mask)], kind)
            for copy in range(1, copies):
                v_image, v_mask = _ph2_variant(image, mask, rng)
                writer.write(split, f"ph2_{item.image_id}_v{copy}", v_image, [box_from_mask(v_mask)], kind)


def write_closeups(
    writer: SampleWriter, split: str, n: int, sources: Sequence[LoadedImage], rng: np.random.Generator
) -> None:
    """Stage 2: ``n`` close-ups (the lesion fills most or all of the frame) of randomly drawn ``sources``."""
    made = attempts = 0
    while made < n and attempts < 5 * n:
        attempts += 1
        _, image, mask = sources[int(rng.integers(len(sources)))]
        crop = closeup_crop(image, mask, rng)
        if crop is not None:
            writer.write(split, f"close_{split}_{made:05d}", crop[0], [crop[2]], "closeup")
            made += 1


def zoomin_crop(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, out_side: int = 320
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """A close-up (:func:`closeup_crop`) narrower than the lesion on both axes, so the mask runs off the frame;
    None when the crop's box does not reach at least two borders (a lesion already cut by the image)."""
    crop = closeup_crop(image, mask, rng, zoom=(0.55, 0.9), jitter=0.08, min_fill=0.8, out_side=out_side)
    if crop is None:
        return None
    height, width = crop[1].shape
    box = crop[2]
    touching = sum((box[0] <= 1, box[1] <= 1, box[2] >= width - 1, box[3] >= height - 1))
    return crop if touching >= 2 else None


def detector_test_ids(path: Path | None = None) -> set[str]:
    """Every id of the detector test split (``TEST_SPLIT`` by default; empty when the file is absent)."""
    path = TEST_SPLIT if path is None else path
    if not Path(path).is_file():
        return set()
    return {i for ids in json.loads(Path(path).read_text())["ids"].values() for i in ids}


def write_zoomins(
    writer: SampleWriter, n: int, sources: Sequence[LoadedImage], rng: np.random.Generator, excluded: set[str]
) -> None:
    """Up to ``n`` real zoom-ins (:func:`zoomin_crop`) of the HAM10000/ISIC ``sources`` outside ``excluded``."""
    pool = [s for s in sources if s[0].source in ("ham10000", "isic2018") and s[0].image_id not in excluded]
    made = attempts = 0
    while pool and made < n and attempts < 5 * n:
        attempts += 1
        _, image, mask = pool[int(rng.integers(len(pool)))]
        crop = zoomin_crop(image, mask, rng)
        if crop is not None:
            writer.write("train", f"zoom_train_{made:05d}", crop[0], [crop[2]], "zoomin")
            made += 1


def real_skin_sources(pools: LoadedPools, lesion_share_max: float) -> RealSkin:
    """The HAM images fit to be a real-skin scene (few enough lesion pixels to inpaint cleanly)."""

    def fit(loaded: list[LoadedImage]) -> list[tuple[np.ndarray, np.ndarray]]:
        limit = lesion_share_max
        return [(image, mask) for _, image, mask in loaded if limit >= 1.0 or float(inpaint_hole(mask).mean()) <= limit]

    return RealSkin(fit(pools.ham_train), fit(pools.ham_val))


def write_mask_composites(
    writer: SampleWriter,
    split: str,
    n: int,
    sources: Sequence[LoadedImage],
    backgrounds: Sequence[tuple[np.ndarray, np.ndarray]],
    config: MaskDatasetConfig,
    rng: np.random.Generator,
    progress: bool = True,
) -> None:
    """Stage 3: up to ``n`` skin scenes with one (sometimes two) small, off-centre lesions of ``sources``."""
    lesions = [(image, mask) for _, image, mask in sources]
    made = write_composites(writer.out, split, n, lesions, backgrounds, config.scene_size, rng, progress)
    writer.count("composite", split, made)


def write_skin_negatives(
    writer: SampleWriter,
    split: str,
    n: int,
    sources: Sequence[LoadedImage],
    rng: np.random.Generator,
    name: str = "skin",
    kind: str = "neg_skin",
) -> None:
    """``n`` lesion-free crops of randomly drawn ``sources`` (a few tries each)."""
    made = attempts = 0
    while made < n and attempts < 10 * max(1, n):
        attempts += 1
        _, image, mask = sources[int(rng.integers(len(sources)))]
        crop = negative_crop(image, mask, rng)
        if crop is not None:
            writer.write(split, f"neg_{split}_{name}{made:05d}", crop, [], kind)
            made += 1


def write_negatives(
    writer: SampleWriter,
    split: str,
    mix: NegativeMix,
    sources: Sequence[LoadedImage],
    backgrounds: Sequence[tuple[np.ndarray, np.ndarray]],
    photos: Sequence[np.ndarray],
    config: MaskDatasetConfig,
    rng: np.random.Generator,
) -> None:
    """Stage 4: hard negatives with empty label files: skin crops, skin scenes, photo crops, clutter."""
    write_skin_negatives(writer, split, mix.skin, sources, rng)
    for index in range(mix.scene):
        scene = skin_scene(backgrounds, config.scene_size, rng)
        writer.write(split, f"neg_{split}_scene{index:05d}", scene, [], "neg_scene")
    for index in range(mix.photo if photos else 0):
        photo = photo_negative(photos[index % len(photos)], rng)
        writer.write(split, f"neg_{split}_photo{index:05d}", photo, [], "neg_photo")
    for index in range(mix.clutter):
        writer.write(split, f"neg_{split}_clutter{index:05d}", clutter_negative(rng), [], "neg_clutter")


def write_mask_manifest(out: Path, config: MaskDatasetConfig, sets: dict, counts: dict, started: float) -> dict:
    """Stage 5: ``data.yaml`` and ``manifest.json`` (config, counts, held-out and pool sizes, seconds)."""
    write_data_yaml(out, "training/detector_masks.py")
    manifest = {
        "recipe": "masks",
        "config": asdict(config),
        "counts": counts,
        "heldout_sizes": {k: len(sets[k]) for k in ("ph2_val", "isic_heldout", "ham_val")},
        "train_pool_sizes": {k: len(v) for k, v in sets["train"].items()},
        "seconds": round(time.time() - started, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def build_mask_dataset(out_dir: str | Path, config: MaskDatasetConfig, progress: bool = True) -> dict:
    """Write the YOLO dataset (``images/``, ``labels/``, ``data.yaml``, ``manifest.json``, the split files).

    One generator seeded with ``config.seed`` feeds every stage: the picks (:func:`load_pools`), whole images,
    close-ups, composites, negatives. Reordering the stages changes every file after the move.
    """
    started = time.time()
    out = Path(out_dir)
    empty_yolo_folders(out)
    rng = np.random.default_rng(config.seed)
    sets = heldout_sets(config, REPO_ROOT / "training" / "runs" / "detector" / "ph2_split.json", ISIC_HOLDOUT)
    (out / "ph2_split.json").write_text(json.dumps(sets["ph2_split"], indent=1))
    (out / "isic_holdout.json").write_text(json.dumps(sets["isic_holdout"], indent=1))
    pools = load_pools(sets, config, rng, progress)
    writer = SampleWriter(out)
    write_whole_images(writer, pools, config.ph2_copies, rng)
    write_closeups(writer, "train", config.closeups_train, pools.train_lesions, rng)
    write_closeups(writer, "val", config.closeups_val, pools.val_lesions, rng)
    real_skin = real_skin_sources(pools, config.background_lesion_share_max)
    writer.counts["real_backgrounds_train"], writer.counts["real_backgrounds_val"] = map(len, real_skin)
    write_mask_composites(
        writer, "train", config.composites_train, pools.train_lesions, real_skin.train, config, rng, progress
    )
    write_mask_composites(writer, "val", config.composites_val, pools.val_lesions, real_skin.val, config, rng, progress)
    photos = _photos()
    writer.counts["photo_sources"] = len(photos)
    train_skin = pools.ham_train + pools.isic_train
    write_negatives(writer, "train", NegativeMix.train(config), train_skin, real_skin.train, photos, config, rng)
    write_skin_negatives(writer, "train", config.neg_skin_ph2_train, pools.ph2_train, rng, "ph2skin", "neg_skin_ph2")
    write_negatives(writer, "val", NegativeMix.val(config), pools.val_lesions, real_skin.val, photos, config, rng)
    # Last, so that every recipe without zoom-ins draws as before.
    write_zoomins(writer, config.zoomins_train, pools.ham_train + pools.isic_train, rng, detector_test_ids())
    return write_mask_manifest(out, config, sets, writer.counts, started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(REPO_ROOT / "artifacts" / "detector" / "dataset"))
    parser.add_argument("--config", default=str(REPO_ROOT / "training" / "configs" / "detector.yaml"))
    parser.add_argument(
        "--write-holdout", action="store_true", help=f"only write the ISIC held-out ids to {ISIC_HOLDOUT}"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = load_mask_dataset_config(args.config)
    if args.write_holdout:
        sets = heldout_sets(config, REPO_ROOT / "training" / "runs" / "detector" / "ph2_split.json", None)
        record = {**sets["isic_holdout"], "ham_val_from": str(CLASSIFIER_SPLIT.relative_to(REPO_ROOT)) + " 'val'"}
        ISIC_HOLDOUT.write_text(json.dumps(record, indent=1) + "\n")
        print(f"{len(sets['isic_holdout']['heldout'])} held-out ISIC ids -> {ISIC_HOLDOUT}")
        return 0
    manifest = build_mask_dataset(args.out, config)
    print(json.dumps({k: manifest[k] for k in ("counts", "heldout_sizes", "train_pool_sizes", "seconds")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
