"""Time each preprocessing operation on a real 768x576 dermoscopy frame (and at 224x224).

Usage:
    python benchmarks/preprocess_timing.py [--image PATH ...] [--repeat N] [--threads T]

Prints one row per operation: median and best milliseconds at 768x576 (the frame) and the median at
224x224 (the model-input size, where profiles run in the pipeline). Hair removal cost grows with the
amount of hair found, so it is reported per image when several images are given.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edgeskin.bench import time_ms as timed_runs
from edgeskin.core import (
    clahe_lightness,
    denoise,
    get_profile,
    hair_mask,
    letterbox,
    normalize,
    remove_hair,
    resize_stretch,
    shades_of_gray,
)
from edgeskin.image import read_image

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = [REPO_ROOT / ".." / "shared" / "data" / "ph2" / "images" / "IMD002.jpg"]
FRAME_SIZE = (576, 768)  # (height, width)
INPUT_SIZE = (224, 224)

OPERATIONS: dict[str, Callable[[np.ndarray], object]] = {
    "hair_mask": hair_mask,
    "remove_hair (inpaint)": remove_hair,
    "remove_hair (closing)": lambda img: remove_hair(img, fill="closing"),
    "denoise median k3": lambda img: denoise(img, "median", 3),
    "denoise bilateral d5": lambda img: denoise(img, "bilateral", 5),
    "shades_of_gray p6": shades_of_gray,
    "clahe L (2.0, 8x8)": clahe_lightness,
    "normalize": lambda img: normalize(img, 127.5, 127.5),
    "profile colour": get_profile("colour").apply,
    "profile dermoscopy": get_profile("dermoscopy").apply,
}


def time_ms(func: Callable[[np.ndarray], object], image: np.ndarray, repeat: int) -> tuple[float, float]:
    """Median and best milliseconds of ``repeat`` calls on ``image``, after one warm-up (allocations, dispatch)."""
    samples = timed_runs(lambda: func(image), repeat, warmup=1)
    return statistics.median(samples), min(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, action="append", help="PH2/dermoscopy image (repeatable)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per operation (default 20)")
    parser.add_argument(
        "--threads", type=int, default=1, help="OpenCV threads (default 1: the per-core cost, as on a Pi core)"
    )
    args = parser.parse_args(argv)
    cv2.setNumThreads(args.threads)
    paths = args.image or DEFAULT_IMAGES
    for path in paths:
        if not path.exists():
            print(f"error: {path} not found; pass --image PATH (a 768x576-ish dermoscopy image)", file=sys.stderr)
            return 2

    for path in paths:
        original = read_image(path)
        frame, _ = resize_stretch(original, FRAME_SIZE)
        small, _ = resize_stretch(original, INPUT_SIZE)
        hair_fraction = hair_mask(frame).mean() / 255
        print(
            f"\n{path.name}: {original.shape[1]}x{original.shape[0]} -> 768x576, "
            f"hair mask {hair_fraction:.1%} of pixels; OpenCV {cv2.__version__}, {cv2.getNumThreads()} thread(s), "
            f"median of {args.repeat} runs"
        )
        rows = [
            (name, *time_ms(func, frame, args.repeat), time_ms(func, small, args.repeat)[0])
            for name, func in OPERATIONS.items()
        ]
        rows.append(
            ("letterbox -> 320x320", *time_ms(lambda im: letterbox(im, (320, 320)), frame, args.repeat), float("nan"))
        )
        rows.append(
            ("resize -> 224x224", *time_ms(lambda im: resize_stretch(im, INPUT_SIZE), frame, args.repeat), float("nan"))
        )
        width = max(len(r[0]) for r in rows)
        print(f"| {'operation':<{width}} | 768x576 median ms | 768x576 best ms | 224x224 median ms |")
        print(f"|{'-' * (width + 2)}|------------------:|----------------:|------------------:|")
        for name, median, best, small_median in rows:
            small_text = "-" if np.isnan(small_median) else f"{small_median:.2f}"
            print(f"| {name:<{width}} | {median:17.2f} | {best:15.2f} | {small_text:>17} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
