"""Crop a detected lesion with some surrounding skin, for the classifier."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from edgeskin.errors import ConfigError, ImageError

__all__ = ["crop_with_margin"]


def crop_with_margin(
    image: np.ndarray,
    xyxy: ArrayLike,
    margin: float = 0.15,
    square: bool = True,
    min_size: int = 8,
    *,
    copy: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Crop a box plus a margin of surrounding skin, clipped to the frame.

    The box is first clipped to the frame, grown by ``margin`` times its width and height on each
    side, made square around its centre (``square=True``, so the classifier's resize does not distort
    the lesion) and enlarged to at least ``min_size`` pixels. A window that sticks out of the frame is
    shifted back inside when it fits, so it stays square; otherwise it is clipped. The clipped box is
    always inside the crop.

    Args:
        image: (H, W) or (H, W, C) frame.
        xyxy: (4,) box ``[x0, y0, x1, y1]`` in frame pixels.
        margin: Fraction of the box size added on each side (>= 0).
        square: Make the crop square.
        min_size: Smallest crop side in pixels (the frame permitting).
        copy: Return a copy of the pixels; False: a view into ``image`` (no copy; do not modify it).

    Returns:
        ``(crop, crop_box)``: the cropped pixels (a copy unless ``copy=False``) and the (4,) int32 ``[x0, y0, x1, y1]``
        crop window in frame pixels (x1/y1 exclusive).

    Raises:
        ImageError: the frame is empty or not an image array.
        ValueError: the box is not 4 finite numbers, is degenerate (zero width or height) or lies
            outside the frame.
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or 0 in image.shape[:2]:
        shape = getattr(image, "shape", type(image).__name__)
        raise ImageError(f"expected a non-empty (H, W) or (H, W, C) image array, got {shape}")
    if margin < 0 or not math.isfinite(margin):
        raise ConfigError(f"margin: expected a finite value >= 0, got {margin}")
    if min_size < 1:
        raise ConfigError(f"min_size: expected a positive number of pixels, got {min_size}")
    box = np.asarray(xyxy, dtype=np.float64).reshape(-1)
    values = box.tolist()  # Python floats: the same doubles, and scalar arithmetic without numpy's per-op cost
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"box: expected 4 finite numbers [x0, y0, x1, y1], got {np.asarray(xyxy).tolist()}")
    height, width = image.shape[:2]
    x0, y0, x1, y1 = values
    cx0, cy0 = min(max(x0, 0.0), width), min(max(y0, 0.0), height)
    cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
    if cx1 <= cx0 or cy1 <= cy0:
        where = "is degenerate" if (x1 <= x0 or y1 <= y0) else "lies outside the frame"
        raise ValueError(
            f"box: expected a box with positive width and height inside the {width}x{height} frame, "
            f"got {box.round(2).tolist()}, which {where}"
        )

    box_w, box_h = cx1 - cx0, cy1 - cy0
    # Integer side lengths that always cover the (clipped) box's pixels, so rounding never cuts it.
    len_w = max(math.ceil(box_w * (1 + 2 * margin) - 1e-9), math.ceil(cx1) - math.floor(cx0), min_size)
    len_h = max(math.ceil(box_h * (1 + 2 * margin) - 1e-9), math.ceil(cy1) - math.floor(cy0), min_size)
    if square:
        len_w = len_h = max(len_w, len_h)
    left, right = _window((cx0 + cx1) / 2, len_w, cx0, cx1, width)
    top, bottom = _window((cy0 + cy1) / 2, len_h, cy0, cy1, height)
    crop_box = np.array([left, top, right, bottom], dtype=np.int32)
    crop = image[top:bottom, left:right]
    return (crop.copy() if copy else crop), crop_box


def _window(centre: float, length: int, lo: float, hi: float, limit: int) -> tuple[int, int]:
    """One axis of the crop window: integer [start, start + length) around ``centre``, inside [0, limit],
    containing [lo, hi] (``length`` >= ceil(hi) - floor(lo)); the whole axis when ``length`` >= ``limit``."""
    if length >= limit:
        return 0, limit
    start = math.floor(centre - length / 2)
    start = max(min(start, math.floor(lo)), math.ceil(hi) - length)  # the box stays inside
    start = min(max(start, 0), limit - length)  # the window stays inside the frame
    return start, start + length
