"""edgeskin.core.localize: the classical lesion localisers on synthetic frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeskin.core.localize import classical_box, field_of_view, lesion_box, segment_lesion


def skin_frame(width: int = 400, height: int = 300, vignette: bool = False, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frame = np.empty((height, width, 3), np.float32)
    frame[:] = (215, 170, 150)
    frame += rng.normal(0, 3, frame.shape)
    if vignette:
        yy, xx = np.mgrid[0:height, 0:width]
        outside = np.hypot((xx - width / 2) / (width / 2), (yy - height / 2) / (height / 2)) > 1.05
        frame[outside] = 10
    return np.clip(frame, 0, 255).astype(np.uint8)


def add_blob(frame: np.ndarray, centre: tuple[int, int], axes: tuple[int, int]) -> np.ndarray:
    out = frame.copy()
    cv2.ellipse(out, centre, axes, 0, 0, 360, (90, 55, 40), -1)
    return out


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("centre,axes", [((200, 150), (60, 40)), ((120, 100), (30, 25)), ((290, 200), (50, 30))])
@pytest.mark.parametrize("locate", [classical_box, lesion_box])
def test_localisers_find_a_dark_blob(locate, centre, axes) -> None:
    frame = add_blob(skin_frame(), centre, axes)
    truth = [centre[0] - axes[0], centre[1] - axes[1], centre[0] + axes[0] + 1, centre[1] + axes[1] + 1]
    box = locate(frame)
    assert box is not None and box.dtype == np.float32
    assert iou(box, truth) > 0.85


def test_lesion_box_ignores_the_dermoscope_vignette() -> None:
    frame = add_blob(skin_frame(vignette=True), (200, 150), (50, 35))
    box = lesion_box(frame)
    assert box is not None
    assert iou(box, [150, 115, 251, 186]) > 0.85


def test_field_of_view_excludes_dark_corners() -> None:
    grey = cv2.cvtColor(skin_frame(vignette=True), cv2.COLOR_RGB2GRAY)
    fov = field_of_view(grey)
    assert not fov[0, 0] and not fov[-1, -1] and fov[150, 200]


def test_plain_skin_has_no_lesion_for_the_careful_segmenter() -> None:
    assert segment_lesion(np.full((120, 160, 3), 200, np.uint8)) is None


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((4, 4, 3), np.uint8), "image"])
def test_bad_input_is_rejected(bad) -> None:
    with pytest.raises(ValueError, match="expected"):
        classical_box(bad)
