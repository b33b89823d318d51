"""False-positive rate of the lesion pipeline on frames that contain no skin lesion.

Frames (seeded, generated in memory, nothing written):

* ``skin (PH2 val)`` / ``skin (PH2 train)``: plain skin crops from PH2 dermoscopy images, taken outside the
  expert lesion mask (dilated by 5 % of the image diagonal) and inside the lit field of view (the dark
  dermoscope vignette is excluded), 4:3, resized to the frame size. ``val`` are the PH2 images the
  detector never trained on (``training/runs/detector/ph2_split.json``).
* ``natural (original)``: the four photos of ``../shared/data/non_lesion`` as they are.
* ``natural (augmented)``: random 4:3 crops of them (35-100 % of the short side), horizontal flips, output
  scale 0.5-1x of the frame size, brightness x0.6-1.4 and contrast x0.8-1.2.

A frame with at least one lesion reported is a false positive. The table gives the rate overall and per
source; ``--json OUT`` writes it with every frame's top detector score. ``--sweep`` also runs the detector
alone at a low threshold on the non-lesion frames and on the PH2 validation images (top box against the
tight box of the expert mask) and prints, for each confidence threshold, the non-lesion FP rate and the
PH2 IoU>=0.5 detection rate (the trade-off behind the detector's threshold); then the same at the spec's
threshold with a darkness-contrast gate on the top box (``edgeskin.tasks.detector.darkness_contrast``, the
classical detector's ``min_contrast``): is the box darker than the skin around it?

    python benchmarks/non_lesion_fpr.py [--classifier M] [--detector M|classical] [--json OUT] [--sweep]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeskin.image import read_image

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
SPLIT = REPO / "training" / "runs" / "detector" / "ph2_split.json"  # the detector's PH2 split (committed)
FRAME_SIZE = (640, 480)  # width, height
NATURAL_PHOTOS = ("panda.jpg", "cat.bmp", "bird.bmp", "grace_hopper.bmp")
MIN_CROP_HEIGHT = 96
SOURCES = ("skin (PH2 val)", "skin (PH2 train)", "natural (original)", "natural (augmented)")
SWEEP_THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8)
CONTRAST_GATES = (0.0, 0.02, 0.04, 0.05, 0.06, 0.08, 0.1, 0.15)


@dataclass(frozen=True)
class Frame:
    name: str
    source: str
    pixels: np.ndarray


# -- frame generation ---------------------------------------------------------------------------------------


def ph2_split(path: Path = SPLIT) -> dict[str, list[str]]:
    """``{"train": [...], "val": [...]}`` PH2 ids of the detector split; all ids as val when it is absent."""
    if path.is_file():
        split = json.loads(path.read_text())
        return {"train": list(split["train"]), "val": list(split["val"])}
    ids = sorted(p.name[: -len("_segmentation.png")] for p in (DATA / "ph2" / "masks").glob("*_segmentation.png"))
    return {"train": [], "val": ids}


def skin_region(image: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """Pixels where a skin crop may lie: outside the dilated lesion mask and inside the field of view."""
    from edgeskin.core.localize import field_of_view

    height, width = lesion.shape
    radius = max(5, round(0.05 * float(np.hypot(height, width))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    near_lesion = cv2.dilate(lesion.astype(np.uint8), kernel) > 0
    fov = field_of_view(cv2.cvtColor(image, cv2.COLOR_RGB2LAB)[..., 0])
    return fov & ~near_lesion


def _valid_corners(bad: np.ndarray, crop_h: int, crop_w: int) -> np.ndarray:
    """(k, 2) top-left (y, x) of every crop_h x crop_w window without a forbidden pixel; ``bad`` is the
    zero-padded integral image of the forbidden pixels."""
    if crop_h >= bad.shape[0] or crop_w >= bad.shape[1]:
        return np.empty((0, 2), np.int64)
    sums = bad[crop_h:, crop_w:] - bad[:-crop_h, crop_w:] - bad[crop_h:, :-crop_w] + bad[:-crop_h, :-crop_w]
    return np.argwhere(sums == 0)


def skin_crops(
    image: np.ndarray, lesion: np.ndarray, count: int, rng: np.random.Generator, size: tuple[int, int] = FRAME_SIZE
) -> list[np.ndarray]:
    """Up to ``count`` plain-skin 4:3 crops of a dermoscopy image, resized to ``size`` (width, height)."""
    allowed = skin_region(image, lesion)
    bad = np.pad((~allowed).astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    aspect = size[0] / size[1]
    largest = 0
    for crop_h in range(min(allowed.shape[0], int(allowed.shape[1] / aspect)), MIN_CROP_HEIGHT - 1, -16):
        if len(_valid_corners(bad, crop_h, round(crop_h * aspect))):
            largest = crop_h
            break
    crops = []
    for _ in range(count if largest else 0):
        crop_h = int(rng.integers(max(MIN_CROP_HEIGHT, int(0.6 * largest)), largest + 1))
        crop_w = round(crop_h * aspect)
        corners = _valid_corners(bad, crop_h, crop_w)
        if not len(corners):
            crop_h, crop_w = largest, round(largest * aspect)
            corners = _valid_corners(bad, crop_h, crop_w)
        y, x = corners[rng.integers(len(corners))]
        crop = image[y : y + crop_h, x : x + crop_w]
        crops.append(cv2.resize(crop, size, interpolation=cv2.INTER_AREA if crop_h > size[1] else cv2.INTER_LINEAR))
    return crops


def augment_photo(photo: np.ndarray, rng: np.random.Generator, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """A random 4:3 crop of ``photo``, maybe flipped, scaled, with its brightness and contrast changed."""
    height, width = photo.shape[:2]
    aspect = size[0] / size[1]
    full_h = min(height, int(width / aspect))
    crop_h = max(32, int(full_h * rng.uniform(0.35, 1.0)))
    crop_w = min(width, round(crop_h * aspect))
    y = int(rng.integers(0, height - crop_h + 1))
    x = int(rng.integers(0, width - crop_w + 1))
    frame = photo[y : y + crop_h, x : x + crop_w]
    if rng.random() < 0.5:
        frame = frame[:, ::-1]
    scale = rng.uniform(0.5, 1.0)
    out = (max(32, round(size[0] * scale)), max(32, round(size[1] * scale)))
    frame = cv2.resize(np.ascontiguousarray(frame), out, interpolation=cv2.INTER_AREA)
    values = frame.astype(np.float32)
    mean = values.mean()
    values = (values - mean) * rng.uniform(0.8, 1.2) + mean * rng.uniform(0.6, 1.4)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def generate_frames(
    data: Path = DATA,
    *,
    seed: int = 0,
    skin_per_image: int = 1,
    augmented_per_photo: int = 20,
    ph2_ids: dict[str, list[str]] | None = None,
    max_ph2_images: int | None = None,
    size: tuple[int, int] = FRAME_SIZE,
) -> Iterator[Frame]:
    """The non-lesion frames, seeded: PH2 skin crops (val, then train ids), then the natural photos."""
    rng = np.random.default_rng(seed)
    split = ph2_split() if ph2_ids is None else ph2_ids
    for part in ("val", "train"):
        ids = split.get(part, [])[:max_ph2_images]
        for image_id in ids:
            image_path = data / "ph2" / "images" / f"{image_id}.jpg"
            mask_path = data / "ph2" / "masks" / f"{image_id}_segmentation.png"
            if not (image_path.is_file() and mask_path.is_file()):
                continue
            image = read_image(image_path)
            lesion = read_image(mask_path, min_size=1)[..., 0] > 127
            for k, crop in enumerate(skin_crops(image, lesion, skin_per_image, rng, size)):
                yield Frame(f"{image_id}-skin{k}", f"skin (PH2 {part})", crop)
    for name in NATURAL_PHOTOS:
        path = data / "non_lesion" / name
        if not path.is_file():
            continue
        photo = read_image(path)
        yield Frame(name, "natural (original)", photo)
        for k in range(augmented_per_photo):
            yield Frame(f"{Path(name).stem}-aug{k}", "natural (augmented)", augment_photo(photo, rng, size))


# -- measurement --------------------------------------------------------------------------------------------


def measure(pipeline, frames: Sequence[Frame]) -> list[dict]:
    """One record per frame: source, lesions reported, top detector score, top diagnosis."""
    records = []
    for frame in frames:
        result = pipeline.predict(frame.pixels, source=frame.name)
        top = result.lesions[0] if result.lesions else None
        records.append(
            {
                "name": frame.name,
                "source": frame.source,
                "size": list(result.image_size),
                "lesions": len(result.lesions),
                "top_score": None if top is None else round(float(top.score), 4),
                "top_dx": None if top is None else top.label,
                "detector_unsure": None if top is None else top.detector_unsure,
                "messages": list(result.messages),
            }
        )
    return records


def summarise(records: Sequence[dict]) -> dict[str, dict]:
    """FP count and rate overall and per source."""

    def block(rows: Sequence[dict]) -> dict:
        fp = sum(r["lesions"] > 0 for r in rows)
        return {"frames": len(rows), "false_positives": fp, "fp_rate": round(fp / len(rows), 4) if rows else None}

    table = {source: block([r for r in records if r["source"] == source]) for source in SOURCES}
    table = {k: v for k, v in table.items() if v["frames"]}
    table["natural (all)"] = block([r for r in records if r["source"].startswith("natural")])
    table["skin (all)"] = block([r for r in records if r["source"].startswith("skin")])
    table["overall"] = block(records)
    return table


def _top_boxes(detector, frames: Sequence[np.ndarray]) -> list[tuple[np.ndarray | None, float, float]]:
    """Per frame: the top box (or None), its score (0 without a box) and its darkness contrast."""
    from edgeskin.tasks.detector import darkness_contrast

    out = []
    for pixels in frames:
        detections = detector.detect(pixels)
        if len(detections.confidence):
            best = int(np.argmax(detections.confidence))
            box = np.asarray(detections.xyxy[best])
            out.append((box, float(detections.confidence[best]), darkness_contrast(pixels, box)))
        else:
            out.append((None, 0.0, 0.0))
    return out


def sweep(detector_path: str, frames: Sequence[Frame], data: Path = DATA, threads: int | None = None) -> dict:
    """Non-lesion FP rate and PH2-val IoU>=0.5 rate of the top box, per detector confidence threshold, and per
    darkness-contrast gate (the classical detector's ``min_contrast``) applied to the model's top box at the
    spec's threshold."""
    from edgeskin.core.boxes import box_iou, mask_to_box
    from edgeskin.tasks.detector import Detector, DetectorOptions

    val_ids = ph2_split()["val"]
    with Detector.create(DetectorOptions(detector_path, confidence_threshold=0.01, num_threads=threads)) as detector:
        spec_threshold = float(detector.spec.thresholds.get("confidence", 0.25))
        negatives = _top_boxes(detector, [f.pixels for f in frames])
        truths, images = [], []
        for image_id in val_ids:
            image_path = data / "ph2" / "images" / f"{image_id}.jpg"
            if image_path.is_file():
                images.append(read_image(image_path))
                lesion = read_image(data / "ph2" / "masks" / f"{image_id}_segmentation.png", min_size=1)[..., 0] > 127
                truths.append(mask_to_box(lesion))
        positives = _top_boxes(detector, images)
    ious = np.array(
        [
            0.0 if box is None else float(box_iou(box[np.newaxis], truth[np.newaxis])[0, 0])
            for (box, _, _), truth in zip(positives, truths, strict=True)
        ]
    )
    neg_score = np.array([s for _, s, _ in negatives])
    neg_contrast = np.array([c for _, _, c in negatives])
    natural = np.array([f.source.startswith("natural") for f in frames])
    pos_score = np.array([s for _, s, _ in positives])
    pos_contrast = np.array([c for _, _, c in positives])

    def row(kept_neg: np.ndarray, kept_pos: np.ndarray, **key) -> dict:
        return {
            **key,
            "fp_rate": round(float(kept_neg.mean()), 4),
            "fp_rate_natural": round(float(kept_neg[natural].mean()), 4) if natural.any() else None,
            "fp_rate_skin": round(float(kept_neg[~natural].mean()), 4) if (~natural).any() else None,
            "ph2_val_iou50_rate": round(float((kept_pos & (ious >= 0.5)).mean()), 4),
            "ph2_val_any_box_rate": round(float(kept_pos.mean()), 4),
        }

    rows = [row(neg_score >= t, pos_score >= t, threshold=t) for t in SWEEP_THRESHOLDS]
    gates = [
        row(
            (neg_score >= spec_threshold) & (neg_contrast >= g),
            (pos_score >= spec_threshold) & (pos_contrast >= g),
            threshold=spec_threshold,
            min_contrast=g,
        )
        for g in CONTRAST_GATES
    ]
    return {
        "ph2_val_images": len(images),
        "non_lesion_frames": len(frames),
        "rows": rows,
        "contrast_gate": gates,
        "ph2_val_top": [
            {"score": round(s, 4), "iou": round(float(v), 4), "contrast": round(c, 4)}
            for (_, s, c), v in zip(positives, ious, strict=True)
        ],
        "non_lesion_top": [
            {"name": f.name, "score": round(s, 4), "contrast": round(c, 4)}
            for f, (_, s, c) in zip(frames, negatives, strict=True)
        ],
    }


def _print_rows(rows: Sequence[dict], key: str) -> None:
    print(f"{key:>12s} {'FP all':>7s} {'FP nat':>7s} {'FP skin':>7s} {'PH2 IoU>=.5':>11s} {'PH2 any':>8s}")
    for r in rows:
        print(f"{r[key]:12.2f} {r['fp_rate']:7.3f} {r['fp_rate_natural'] or 0:7.3f} {r['fp_rate_skin'] or 0:7.3f} "
              f"{r['ph2_val_iou50_rate']:11.3f} {r['ph2_val_any_box_rate']:8.3f}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classifier", help="classifier .tflite (default: the shipped one)")
    parser.add_argument("--detector", help="detector .tflite or 'classical' (default: the shipped one)")
    parser.add_argument("--min-confidence", type=float, default=None, help="detector threshold (default: the spec's)")
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder (ph2/, non_lesion/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skin-per-image", type=int, default=1, help="skin crops per PH2 image (default 1)")
    parser.add_argument("--augmented-per-photo", type=int, default=20, help="augmented frames per photo (default 20)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--sweep", action="store_true", help="also the threshold trade-off table (model detector)")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON here")
    args = parser.parse_args(argv)

    from edgeskin.models import default_classifier_path, default_detector_path
    from edgeskin.runtime.spec import sha256_file
    from edgeskin.tasks.pipeline import CLASSICAL, LesionPipeline, PipelineOptions

    classifier = args.classifier or str(default_classifier_path())
    detector = args.detector or str(default_detector_path())
    detector = CLASSICAL if detector.lower() == CLASSICAL else detector
    frames = list(
        generate_frames(
            args.data, seed=args.seed, skin_per_image=args.skin_per_image, augmented_per_photo=args.augmented_per_photo
        )
    )
    if not frames:
        print(f"no frame: neither {args.data / 'ph2'} nor {args.data / 'non_lesion'} has images", file=sys.stderr)
        return 2
    options = PipelineOptions(
        classifier, detector=detector, min_confidence=args.min_confidence, cam=False, num_threads=args.threads
    )
    start = time.perf_counter()
    with LesionPipeline.create(options) as pipeline:
        threshold = getattr(pipeline.detector, "confidence_threshold", getattr(pipeline.detector, "min_contrast", None))
        records = measure(pipeline, frames)
    seconds = time.perf_counter() - start
    table = summarise(records)

    print(f"classifier {classifier}\ndetector   {detector} (confidence >= {threshold})")
    print(f"{len(frames)} non-lesion frames, seed {args.seed}, {seconds:.1f} s\n")
    print(f"{'source':22s} {'frames':>6s} {'FP':>4s} {'FP rate':>8s}")
    for source, row in table.items():
        print(f"{source:22s} {row['frames']:6d} {row['false_positives']:4d} {row['fp_rate']:8.3f}")
    report = {
        "classifier": {"path": classifier, "sha256": sha256_file(classifier)},
        "detector": {"path": detector, "sha256": None if detector == CLASSICAL else sha256_file(detector)},
        "confidence_threshold": threshold,
        "seed": args.seed,
        "frame_size": list(FRAME_SIZE),
        "table": table,
        "frames": records,
    }
    if args.sweep and detector != CLASSICAL:
        result = sweep(detector, frames, args.data, args.threads)
        report["sweep"] = result
        print(
            f"\nthreshold trade-off (top box; {result['ph2_val_images']} PH2 val images, {len(frames)} non-lesion frames)"
        )
        _print_rows(result["rows"], "threshold")
        print(f"\ndarkness-contrast gate on the top box at confidence >= {result['contrast_gate'][0]['threshold']}")
        _print_rows(result["contrast_gate"], "min_contrast")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
