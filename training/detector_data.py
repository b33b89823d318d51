"""Box data for the lesion detector: loaders, the PH2 split, derived HAM10000 boxes, compositing, YOLO export.

Sources (all under ``../shared/data`` by default):

* ISIC 2018 Task 1 style masks (``<image_id>_segmentation.png``) → tight boxes (:func:`load_mask_boxes`).
* PH2: ``images/IMDxxx.jpg``, ``masks/IMDxxx_segmentation.png``, ``labels.csv`` (:func:`load_ph2`), with a
  seeded, diagnosis-stratified train/validation split (:func:`split_ph2`). Validation images are never
  written into the training set.
* HAM10000: boxes derived by the classical segmentation :func:`edgeskin.core.localize.segment_lesion` on
  the image resized back to 4:3 (the shared copies are 224x224, stretched from 600x450), kept only when
  they pass sanity checks (:func:`derive_ham_boxes`). The labeller's quality is measured against the PH2
  expert boxes (:func:`measure_labeller`).
* Composites: lesion crops, scaled down, pasted with a soft elliptical edge onto skin scenes with lighting
  gradients and noise, so the detector also finds small, off-centre lesions in camera frames
  (:func:`composite_scene`). The pasted lesion's box is recomputed from its transformed mask.

``python -m training.detector_data --help`` builds a YOLO dataset directory (``images/{train,val}``,
``labels/{train,val}``, ``data.yaml``, ``manifest.json``) under ``artifacts/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from edgeskin.core.boxes import mask_to_box
from edgeskin.core.boxes import pair_iou as box_iou_single  # IoU of two optional boxes (both None: 1.0)
from edgeskin.core.localize import classical_box, field_of_view, lesion_box, segment_lesion
from edgeskin.evaluation import iou_summary as _iou_summary
from edgeskin.progress import progress

LOG = logging.getLogger("edgeskin.detector_data")
REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
HAM_NATIVE_SIZE = (600, 450)  # (w, h) of the original HAM10000 images


# ----------------------------------------------------------------------------------------------- boxes
def iou_summary(ious: Sequence[float]) -> dict[str, float]:
    """mean / median IoU and the share of images with IoU >= 0.5: :func:`edgeskin.evaluation.iou_summary`, 4 digits."""
    return _iou_summary(ious, digits=4)


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8; raises FileNotFoundError with the path when unreadable."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a binary mask ({0,255} PNG) as bool."""
    grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if grey is None:
        raise FileNotFoundError(f"cannot read mask {path}")
    return grey > 127


def load_mask_boxes(masks_dir: str | Path) -> dict[str, np.ndarray]:
    """Tight boxes from an ISIC 2018 Task 1 style masks dir: ``{image_id: xyxy}`` for ``<id>_segmentation.png``.

    Empty masks are skipped with a warning.
    """
    boxes: dict[str, np.ndarray] = {}
    for path in sorted(Path(masks_dir).glob("*_segmentation.png")):
        image_id = path.name[: -len("_segmentation.png")]
        box = mask_to_box(read_mask(path))
        if box is None:
            LOG.warning("empty mask %s skipped", path)
            continue
        boxes[image_id] = box
    return boxes


# ------------------------------------------------------------------------------------------------- PH2
@dataclass(frozen=True)
class Ph2Item:
    image_id: str
    image_path: str
    mask_path: str
    diagnosis: str


def load_ph2(root: str | Path = SHARED_DATA / "ph2") -> list[Ph2Item]:
    """PH2 items from ``labels.csv`` that have both an image and a mask, sorted by id."""
    root = Path(root)
    labels_csv = root / "labels.csv"
    if not labels_csv.is_file():
        raise FileNotFoundError(f"expected PH2 labels at {labels_csv}")
    items: list[Ph2Item] = []
    missing = 0
    with labels_csv.open(newline="") as handle:
        for row in csv.DictReader(handle):
            image = root / "images" / f"{row['image_id']}.jpg"
            mask = root / "masks" / f"{row['image_id']}_segmentation.png"
            if not (image.is_file() and mask.is_file()):
                missing += 1
                continue
            items.append(Ph2Item(row["image_id"], str(image), str(mask), row["diagnosis"]))
    if missing:
        LOG.warning("PH2: %d labels.csv rows without image or mask skipped", missing)
    return sorted(items, key=lambda item: item.image_id)


