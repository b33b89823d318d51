"""Warning rates of the quality gate on real dermoscopy of every source and on degraded copies of it.

Images: HAM10000 validation images (the classifier's committed split), ISIC 2017/2018 Task 1 images and the PH2
images, read as they are (HAM10000 and ISIC at 224-256 pixels, PH2 at about 765x574). Each source's list is put
in one seeded order; ``--part choose`` takes the first ``--per-source`` images of it, ``--part report`` the next
``--per-source`` (disjoint from the first; PH2 has only 100 images, so both parts hold all of them).

Each image is also viewed closer (``zoom ×2``: its centre half, so that the lesion fills more of the frame; it
must pass like the original) and degraded: a Gaussian blur of σ pixels *at the gate's analysis size* (σ times the image's long
side / 320 in its own pixels when it is larger), a gain (×0.4 darker, ×1.6 brighter, clipped), or both. The table
gives, per source and degradation, the share of images with any quality warning and with each one, and the
measures' spread. The gate's defaults (``edgeskin/capture/quality.py``) were chosen on the ``choose`` part by the
rule in its docstring; the ``report`` part is the measurement.

    python -m benchmarks.quality_thresholds [--data ../shared/data] [--part report] [--per-source 300] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeskin.capture.quality import QualityReport, QualityThresholds, assess_quality
from edgeskin.image import read_image

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
CLASSIFIER_SPLIT = REPO / "training" / "runs" / "classifier" / "split.json"
SOURCES = ("ham10000", "isic2018_task1", "ph2")
ISSUES = ("blur", "dark", "bright")


def _blur(sigma: float) -> Callable[[np.ndarray, int], np.ndarray]:
    def degrade(image: np.ndarray, side: int) -> np.ndarray:
        scale = max(1.0, max(image.shape[:2]) / side)
        return cv2.GaussianBlur(image, (0, 0), sigma * scale)

    return degrade


def _zoom(zoom: float) -> Callable[[np.ndarray, int], np.ndarray]:
    """A closer view: the centre 1/zoom of the image, not resized (the gate measures small frames as they are;
    enlarging a 256-pixel image would blur it)."""

    def view(image: np.ndarray, side: int) -> np.ndarray:
        height, width = image.shape[:2]
        h, w = round(height / zoom), round(width / zoom)
        y, x = (height - h) // 2, (width - w) // 2
        return np.ascontiguousarray(image[y : y + h, x : x + w])

    return view


def _gain(gain: float) -> Callable[[np.ndarray, int], np.ndarray]:
    def degrade(image: np.ndarray, side: int) -> np.ndarray:
        return np.clip(np.rint(image.astype(np.float32) * gain), 0, 255).astype(np.uint8)

    return degrade


# name -> degradation; "original" first. The strong level of each kind (blur σ=3, dark ×0.4, bright ×2.2) is the
# set the acceptance's "degraded copies" figure is stated on; the milder ones show where each check stops.
DEGRADATIONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "original": lambda image, side: image,
    "zoom ×2": _zoom(2.0),  # not a degradation: a closer, in-focus view, which must pass like the originals
    "blur σ=2": _blur(2.0),
    "blur σ=3": _blur(3.0),
    "dark ×0.6": _gain(0.6),
    "dark ×0.4": _gain(0.4),
    "bright ×1.6": _gain(1.6),
    "bright ×2.2": _gain(2.2),
}
STRONG = ("blur σ=3", "dark ×0.4", "bright ×2.2")
EXPECTED = {"blur": "blur", "dark": "dark", "bright": "bright"}  # degradation kind -> the warning it should get


@dataclass(frozen=True)
class Image:
    source: str
    image_id: str
    path: Path


def source_images(data: Path, split_path: Path = CLASSIFIER_SPLIT) -> dict[str, list[Image]]:
    """Every usable image per source, sorted: HAM10000 validation images, all ISIC Task 1 images, all PH2."""
    out: dict[str, list[Image]] = {}
    ham_dir = data / "ham10000" / "images"
    val = json.loads(split_path.read_text())["val"] if split_path.is_file() else []
    out["ham10000"] = [
        Image("ham10000", i, ham_dir / f"{i}.jpg") for i in sorted(val) if (ham_dir / f"{i}.jpg").is_file()
    ]
    isic_dir = data / "isic2018_task1" / "images"
    out["isic2018_task1"] = [Image("isic2018_task1", p.stem, p) for p in sorted(isic_dir.glob("ISIC_*.jpg"))]
    ph2_dir = data / "ph2" / "images"
    out["ph2"] = [Image("ph2", p.stem, p) for p in sorted(ph2_dir.glob("IMD*.jpg"))]
    return out


def sample(images: Sequence[Image], part: str, per_source: int, seed: int) -> list[Image]:
    """The ``choose`` (first ``per_source``) or ``report`` (next ``per_source``) images of a seeded order; a
    source with no more than ``per_source`` images gives all of them to both parts."""
    order = np.random.default_rng(seed).permutation(len(images))
    if len(images) <= per_source:
        return [images[i] for i in sorted(order)]
    picked = order[:per_source] if part == "choose" else order[per_source : 2 * per_source]
    return [images[i] for i in sorted(picked)]


def measure(images: Sequence[Image], thresholds: QualityThresholds) -> list[dict]:
    """One record per image and degradation: the gate's report."""
    records = []
    for n, image in enumerate(images, 1):
        pixels = read_image(image.path)
        for name, degrade in DEGRADATIONS.items():
            report: QualityReport = assess_quality(degrade(pixels, thresholds.analysis_side), thresholds=thresholds)
            records.append({"source": image.source, "id": image.image_id, "degradation": name, **report.to_dict()})
        print(f"\r{n}/{len(images)} images", end="", file=sys.stderr)
    print(file=sys.stderr)
    return records


