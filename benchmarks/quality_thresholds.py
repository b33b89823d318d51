"""Measure the quality gate's figures on real PH2 frames and degraded versions of them.

Each PH2 image is turned into camera-like frames (a centred 4:3 view at zoom 1x, 1.6x and 2x, resized to
320x240, JPEG-compressed at quality 75), then blurred, darkened or brightened. The table shows the
distribution of each measure and the share of frames each default threshold flags: the defaults in
``edgeskin/capture/quality.py`` were chosen from it (no original flagged by exposure, at most 1 % by blur).

    python benchmarks/quality_thresholds.py [--images ../shared/data/ph2/images]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from edgeskin.capture.quality import QualityThresholds, assess_quality
from edgeskin.image import read_image

DEFAULT_IMAGES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ph2" / "images"


def camera_view(image: np.ndarray, zoom: float, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    height, width = image.shape[:2]
    aspect = size[0] / size[1]
    view_h = min(height, width / aspect) / zoom
    view_w = view_h * aspect
    y0, x0 = int((height - view_h) / 2), int((width - view_w) / 2)
    view = cv2.resize(image[y0 : y0 + int(view_h), x0 : x0 + int(view_w)], size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", view[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 75])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].copy()


DEGRADATIONS = {
    "original": lambda im: im,
    "blur σ=2": lambda im: cv2.GaussianBlur(im, (0, 0), 2),
    "blur σ=3": lambda im: cv2.GaussianBlur(im, (0, 0), 3),
    "blur σ=4": lambda im: cv2.GaussianBlur(im, (0, 0), 4),
    "dark ×0.4": lambda im: (im * 0.4).astype(np.uint8),
    "dark ×0.25": lambda im: (im * 0.25).astype(np.uint8),
    "bright ×1.6": lambda im: np.clip(im * 1.6, 0, 255).astype(np.uint8),
    "bright ×2.2": lambda im: np.clip(im * 2.2, 0, 255).astype(np.uint8),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of PH2 IMD*.jpg images")
    parser.add_argument("--zooms", type=float, nargs="+", default=[1.0, 1.6, 2.0])
    args = parser.parse_args(argv)
    paths = sorted(args.images.glob("IMD*.jpg"))
    if not paths:
        print(f"no IMD*.jpg images in {args.images}", file=sys.stderr)
        return 1
    th = QualityThresholds()
    rows: dict[str, list] = {name: [] for name in DEGRADATIONS}
    for i, path in enumerate(paths, 1):
        image = read_image(path)
        for name, degrade in DEGRADATIONS.items():
            degraded = degrade(image)
            for zoom in args.zooms:
                rows[name].append(assess_quality(camera_view(degraded, zoom), thresholds=th))
        print(f"\r{i}/{len(paths)} images", end="", file=sys.stderr)
    print(file=sys.stderr)
    print(f"{len(paths)} PH2 images x zooms {args.zooms}; thresholds: {th}")
    print(
        f"{'frames':<13}{'sharpness min/p5/p50':>24}{'luma min/p50/max':>20}{'clipped max':>12}"
        f"{'blur':>7}{'dark':>7}{'bright':>8}"
    )
    for name, reports in rows.items():
        sharp = np.array([r.sharpness for r in reports])
        luma = np.array([r.mean_luminance for r in reports])
        clipped = np.array([r.clipped_fraction for r in reports])
        share = {issue: np.mean([issue in r.issues for r in reports]) for issue in ("blur", "dark", "bright")}
        print(
            f"{name:<13}{sharp.min():>8.1f}/{np.percentile(sharp, 5):.1f}/{np.median(sharp):.1f}"
            f"{luma.min():>10.0f}/{np.median(luma):.0f}/{luma.max():.0f}{clipped.max():>12.2f}"
            f"{share['blur']:>7.0%}{share['dark']:>7.0%}{share['bright']:>8.0%}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