def split_ph2(items: Sequence[Ph2Item], n_val: int = 50, seed: int = 0) -> dict[str, list[str]]:
    """Seeded train/validation split of PH2 ids, stratified by diagnosis; deterministic for a seed.

    Returns:
        ``{"train": [...ids], "val": [...ids], "seed": seed}`` with sorted, disjoint id lists.
    """
    if not 0 < n_val < len(items):
        raise ValueError(f"expected 0 < n_val < {len(items)}, got {n_val}")
    rng = np.random.default_rng(seed)
    by_dx: dict[str, list[str]] = {}
    for item in sorted(items, key=lambda it: it.image_id):
        by_dx.setdefault(item.diagnosis, []).append(item.image_id)
    fraction = n_val / len(items)
    val: list[str] = []
    for dx in sorted(by_dx):
        ids = list(by_dx[dx])
        rng.shuffle(ids)
        val.extend(ids[: round(len(ids) * fraction)])
    all_ids = sorted(item.image_id for item in items)
    # Rounding per stratum can miss n_val by one or two: fix it with a seeded draw.
    rest = [i for i in all_ids if i not in set(val)]
    rng.shuffle(rest)
    while len(val) < n_val:
        val.append(rest.pop())
    val = sorted(val)[:n_val] if len(val) > n_val else sorted(val)
    train = sorted(set(all_ids) - set(val))
    return {"seed": seed, "train": train, "val": val}


# ------------------------------------------------------------------------------------------ HAM boxes
@dataclass(frozen=True)
class DerivedBox:
    image_id: str
    box: tuple[float, float, float, float]  # xyxy in the 4:3 image of size `size`
    size: tuple[int, int]  # (w, h)


def box_is_plausible(
    box: np.ndarray | None, width: int, height: int, min_area: float = 0.02, max_area: float = 0.80
) -> bool:
    """Sanity checks for a derived box: area share in range, not touching all four borders, not a sliver."""
    if box is None:
        return False
    bw, bh = float(box[2] - box[0]), float(box[3] - box[1])
    if bw <= 0 or bh <= 0:
        return False
    area = bw * bh / (width * height)
    margin = 2.0
    touches = (box[0] <= margin) + (box[1] <= margin) + (box[2] >= width - margin) + (box[3] >= height - margin)
    aspect = max(bw / bh, bh / bw)
    return min_area <= area <= max_area and touches < 3 and aspect < 3.0