def summarise(records: Sequence[dict]) -> dict:
    """Per degradation (and per source within it): frames, any warning, each warning, the measures' spread;
    then the headline: originals warned, strong degraded copies warned with the expected warning."""
    table: dict[str, dict] = {}
    for name in DEGRADATIONS:
        rows = [r for r in records if r["degradation"] == name]
        if not rows:
            continue
        block = {}
        for source in ("all", *SOURCES):
            part = rows if source == "all" else [r for r in rows if r["source"] == source]
            if not part:
                continue
            block[source] = {
                "n": len(part),
                "any": sum(bool(r["issues"]) for r in part),
                **{issue: sum(issue in r["issues"] for r in part) for issue in ISSUES},
            }
        for measure_name in ("edge_softness", "skin_luminance", "median_luminance", "clipped_fraction"):
            values = np.array([r[measure_name] for r in rows], float)
            block[measure_name] = {
                q: round(float(np.percentile(values, p)), 4)
                for q, p in (("min", 0), ("p2", 2), ("p50", 50), ("p98", 98), ("max", 100))
            }
        table[name] = block
    originals = [r for r in records if r["degradation"] == "original"]
    zoomed = [r for r in records if r["degradation"] == "zoom ×2"]
    strong = [r for r in records if r["degradation"] in STRONG]
    expected = [EXPECTED[r["degradation"].split(" ")[0]] in r["issues"] for r in strong]
    table["headline"] = {
        "originals": len(originals),
        "originals_warned": sum(bool(r["issues"]) for r in originals),
        "zoomed_views": len(zoomed),
        "zoomed_views_warned": sum(bool(r["issues"]) for r in zoomed),
        "strong_copies": len(strong),
        "strong_copies_with_expected_warning": int(sum(expected)),
    }
    return table


def print_table(table: dict) -> None:
    print(f"{'frames':<13}{'source':<16}{'n':>5}{'any':>8}{'blur':>8}{'dark':>8}{'bright':>8}")
    for name in DEGRADATIONS:
        block = table.get(name)
        if block is None:
            continue
        for source in ("all", *SOURCES):
            row = block.get(source)
            if row is None:
                continue
            cells = "".join(f"{row[k] / row['n']:>8.1%}" for k in ("any", *ISSUES))
            print(f"{name:<13}{source:<16}{row['n']:>5}{cells}")
    for name in DEGRADATIONS:
        if name in table:
            spread = "  ".join(
                f"{m} {table[name][m]['min']:.2f}/{table[name][m]['p50']:.2f}/{table[name][m]['max']:.2f}"
                for m in ("edge_softness", "skin_luminance", "clipped_fraction")
            )
            print(f"{name:<13}min/p50/max  {spread}")
    head = table["headline"]
    print(
        f"originals with a warning: {head['originals_warned']} of {head['originals']}; zoomed views "
        f"{head['zoomed_views_warned']} of {head['zoomed_views']}; strong copies "
        f"({', '.join(STRONG)}) with the expected warning: {head['strong_copies_with_expected_warning']} of "
        f"{head['strong_copies']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="the shared data folder (default: ../shared/data)")
    parser.add_argument("--part", choices=("choose", "report"), default="report", help="which sample (default: report)")
    parser.add_argument("--per-source", type=int, default=300, help="images per source and part (default: 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed of each source's order (default: 0)")
    parser.add_argument("--json", type=Path, help="write the summary and every record here")
    args = parser.parse_args(argv)
    pools = source_images(args.data)
    images = [im for source in SOURCES for im in sample(pools.get(source, []), args.part, args.per_source, args.seed)]
    if not images:
        print(f"no images under {args.data}", file=sys.stderr)
        return 1
    thresholds = QualityThresholds()
    records = measure(images, thresholds)
    table = summarise(records)
    print(
        f"part {args.part}, seed {args.seed}: {', '.join(f'{s} {sum(i.source == s for i in images)}' for s in SOURCES)}"
    )
    print_table(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        document = {"part": args.part, "seed": args.seed, "thresholds": thresholds.__dict__, "summary": table}
        args.json.write_text(json.dumps({**document, "records": records}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
