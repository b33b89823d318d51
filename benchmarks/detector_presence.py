"""Presence threshold of the lesion detector: missed real lesions against false lesions on non-lesion frames.

Runs one detector (the INT8/float TFLite model through ``edgeskin.tasks.Detector``, or float PyTorch
weights through ultralytics) at a very low confidence on

* the held-out dermoscopy sets with expert masks (``training.detector_masks.heldout_sets``): the PH2
  validation half (``training/runs/detector/ph2_split.json``), the held-out third of the ISIC 2017/2018
  images and the HAM10000 validation images (``training/runs/detector/isic_holdout.json``);
* the validation slices of the detector dataset (``--dataset``): close-ups (``close_*``: the lesion fills
  most or all of the frame) and composites (``comp_*``: small, off-centre lesions on skin scenes);
* the non-lesion frames of ``benchmarks/non_lesion_fpr.py`` (PH2 skin crops and the non-lesion photos,
  seed 0, the detector's PH2 split),

and keeps each image's top box and score. From these it derives, for every threshold of a grid, the share
of each lesion set whose top score is below it ("no lesion found" if it is the lower threshold) and the
share of non-lesion frames at or above it (a lesion reported). :func:`choose_thresholds` picks the
presence threshold (lowest with non-lesion false lesions <= ``--max-fp``) and the lower "unsure"
threshold (highest at or below it with "no lesion found" <= ``--max-miss`` on every held-out set, or on the
sets named by ``--choose-on``, and on no malignant lesion there: melanoma, BCC, akiec/AK/SCC). ``--json`` writes the per-image records, the curve
and the choice; ``--records`` reads them back to choose and report again without running a model.

    python benchmarks/detector_presence.py --model edgeskin/models/edgeskin-yolov5n-det.tflite \\
        --dataset /work/artifacts/detector/dataset --json OUT.json [--plot OUT.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from edgeskin.core.boxes import box_iou

REPO = Path(__file__).resolve().parents[1]
PH2_SPLIT = REPO / "training" / "runs" / "detector" / "ph2_split.json"
HELDOUT_SETS = ("ph2_val", "isic_heldout", "ham_val")
SLICES = ("closeup_val", "composite_val")
GRID = tuple(round(v, 2) for v in np.arange(0.02, 0.96, 0.01))
MELANOMA = ("mel", "melanoma")
# The diagnoses "no lesion found" must never fall on (the classifier's malignant classes; PH2's labels included).
MALIGNANT = (*MELANOMA, "bcc", "akiec", "ak", "scc")

Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


# -- predictors ---------------------------------------------------------------------------------------------
def tflite_predictor(path: str | Path, threads: int | None = None, confidence: float = 0.01) -> tuple[Predict, dict]:
    """``image -> (boxes, scores)`` through the runtime's Detector at a low confidence, and its timings."""
    from edgeskin.tasks.detector import Detector

    detector = Detector.from_model(path, confidence_threshold=confidence, threads=threads, max_det=10)
    invoke: list[float] = []

    def predict(image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        detections = detector.detect(image_rgb)
        invoke.append(detector.last_timings_ms["invoke_ms"])
        return detections.xyxy, detections.confidence

    return predict, {"invoke_ms": invoke}


def torch_predictor(weights: str | Path, imgsz: int = 320, confidence: float = 0.01) -> tuple[Predict, dict]:
    """``image -> (boxes, scores)`` with float PyTorch weights (ultralytics, offline)."""
    from training.train_detector import apply_offline_settings, ultralytics_predictor

    apply_offline_settings(Path("/tmp") / "edgeskin-yolo-config")
    return ultralytics_predictor(weights, imgsz, conf=confidence), {}


# -- images -------------------------------------------------------------------------------------------------
def lesion_sets(dataset: Path | None) -> dict[str, list[tuple[str, str, Callable[[], tuple[np.ndarray, list]]]]]:
    """``{set: [(image_id, dx, load)]}`` where ``load() -> (image_rgb, [truth boxes xyxy])``."""
    from training.detector_masks import MaskDatasetConfig, box_from_mask, heldout_sets, read_pair

    config = MaskDatasetConfig()
    sets = heldout_sets(config, PH2_SPLIT)
    out: dict[str, list] = {}
    for name in HELDOUT_SETS:
        rows = []
        for item in sets[name]:

            def load(item=item):
                width = config.ham_width if item.source == "ham10000" else None
                image, mask = read_pair(item, width)
                return image, [box_from_mask(mask)]

            rows.append((item.image_id, item.dx, load))
        out[name] = rows
    if dataset is not None:
        out.update(dataset_slices(dataset))
    return out


def dataset_slices(dataset: Path) -> dict[str, list[tuple[str, str, Callable[[], tuple[np.ndarray, list]]]]]:
    """The validation close-ups and composites of a dataset built by ``training.detector_masks``, as
    ``{"closeup_val": [(name, "", load)], "composite_val": [...]}`` with ``load() -> (image_rgb, [boxes xyxy])``."""
    from training.train_detector import read_yolo_boxes

    out: dict[str, list] = {}
    for name, prefix in (("closeup_val", "close_val_"), ("composite_val", "comp_val_")):
        rows = []
        for path in sorted((Path(dataset) / "images" / "val").glob(f"{prefix}*.jpg")):
            label = Path(dataset) / "labels" / "val" / f"{path.stem}.txt"

            def load(path=path, label=label):
                image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
                h, w = image.shape[:2]
                return image, list(read_yolo_boxes(label, w, h))

            rows.append((path.stem, "", load))
        out[name] = rows
    return out


def non_lesion_frames(seed: int = 0):
    """The frames of benchmarks/non_lesion_fpr.py with the detector's PH2 split."""
    from benchmarks.non_lesion_fpr import generate_frames

    split = json.loads(PH2_SPLIT.read_text())
    return list(generate_frames(seed=seed, ph2_ids={"train": split["train"], "val": split["val"]}))


# -- measurement --------------------------------------------------------------------------------------------
def top_record(boxes: np.ndarray, scores: np.ndarray, truths: Sequence[np.ndarray]) -> dict:
    """Top box, its score and its best IoU with a truth box (0 without a box or truth)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    if not len(scores):
        return {"score": 0.0, "iou": 0.0, "box": None}
    top = int(np.argmax(scores))
    iou = (
        float(box_iou(boxes[top : top + 1], np.asarray(truths, np.float32).reshape(-1, 4)).max())
        if len(truths)
        else 0.0
    )
    return {
        "score": round(float(scores[top]), 4),
        "iou": round(iou, 4),
        "box": [round(float(v), 1) for v in boxes[top]],
    }


def measure(predict: Predict, sets: dict, frames: Iterable) -> dict:
    records: dict[str, list[dict]] = {}
    for name, rows in sets.items():
        records[name] = []
        for image_id, dx, load in rows:
            image, truths = load()
            boxes, scores = predict(image)
            records[name].append({"id": image_id, "dx": dx, **top_record(boxes, scores, truths)})
    records["non_lesion"] = []
    for frame in frames:
        boxes, scores = predict(frame.pixels)
        records["non_lesion"].append({"id": frame.name, "source": frame.source, **top_record(boxes, scores, [])})
    return records


def curve(records: dict, grid: Sequence[float] = GRID) -> list[dict]:
    """Per threshold: each lesion set's share with top score below it, PH2 val top-box hits at or above it
    (score >= t and IoU >= 0.5), and the non-lesion frames' share at or above it."""
    rows = []
    for t in grid:
        row: dict = {"threshold": t}
        for name, recs in records.items():
            scores = np.array([r["score"] for r in recs])
            if not len(scores):
                continue
            if name == "non_lesion":
                row["non_lesion_fp"] = round(float((scores >= t).mean()), 4)
            else:
                row[f"{name}_below"] = round(float((scores < t).mean()), 4)
                mel = [r for r in recs if r.get("dx") in MELANOMA]
                if mel:
                    row[f"{name}_melanoma_below"] = int(sum(r["score"] < t for r in mel))
                malignant = [r for r in recs if r.get("dx") in MALIGNANT]
                if malignant:
                    row[f"{name}_malignant_below"] = int(sum(r["score"] < t for r in malignant))
        ph2 = records.get("ph2_val", [])
        if ph2:
            row["ph2_val_reported_hit"] = round(float(np.mean([r["score"] >= t and r["iou"] >= 0.5 for r in ph2])), 4)
        rows.append(row)
    return rows


def choose_thresholds(
    rows: Sequence[dict], max_fp: float = 0.02, max_miss: float = 0.01, choose_on: Sequence[str] = HELDOUT_SETS
) -> dict:
    """Presence: the lowest threshold with non-lesion false lesions <= max_fp. Unsure: the highest threshold
    at or below presence with "no lesion found" <= max_miss on every set of ``choose_on`` (held-out sets by
    default) and on no malignant lesion there (melanoma, BCC, akiec/AK/SCC; a curve written before this
    field existed is checked on its melanomas)."""
    unknown = sorted(set(choose_on) - set(HELDOUT_SETS) - set(SLICES))
    if unknown or not choose_on:
        raise ValueError(f"choose_on: expected some of {HELDOUT_SETS + SLICES}, got {list(choose_on)}")
    presence_rows = [r for r in rows if r.get("non_lesion_fp", 1.0) <= max_fp]
    if not presence_rows:
        raise ValueError(f"no threshold keeps the non-lesion false-lesion rate <= {max_fp}")
    presence = min(presence_rows, key=lambda r: r["threshold"])
    ok = []
    for r in rows:
        if r["threshold"] > presence["threshold"]:
            continue
        misses = [r.get(f"{s}_below", 0.0) for s in choose_on]
        malignant = [r.get(f"{s}_malignant_below", r.get(f"{s}_melanoma_below", 0)) for s in choose_on]
        if max(misses) <= max_miss and max(malignant) == 0:
            ok.append(r)
    unsure = max(ok, key=lambda r: r["threshold"]) if ok else min(rows, key=lambda r: r["threshold"])
    return {
        "presence": presence["threshold"],
        "unsure": unsure["threshold"],
        "rule": (
            f"presence: lowest threshold with lesions reported on <= {max_fp:.0%} of the non-lesion frames; "
            f"unsure: highest threshold <= presence with 'no lesion found' on <= {max_miss:.0%} of each of "
            f"{', '.join(choose_on)} and on no malignant lesion there (melanoma, BCC, akiec/AK/SCC; chosen in-sample "
            "on these sets)"
        ),
        "choose_on": list(choose_on),
        "at_presence": presence,
        "at_unsure": unsure,
    }


def breakdown(records: dict, presence: float, unsure: float) -> dict:
    """Per set and per diagnosis: images, reported (>= presence), unsure, "no lesion found" (< unsure),
    and the IoU of the top box (mean; share >= 0.5 among reported)."""
    out: dict = {}
    for name, recs in records.items():
        groups: dict[str, list[dict]] = {"all": recs}
        if name != "non_lesion":
            for r in recs:
                if r.get("dx"):
                    groups.setdefault(r["dx"], []).append(r)
        else:
            for r in recs:
                groups.setdefault(r["source"], []).append(r)
        block = {}
        for key, rows in sorted(groups.items()):
            scores = np.array([r["score"] for r in rows])
            ious = np.array([r["iou"] for r in rows])
            reported = scores >= presence
            entry = {
                "n": len(rows),
                "reported": int(reported.sum()),
                "unsure": int(((scores >= unsure) & ~reported).sum()),
                "no_lesion_found": int((scores < unsure).sum()),
            }
            if name != "non_lesion":
                entry["no_lesion_found_rate"] = round(float((scores < unsure).mean()), 4)
                entry["top_mean_iou"] = round(float(ious.mean()), 4)
                entry["top_iou50"] = round(float((ious >= 0.5).mean()), 4)
                entry["reported_hit_iou50"] = round(float((reported & (ious >= 0.5)).mean()), 4)
                entry["reported_mean_iou"] = round(float(np.where(reported, ious, 0.0).mean()), 4)
            else:
                entry["reported_rate"] = round(float(reported.mean()), 4)
            block[key] = entry
        out[name] = block
    return out


def plot(rows: Sequence[dict], choice: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["threshold"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for key, label in (
        ("ph2_val_below", "PH2 val: top score below"),
        ("isic_heldout_below", "ISIC held-out: below"),
        ("ham_val_below", "HAM val: below"),
        ("closeup_val_below", "close-ups: below"),
        ("composite_val_below", "composites: below"),
        ("non_lesion_fp", "non-lesion frames: at or above"),
    ):
        if key in rows[0]:
            ax.plot(t, [r[key] for r in rows], label=label, linestyle="--" if key == "non_lesion_fp" else "-")
    ax.axvline(choice["presence"], color="k", linewidth=0.8)
    ax.axvline(choice["unsure"], color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("top-box score threshold")
    ax.set_ylabel("share of images")
    ax.set_ylim(0, 0.3)
    ax.set_title(f"presence {choice['presence']}, unsure band from {choice['unsure']}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="detector .tflite, or float .pt weights (or --records)")
    parser.add_argument("--dataset", type=Path, help="detector dataset dir with the close_val_/comp_val_ slices")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-fp", type=float, default=0.02, help="non-lesion false-lesion rate for presence")
    parser.add_argument("--max-miss", type=float, default=0.01, help="'no lesion found' rate for unsure")
    parser.add_argument(
        "--choose-on",
        nargs="+",
        default=list(HELDOUT_SETS),
        choices=HELDOUT_SETS + SLICES,
        help="the lesion sets the unsure threshold is chosen on (the others are only measured)",
    )
    parser.add_argument(
        "--records",
        type=Path,
        help="a --json file of an earlier run: choose and report from its per-image records (no model is run)",
    )
    parser.add_argument("--presence", type=float, help="report at this presence threshold instead of choosing")
    parser.add_argument("--unsure", type=float, help="report at this unsure threshold instead of choosing")
    parser.add_argument("--json", type=Path, help="write records, curve and choice here")
    parser.add_argument("--plot", type=Path, help="write the curve as a PNG here")
    args = parser.parse_args(argv)

    if (args.model is None) == (args.records is None):
        parser.error("give either --model or --records")
    start = time.perf_counter()
    extra: dict = {}
    if args.records is not None:
        earlier = json.loads(args.records.read_text())
        records, args.model = earlier["records"], earlier["model"]
        extra = {"invoke_ms": None, "earlier": earlier.get("invoke_ms")}
    elif str(args.model).endswith(".pt"):
        predict, extra = torch_predictor(args.model)
    else:
        predict, extra = tflite_predictor(args.model, args.threads)
    if args.records is None:
        records = measure(predict, lesion_sets(args.dataset), non_lesion_frames())
    rows = curve(records)
    choice = choose_thresholds(rows, args.max_fp, args.max_miss, args.choose_on)
    presence = args.presence if args.presence is not None else choice["presence"]
    unsure = args.unsure if args.unsure is not None else choice["unsure"]
    table = breakdown(records, presence, unsure)
    result = {
        "model": str(args.model),
        "seconds": round(time.perf_counter() - start, 1),
        "choice": choice,
        "reported_at": {"presence": presence, "unsure": unsure},
        "breakdown": table,
        "curve": rows,
        "records": records,
    }
    if extra.get("invoke_ms"):
        values = np.array(extra["invoke_ms"])
        result["invoke_ms"] = {"p50": round(float(np.median(values)), 3), "mean": round(float(values.mean()), 3)}
    elif extra.get("earlier"):
        result["invoke_ms"] = extra["earlier"]  # measured by the run that made the records
    print(f"chosen: presence {choice['presence']}, unsure {choice['unsure']}; reporting at {presence} / {unsure}")
    for name, block in table.items():
        for key, entry in block.items():
            print(f"{name:14s} {key:22s} {json.dumps(entry)}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.plot:
        plot(rows, {"presence": presence, "unsure": unsure}, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