def ham_to_4x3(image_rgb: np.ndarray, width: int = 300) -> np.ndarray:
    """Undo HAM10000's square stretch: resize to 4:3 (``width`` x 3/4 ``width``)."""
    return cv2.resize(image_rgb, (width, width * 3 // 4), interpolation=cv2.INTER_CUBIC)


def derive_ham_boxes(
    images_dir: str | Path, width: int = 300, limit: int | None = None, progress: bool = True
) -> tuple[list[DerivedBox], dict[str, int]]:
    """Derive HAM10000 boxes with the classical segmentation; keep only plausible ones.

    Returns:
        (kept boxes, counts {"seen", "kept", "no_lesion", "implausible"}).
    """
    paths = sorted(Path(images_dir).glob("*.jpg"))[:limit]
    kept: list[DerivedBox] = []
    counts = {"seen": 0, "kept": 0, "no_lesion": 0, "implausible": 0}
    for path in _progress(paths, "deriving HAM boxes", progress):
        image = ham_to_4x3(read_rgb(path), width)
        height = image.shape[0]
        counts["seen"] += 1
        box = lesion_box(image)
        if box is None:
            counts["no_lesion"] += 1
        elif not box_is_plausible(box, width, height):
            counts["implausible"] += 1
        else:
            counts["kept"] += 1
            kept.append(DerivedBox(path.stem, tuple(round(float(v), 2) for v in box), (width, height)))
    return kept, counts


def measure_labeller(items: Sequence[Ph2Item], width: int = 300) -> dict[str, dict[str, float]]:
    """Quality of the classical labels against PH2 expert boxes, at the HAM working resolution.

    Reports the plain baseline (:func:`classical_box`), the labeller (:func:`lesion_box`) on all images,
    and the labeller on the images whose box passes :func:`box_is_plausible` (what a HAM box must pass).
    """
    base, labeller, kept, ratios = [], [], [], []
    for item in items:
        image = read_rgb(item.image_path)
        mask = read_mask(item.mask_path)
        scale = width / image.shape[1]
        image = cv2.resize(image, (width, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        truth = mask_to_box(mask) * scale
        base.append(box_iou_single(truth, classical_box(image)))
        box = lesion_box(image)
        labeller.append(box_iou_single(truth, box))
        if box_is_plausible(box, image.shape[1], image.shape[0]):
            kept.append(labeller[-1])
            ratios.append([(box[2] - box[0]) / (truth[2] - truth[0]), (box[3] - box[1]) / (truth[3] - truth[1])])
    ratio = np.median(np.asarray(ratios, np.float64), axis=0) if ratios else np.ones(2)
    return {
        "classical_box": iou_summary(base),
        "lesion_box": iou_summary(labeller),
        "lesion_box_kept": {**iou_summary(kept), "kept_share": round(len(kept) / max(1, len(items)), 4)},
        # Median (labeller / expert) box width and height: the labeller's systematic size bias.
        "size_ratio_wh": [round(float(r), 4) for r in ratio],
    }


def scale_mask(mask: np.ndarray, factor_w: float, factor_h: float) -> np.ndarray:
    """Grow (or shrink) a mask about its box centre, so its box scales by the factors (clipped to the image).

    Used to put derived HAM10000 boxes on the expert convention: the classical labeller's boxes are
    measurably smaller than the PH2 expert boxes (the experts include the faint rim).
    """
    box = mask_to_box(mask)
    if box is None or (factor_w == 1.0 and factor_h == 1.0):
        return mask
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    matrix = np.array([[factor_w, 0, cx * (1 - factor_w)], [0, factor_h, cy * (1 - factor_h)]], np.float32)
    warped = cv2.warpAffine(mask.astype(np.uint8), matrix, (mask.shape[1], mask.shape[0]), flags=cv2.INTER_NEAREST)
    return warped > 0


# ------------------------------------------------------------------------------------------ composites
INPAINT_MARGIN = 15  # the lesion mask is dilated by this square before it is inpainted away


def inpaint_hole(mask: np.ndarray) -> np.ndarray:
    """The uint8 0/1 region :func:`skin_background` inpaints: the lesion mask dilated by a margin."""
    return cv2.dilate(mask.astype(np.uint8), np.ones((INPAINT_MARGIN, INPAINT_MARGIN), np.uint8))


def skin_background(
    rng: np.random.Generator,
    size: tuple[int, int],
    source: np.ndarray | None = None,
    source_mask: np.ndarray | None = None,
) -> np.ndarray:
    """A skin-like RGB scene of ``size`` (w, h).

    With ``source`` (a real skin image) the lesion region given by ``source_mask`` is inpainted away and the
    rest is stretched to the scene; otherwise a plain skin tone with low-frequency texture. Both get a
    random lighting gradient and sensor noise.
    """
    width, height = size
    if source is not None:
        skin = source.copy()
        if source_mask is not None and source_mask.any():
            skin = cv2.inpaint(skin, inpaint_hole(source_mask), 7, cv2.INPAINT_TELEA)
        x0 = int(rng.integers(0, max(1, skin.shape[1] // 4)))
        y0 = int(rng.integers(0, max(1, skin.shape[0] // 4)))
        skin = skin[y0:, x0:]
        scene = cv2.resize(skin, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    else:
        tone = np.array([rng.uniform(170, 240), rng.uniform(120, 190), rng.uniform(100, 170)], np.float32)
        texture = cv2.resize(
            rng.normal(0, 1, (height // 24 + 2, width // 24 + 2)).astype(np.float32),
            (width, height),
            interpolation=cv2.INTER_CUBIC,
        )
        scene = tone[None, None, :] * (1.0 + 0.04 * texture[..., None])
    # Lighting: a linear gradient in a random direction plus a soft vignette.
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * (xx / width - 0.5) + np.sin(angle) * (yy / height - 0.5)
    light = 1.0 + rng.uniform(0.1, 0.45) * ramp
    radius = np.hypot(xx / width - 0.5, yy / height - 0.5)
    light *= 1.0 - rng.uniform(0.0, 0.35) * radius**2
    scene = scene * light[..., None] * rng.uniform(0.8, 1.1)
    scene += rng.normal(0, rng.uniform(1.0, 5.0), scene.shape).astype(np.float32)
    return np.clip(scene, 0, 255).astype(np.uint8)


def composite_scene(
    scene: np.ndarray,
    lesion: np.ndarray,
    lesion_mask: np.ndarray,
    rng: np.random.Generator,
    min_width: float = 0.08,
    max_width: float = 0.45,
    occupied: Sequence[np.ndarray] = (),
) -> tuple[np.ndarray, np.ndarray | None]:
    """Paste a lesion (scaled down, random position, soft elliptical edge) into ``scene``.

    Args:
        scene: RGB uint8 scene, modified copy returned.
        lesion: RGB uint8 lesion image.
        lesion_mask: bool mask of the lesion in ``lesion`` (expert or derived).
        rng: Random generator.
        min_width, max_width: Range of the pasted lesion box width as a share of the scene width.
        occupied: Boxes already in the scene; the new paste avoids overlapping them.

    Returns:
        (new scene, xyxy of the visible pasted lesion in scene pixels) or (scene, None) when it did not fit.
    """
    box = mask_to_box(lesion_mask)
    if box is None:
        return scene, None
    sh, sw = scene.shape[:2]
    lh, lw = lesion.shape[:2]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half_w, half_h = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    # Crop so that an inscribed ellipse contains the lesion box (margin > sqrt(2)), clipped to the image.
    margin = rng.uniform(1.55, 1.9)
    x0, x1 = int(max(0, cx - margin * half_w)), int(min(lw, cx + margin * half_w))
    y0, y1 = int(max(0, cy - margin * half_h)), int(min(lh, cy + margin * half_h))
    crop, crop_mask = lesion[y0:y1, x0:x1], lesion_mask[y0:y1, x0:x1]
    target_w = rng.uniform(min_width, max_width) * sw
    scale = target_w / (2 * half_w)
    new_w, new_h = max(4, round(crop.shape[1] * scale)), max(4, round(crop.shape[0] * scale))
    if new_w >= sw or new_h >= sh:
        return scene, None
    crop = cv2.resize(crop, (new_w, new_h), interpolation=cv2.INTER_AREA)
    crop_mask = cv2.resize(crop_mask.astype(np.uint8), (new_w, new_h), interpolation=cv2.INTER_NEAREST) > 0
    # Soft elliptical alpha centred on the lesion.
    yy, xx = np.mgrid[0:new_h, 0:new_w].astype(np.float32)
    ecx, ecy = (cx - x0) * scale, (cy - y0) * scale
    ellipse = ((xx - ecx) / (margin * half_w * scale)) ** 2 + ((yy - ecy) / (margin * half_h * scale)) ** 2
    feather = rng.uniform(0.15, 0.35)
    alpha = np.clip((1.0 - ellipse) / feather, 0.0, 1.0)
    # Fade out before the crop's edges (the crop may be clipped by the image border) and drop the dark
    # dermoscope vignette, so no rectangle or black corner is pasted.
    fade = max(2.0, 0.12 * min(new_w, new_h))
    edge = np.minimum(np.minimum(xx, new_w - 1 - xx), np.minimum(yy, new_h - 1 - yy))
    alpha *= np.clip(edge / fade, 0.0, 1.0)
    alpha *= field_of_view(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)).astype(np.float32)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, 0.02 * new_w))
    if rng.random() < 0.5:  # mirror the lesion (crop, mask and alpha together)
        crop, crop_mask, alpha = crop[:, ::-1], crop_mask[:, ::-1], alpha[:, ::-1]
    # Match the lesion crop's surrounding skin to the scene colour where it lands.
    for _ in range(20):
        px = int(rng.integers(0, sw - new_w + 1))
        py = int(rng.integers(0, sh - new_h + 1))
        candidate = np.array([px, py, px + new_w, py + new_h], np.float32)
        if all(box_iou_single(candidate, other) == 0.0 for other in occupied):
            break
    else:
        return scene, None
    region = scene[py : py + new_h, px : px + new_w].astype(np.float32)
    ring = (alpha > 0.05) & (alpha < 0.6) & ~crop_mask
    if ring.sum() > 20:
        gain = region[ring].mean(axis=0) / np.maximum(crop[ring].astype(np.float32).mean(axis=0), 1.0)
        gain = np.clip(gain, 0.6, 1.6)
    else:
        gain = np.ones(3, np.float32)
    pasted = np.clip(crop.astype(np.float32) * gain, 0, 255)
    blended = alpha[..., None] * pasted + (1.0 - alpha[..., None]) * region
    out = scene.copy()
    out[py : py + new_h, px : px + new_w] = blended.astype(np.uint8)
    visible = crop_mask & (alpha >= 0.5)
    vbox = mask_to_box(visible)
    if vbox is None:
        return scene, None
    return out, vbox + np.array([px, py, px, py], np.float32)


def skin_scene(
    backgrounds: Sequence[tuple[np.ndarray, np.ndarray]], scene_size: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """A lesion-free skin scene: in half the draws, when there is one, a random ``(image, mask)`` of
    ``backgrounds`` with its lesion inpainted away (:func:`skin_background`); else plain synthetic skin."""
    bg_image, bg_mask = backgrounds[int(rng.integers(len(backgrounds)))] if backgrounds else (None, None)
    use_real = rng.random() < 0.5 and bg_image is not None
    return skin_background(rng, scene_size, bg_image if use_real else None, bg_mask if use_real else None)


def composite_sample(
    sources: Sequence[tuple[np.ndarray, np.ndarray]],
    backgrounds: Sequence[tuple[np.ndarray, np.ndarray]],
    scene_size: tuple[int, int],
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """A :func:`skin_scene` with one (sometimes two) random ``(image, mask)`` lesions of ``sources`` pasted
    on, and the boxes of those that fit (an empty list when none did)."""
    scene = skin_scene(backgrounds, scene_size, rng)
    boxes: list[np.ndarray] = []
    for _ in range(2 if rng.random() < 0.15 else 1):
        lesion, lesion_mask = sources[int(rng.integers(len(sources)))]
        scene, box = composite_scene(scene, lesion, lesion_mask, rng, occupied=boxes)
        if box is not None:
            boxes.append(box)
    return scene, boxes


# ------------------------------------------------------------------------------------------ YOLO export
def _progress(iterable: Iterable, desc: str, enabled: bool = True):
    return progress(iterable, desc, enabled=enabled, min_interval=5.0)  # into the log too, every 5 s


def yolo_line(box: np.ndarray, width: int, height: int, class_id: int = 0) -> str:
    """One YOLO label line ``class cx cy w h`` (normalised) for an xyxy pixel box."""
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = max(0.0, x0), min(float(width), x1)
    y0, y1 = max(0.0, y0), min(float(height), y1)
    return (
        f"{class_id} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
        f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}"
    )


def _write_sample(out: Path, split: str, name: str, image_rgb: np.ndarray, boxes: Sequence[np.ndarray]) -> None:
    h, w = image_rgb.shape[:2]
    cv2.imwrite(
        str(out / "images" / split / f"{name}.jpg"),
        cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, 92],
    )
    (out / "labels" / split / f"{name}.txt").write_text("".join(yolo_line(b, w, h) + "\n" for b in boxes))


def _fit_long_side(image: np.ndarray, mask: np.ndarray | None, side: int):
    h, w = image.shape[:2]
    scale = side / max(h, w)
    size = (round(w * scale), round(h * scale))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if mask is not None:
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return image, mask


@dataclass
class DatasetConfig:
    """How many images of each kind go into the YOLO dataset (see training/configs/detector.yaml)."""

    ph2_root: str = str(SHARED_DATA / "ph2")
    ham_images: str = str(SHARED_DATA / "ham10000" / "images")
    ph2_val: int = 50
    split_seed: int = 0
    seed: int = 0
    ph2_copies: int = 3  # each PH2 training image: original + (copies - 1) random zoom/rotation variants
    ph2_side: int = 480  # long side of stored PH2 images
    ham_train: int = 1500
    ham_val: int = 150  # internal validation (ultralytics' best.pt selection), never PH2
    ham_width: int = 300
    composites_train: int = 700
    composites_val: int = 60
    scene_size: tuple[int, int] = (480, 360)
    correct_ham_box_size: bool = True  # scale derived HAM boxes by the labeller's measured size bias


def _ph2_variant(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
    """A random zoom-out/crop and 90-degree rotation of a PH2 image, with its mask."""
    k = int(rng.integers(0, 4))
    image, mask = np.rot90(image, k).copy(), np.rot90(mask, k).copy()
    h, w = image.shape[:2]
    box = mask_to_box(mask)
    # Random crop that keeps the whole lesion.
    cw = int(rng.uniform(0.6, 1.0) * w)
    ch = int(rng.uniform(0.6, 1.0) * h)
    cw, ch = max(cw, int(box[2] - box[0]) + 2), max(ch, int(box[3] - box[1]) + 2)
    cw, ch = min(cw, w), min(ch, h)
    x_lo, x_hi = max(0, int(box[2]) - cw), min(int(box[0]), w - cw)
    y_lo, y_hi = max(0, int(box[3]) - ch), min(int(box[1]), h - ch)
    x0 = int(rng.integers(x_lo, x_hi + 1)) if x_hi >= x_lo else 0
    y0 = int(rng.integers(y_lo, y_hi + 1)) if y_hi >= y_lo else 0
    return image[y0 : y0 + ch, x0 : x0 + cw], mask[y0 : y0 + ch, x0 : x0 + cw]


def empty_yolo_folders(out: Path) -> None:
    """Create ``images/`` and ``labels/`` (``train``, ``val``) under ``out``, emptied of an earlier build."""
    for split in ("train", "val"):
        for kind in ("images", "labels"):
            folder = out / kind / split
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.iterdir():
                old.unlink()


def write_data_yaml(out: Path, built_by: str) -> None:
    """The ultralytics ``data.yaml`` of a dataset under ``out`` (one class, ``lesion``)."""
    (out / "data.yaml").write_text(
        f"# edgeskin lesion detector dataset (built by {built_by})\n"
        f"path: {out.resolve()}\ntrain: images/train\nval: images/val\nnames:\n  0: lesion\n"
    )


class Ph2Train(NamedTuple):
    """The PH2 training images as lesion sources (``(image, mask)`` at ``ph2_side``), and how many samples
    they gave (originals and variants)."""

    sources: list[tuple[np.ndarray, np.ndarray]]
    written: int


class HamSample(NamedTuple):
    """A HAM10000 image at the working size with its derived lesion mask and box."""

    image_id: str
    image: np.ndarray
    mask: np.ndarray
    box: np.ndarray


class HamDerivation(NamedTuple):
    """The HAM samples kept for the dataset, and ``{"seen", "kept", "no_lesion", "implausible"}`` counts."""

    samples: list[HamSample]
    counts: dict[str, int]


def write_ph2_train(
    out: Path, items: Sequence[Ph2Item], config: DatasetConfig, rng: np.random.Generator, progress: bool = True
) -> Ph2Train:
    """Stage 1: each PH2 training image at ``ph2_side`` with ``ph2_copies - 1`` random variants."""
    sources: list[tuple[np.ndarray, np.ndarray]] = []
    written = 0
    for item in _progress(items, "PH2 train", progress):
        image, mask = read_rgb(item.image_path), read_mask(item.mask_path)
        image, mask = _fit_long_side(image, mask, config.ph2_side)
        sources.append((image, mask))
        _write_sample(out, "train", f"ph2_{item.image_id}", image, [mask_to_box(mask)])
        written += 1
        for copy in range(1, config.ph2_copies):
            v_image, v_mask = _ph2_variant(image, mask, rng)
            _write_sample(out, "train", f"ph2_{item.image_id}_v{copy}", v_image, [mask_to_box(v_mask)])
            written += 1
    return Ph2Train(sources, written)


def ham_box_size_correction(labeller_quality: dict, enabled: bool) -> tuple[float, float]:
    """The (w, h) factors that put derived boxes on the expert convention (the inverse of the labeller's
    measured size bias, within 0.8-1.25), or ``(1.0, 1.0)`` when not ``enabled``."""
    if not enabled:
        return (1.0, 1.0)
    return tuple(float(np.clip(1.0 / r, 0.8, 1.25)) for r in labeller_quality["size_ratio_wh"])


def derive_ham_samples(
    config: DatasetConfig, size_correction: tuple[float, float], rng: np.random.Generator, progress: bool = True
) -> HamDerivation:
    """Stage 2: HAM images in a seeded random order, segmented, until ``ham_train + ham_val`` are plausible."""
    paths = sorted(Path(config.ham_images).glob("*.jpg"))
    order = rng.permutation(len(paths))
    wanted = config.ham_train + config.ham_val
    kept: list[HamSample] = []
    counts = {"seen": 0, "kept": 0, "no_lesion": 0, "implausible": 0}
    for index in _progress(range(len(order)), "HAM boxes", progress):
        if len(kept) >= wanted:
            break
        path = paths[order[index]]
        image = ham_to_4x3(read_rgb(path), config.ham_width)
        counts["seen"] += 1
        small_mask = segment_lesion(image)
        if small_mask is None:
            counts["no_lesion"] += 1
            continue
        size = (image.shape[1], image.shape[0])
        mask = cv2.resize(small_mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        mask = scale_mask(mask, *size_correction)
        box = mask_to_box(mask)
        if not box_is_plausible(box, image.shape[1], image.shape[0]):
            counts["implausible"] += 1
            continue
        counts["kept"] += 1
        kept.append(HamSample(path.stem, image, mask, box))
    return HamDerivation(kept, counts)


def write_composites(
    out: Path,
    split: str,
    n: int,
    sources: Sequence[tuple[np.ndarray, np.ndarray]],
    backgrounds: Sequence[tuple[np.ndarray, np.ndarray]],
    scene_size: tuple[int, int],
    rng: np.random.Generator,
    progress: bool = True,
) -> int:
    """Stage 3: up to ``n`` composites (:func:`composite_sample`) named ``comp_<split>_<index>``; returns how
    many were written (a draw where no lesion fit is skipped)."""
    made = 0
    for index in _progress(range(n), f"composites {split}", progress):
        scene, boxes = composite_sample(sources, backgrounds, scene_size, rng)
        if boxes:
            _write_sample(out, split, f"comp_{split}_{index:05d}", scene, boxes)
            made += 1
    return made


def build_dataset(out_dir: str | Path, config: DatasetConfig, progress: bool = True) -> dict:
    """Write the YOLO dataset and its manifest; returns the manifest (counts, split, labeller quality).

    PH2 variants, the HAM order and the composites draw, in that order, from one generator seeded with
    ``config.seed``: moving a stage changes the files after it.
    """
    started = time.time()
    out = Path(out_dir)
    empty_yolo_folders(out)
    rng = np.random.default_rng(config.seed)
    items = load_ph2(config.ph2_root)
    split = split_ph2(items, n_val=config.ph2_val, seed=config.split_seed)
    (out / "ph2_split.json").write_text(json.dumps(split, indent=1))
    train_items = [it for it in items if it.image_id in set(split["train"])]
    ph2 = write_ph2_train(out, train_items, config, rng, progress)
    # Derived boxes go on the expert convention, measured on the PH2 *training* half only.
    labeller_quality = measure_labeller(train_items, width=config.ham_width)
    size_correction = ham_box_size_correction(labeller_quality, config.correct_ham_box_size)
    ham = derive_ham_samples(config, size_correction, rng, progress)
    ham_train, ham_val = ham.samples[: config.ham_train], ham.samples[config.ham_train :]
    for split_name, samples in (("train", ham_train), ("val", ham_val)):
        for sample in samples:
            _write_sample(out, split_name, f"ham_{sample.image_id}", sample.image, [sample.box])
    ham_train_pairs = [(sample.image, sample.mask) for sample in ham_train]
    ham_val_pairs = [(sample.image, sample.mask) for sample in ham_val]
    composites_train = write_composites(
        out,
        "train",
        config.composites_train,
        ph2.sources + ham_train_pairs,
        ham_train_pairs,
        config.scene_size,
        rng,
        progress,
    )
    composites_val = write_composites(
        out, "val", config.composites_val, ham_val_pairs, ham_val_pairs, config.scene_size, rng, progress
    )
    counts = {
        "ph2_train": ph2.written,
        "ham_train": len(ham_train),
        "ham_val": len(ham_val),
        "composite_train": composites_train,
        "composite_val": composites_val,
    }
    write_data_yaml(out, "training/detector_data.py")
    manifest = {
        "config": asdict(config),
        "counts": counts,
        "ham_box_derivation": ham.counts,
        "labeller_quality_on_ph2_train": labeller_quality,
        "ham_box_size_correction_wh": [round(v, 4) for v in size_correction],
        "ph2_split": split,
        "seconds": round(time.time() - started, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--out", default=str(REPO_ROOT / "artifacts" / "detector" / "dataset"))
    parser.add_argument(
        "--config",
        default=str(REPO_ROOT / "training" / "configs" / "detector.yaml"),
        help="YAML with a 'data' section overriding DatasetConfig fields",
    )
    parser.add_argument(
        "--measure-only",
        action="store_true",
        help="only measure the classical labeller/baseline on the PH2 split, write nothing",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = load_dataset_config(args.config)
    if args.measure_only:
        items = load_ph2(config.ph2_root)
        split = split_ph2(items, config.ph2_val, config.split_seed)
        for name in ("train", "val"):
            chosen = [it for it in items if it.image_id in set(split[name])]
            print(name, json.dumps(measure_labeller(chosen, config.ham_width)))
        return 0
    manifest = build_dataset(args.out, config)
    print(
        json.dumps(
            {k: manifest[k] for k in ("counts", "ham_box_derivation", "labeller_quality_on_ph2_train", "seconds")},
            indent=1,
        )
    )
    return 0


def load_dataset_config(path: str | Path | None) -> DatasetConfig:
    """DatasetConfig with the ``data`` section of a YAML config applied (unknown keys are an error)."""
    config = DatasetConfig()
    if path and Path(path).is_file():
        import yaml

        section = (yaml.safe_load(Path(path).read_text()) or {}).get("data", {}) or {}
        for key, value in section.items():
            if not hasattr(config, key):
                raise ValueError(f"unknown data option {key!r} in {path}; expected one of {list(asdict(config))}")
            setattr(config, key, tuple(value) if isinstance(value, list) else value)
    return config


if __name__ == "__main__":
    sys.exit(main())
