from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeskin.core.crop import crop_with_margin
from edgeskin.errors import ConfigError, ImageError

FRAME = np.arange(480 * 640 * 3, dtype=np.uint32).reshape(480, 640, 3).astype(np.uint8)


@pytest.mark.parametrize(
    ("box", "kwargs", "expected"),
    [
        # 100x100 box, 15% margin each side -> 130x130 around the centre
        ([200, 100, 300, 200], {}, [185, 85, 315, 215]),
        ([200, 100, 300, 200], {"margin": 0.0}, [200, 100, 300, 200]),
        # 100x50 box -> square side max(130, 65) = 130
        ([200, 100, 300, 150], {}, [185, 60, 315, 190]),
        ([200, 100, 300, 150], {"square": False}, [185, 92, 315, 157]),
        # near the left/top edge: the square window slides inside the frame
        ([0, 0, 100, 100], {}, [0, 0, 130, 130]),
        # near the bottom-right corner
        ([560, 400, 640, 480], {}, [536, 376, 640, 480]),
        # tiny box grows to min_size
        ([10, 10, 11, 11], {"min_size": 8}, [6, 6, 14, 14]),
        # box larger than the frame: clipped to the frame, cannot stay square
        ([-50, -50, 700, 500], {}, [0, 0, 640, 480]),
        # partly outside: clipped to 40x100 first, then squared to 100x100 inside the frame
        ([600, 10, 700, 110], {"margin": 0.0}, [540, 10, 640, 110]),
    ],
)
def test_crop_window(box, kwargs, expected):
    crop, crop_box = crop_with_margin(FRAME, box, **kwargs)
    assert crop_box.dtype == np.int32
    assert crop_box.tolist() == expected
    x0, y0, x1, y1 = expected
    np.testing.assert_array_equal(crop, FRAME[y0:y1, x0:x1])


def test_crop_is_a_copy():
    frame = FRAME.copy()
    crop, _ = crop_with_margin(frame, [10, 10, 50, 50])
    crop[:] = 0
    assert frame[20, 20].any()


def test_crop_of_gray_frame():
    crop, box = crop_with_margin(np.zeros((100, 100), np.uint8), [10, 10, 30, 30])
    assert crop.ndim == 2 and crop.shape == (box[3] - box[1], box[2] - box[0])


@pytest.mark.parametrize(
    ("box", "match"),
    [
        ([50, 50, 50, 80], "degenerate"),
        ([60, 50, 40, 80], "degenerate"),
        ([700, 10, 800, 100], "outside the frame"),
        ([-100, -100, -10, -10], "outside the frame"),
        ([0, 0, np.nan, 10], "finite"),
        ([0, 0, 10], "4 finite numbers"),
    ],
)
def test_bad_box_is_a_clear_error(box, match):
    with pytest.raises(ValueError, match=match):
        crop_with_margin(FRAME, box)


@pytest.mark.parametrize(
    ("image", "kwargs", "error"),
    [
        (np.zeros((0, 10, 3), np.uint8), {}, ImageError),
        (FRAME, {"margin": -0.1}, ConfigError),
        (FRAME, {"min_size": 0}, ConfigError),
    ],
)
def test_bad_arguments(image, kwargs, error):
    with pytest.raises(error):
        crop_with_margin(image, [1, 1, 5, 5], **kwargs)


@settings(max_examples=80, deadline=None)
@given(
    st.tuples(st.integers(1, 300), st.integers(1, 300)),
    st.tuples(st.floats(-50, 350), st.floats(-50, 350), st.floats(0.5, 200), st.floats(0.5, 200)),
    st.floats(0, 1),
    st.booleans(),
)
def test_crop_property_never_empty_and_contains_box(frame_hw, box_xywh, margin, square):
    h, w = frame_hw
    x, y, bw, bh = box_xywh
    box = [x, y, x + bw, y + bh]
    clipped = np.clip(box, 0, [w, h, w, h])
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        with pytest.raises(ValueError):
            crop_with_margin(np.zeros((h, w, 3), np.uint8), box, margin=margin, square=square)
        return
    crop, (x0, y0, x1, y1) = crop_with_margin(np.zeros((h, w, 3), np.uint8), box, margin=margin, square=square)
    assert crop.size > 0 and crop.shape == (y1 - y0, x1 - x0, 3)
    assert 0 <= x0 <= np.floor(clipped[0]) and 0 <= y0 <= np.floor(clipped[1])
    assert np.ceil(clipped[2]) <= x1 <= w and np.ceil(clipped[3]) <= y1 <= h
    if square and (x1 - x0) < w and (y1 - y0) < h:  # room in the frame on both axes: square to a pixel
        assert abs((x1 - x0) - (y1 - y0)) <= 1


def test_square_crop_near_the_frame_edge_stays_square():
    # Found by hypothesis: rounding an 8.5 px side, then widening one axis to cover the box's pixels
    # (rows 1..10), gave an 8x10 window although the frame had room for a 10x10 square.
    crop, (x0, y0, x1, y1) = crop_with_margin(np.zeros((11, 12, 3), np.uint8), [0.0, 1.75, 1.0, 10.25], margin=0.0)
    assert (x1 - x0) == (y1 - y0) == 10 and y0 <= 1 and y1 >= 11 and crop.shape == (10, 10, 3)
