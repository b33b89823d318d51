from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgeskin.core import boxes as boxes_module
from edgeskin.core.boxes import (
    box_area,
    box_iou,
    clip_boxes,
    mask_to_box,
    nms,
    pair_iou,
    xywh_to_xyxy,
    xyxy_to_xywh,
)
from edgeskin.errors import ConfigError

FAST = settings(max_examples=60, deadline=None)


def reference_iou(a, b) -> float:
    """Plain-Python IoU, written independently of the vectorised code."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def reference_nms(boxes, scores, iou_threshold, score_threshold=0.0, max_det=None, class_ids=None) -> list[int]:
    """Brute-force greedy NMS: every candidate is compared with every kept box, in score order."""
    boxes = [[float(v) for v in b] for b in np.asarray(boxes, dtype=np.float32)]
    order = sorted((i for i in range(len(scores)) if scores[i] >= score_threshold), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    for i in order:
        same_class = [j for j in keep if class_ids is None or class_ids[j] == class_ids[i]]
        if all(reference_iou(boxes[i], boxes[j]) <= iou_threshold for j in same_class):
            keep.append(i)
    return keep if max_det is None else keep[:max_det]


def random_boxes(rng: np.random.Generator, n: int, integer: bool) -> np.ndarray:
    xy = rng.uniform(0, 100, (n, 2))
    wh = rng.uniform(1, 60, (n, 2))
    if integer:  # integer coordinates make exact ties and IoU == threshold likely
        xy, wh = np.round(xy), np.round(wh)
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


# --- conversions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("xywh", "xyxy"),
    [
        ([50, 40, 20, 10], [40, 35, 60, 45]),
        ([0, 0, 0, 0], [0, 0, 0, 0]),
        ([10.5, 20.5, 1, 3], [10, 19, 11, 22]),
    ],
)
def test_centre_xywh_and_xyxy_convert_both_ways(xywh, xyxy):
    np.testing.assert_allclose(xywh_to_xyxy(xywh), xyxy)
    np.testing.assert_allclose(xyxy_to_xywh(xyxy), xywh)
    assert xywh_to_xyxy(xywh).dtype == np.float32


def test_conversions_keep_leading_dimensions():
    boxes = np.random.default_rng(0).uniform(0, 50, (2, 5, 4)).astype(np.float32)
    assert xywh_to_xyxy(boxes).shape == (2, 5, 4)
    np.testing.assert_allclose(xyxy_to_xywh(xywh_to_xyxy(boxes)), boxes, atol=1e-4)


@pytest.mark.parametrize("bad", [np.zeros((3, 5)), np.zeros(3), 5.0])
def test_conversion_rejects_wrong_shape(bad):
    with pytest.raises(ValueError, match=r"expected boxes of shape \(\.\.\., 4\)"):
        xywh_to_xyxy(bad)


@FAST
@given(hnp.arrays(np.float32, st.tuples(st.integers(0, 8), st.just(4)), elements=st.floats(-1e4, 1e4, width=32)))
def test_xyxy_xywh_round_trip_property(boxes):
    back = xywh_to_xyxy(xyxy_to_xywh(boxes))
    assert back.shape == boxes.shape and back.dtype == np.float32
    np.testing.assert_allclose(back, boxes, atol=2e-3 * (1 + np.abs(boxes).max(initial=0)))


# --- clip and area -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "clipped"),
    [
        ([-5, -5, 50, 50], [0, 0, 50, 50]),
        ([10, 10, 200, 150], [10, 10, 100, 80]),
        ([120, 90, 130, 95], [100, 80, 100, 80]),
        ([20, 30, 40, 50], [20, 30, 40, 50]),
    ],
)
def test_clip_boxes_to_width_height(box, clipped):
    np.testing.assert_array_equal(clip_boxes([box], (100, 80)), [clipped])


def test_clip_does_not_modify_input():
    boxes = np.array([[-1, -1, 500, 500]], np.float32)
    clip_boxes(boxes, (10, 10))
    assert boxes[0, 0] == -1


@pytest.mark.parametrize(("box", "area"), [([0, 0, 10, 5], 50), ([5, 5, 5, 9], 0), ([10, 10, 0, 0], 0)])
def test_box_area(box, area):
    assert box_area([box])[0] == area


# --- IoU ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "iou"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching edges
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
        ([0, 0, 10, 10], [2, 2, 4, 4], 4 / 100),  # contained
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # empty union
    ],
)
def test_box_iou_known_values(a, b, iou):
    assert box_iou([a], [b])[0, 0] == pytest.approx(iou, abs=1e-6)


def test_box_iou_matches_reference_matrix():
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, 7, False), random_boxes(rng, 5, True)
    expected = [[reference_iou(x, y) for y in b] for x in a]
    result = box_iou(a, b)
    assert result.shape == (7, 5) and result.dtype == np.float32
    np.testing.assert_allclose(result, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("a", "b", "iou"),
    [
        (None, None, 1.0),  # two frames without a box agree
        (None, [0, 0, 10, 10], 0.0),
        ([0, 0, 10, 10], None, 0.0),
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 1 / 3),
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
        ([5, 5, 5, 5], [5, 5, 5, 5], 0.0),  # zero-area boxes: empty union, IoU 0 (as box_iou)
    ],
)
def test_pair_iou_convention_for_missing_and_empty_boxes(a, b, iou):
    a = None if a is None else np.array(a, np.float32)
    b = None if b is None else np.array(b, np.float32)
    assert pair_iou(a, b) == pytest.approx(iou)
    assert pair_iou(b, a) == pytest.approx(iou)


def test_box_iou_empty_sets():
    assert box_iou(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)


@FAST
@given(
    hnp.arrays(np.float32, (4, 4), elements=st.floats(0, 100, width=32)),
    hnp.arrays(np.float32, (3, 4), elements=st.floats(0, 100, width=32)),
)
def test_box_iou_properties(a, b):
    iou = box_iou(a, b)
    assert np.all((iou >= 0) & (iou <= 1 + 1e-6))
    np.testing.assert_allclose(iou, box_iou(b, a).T, atol=1e-6)


# --- NMS ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("iou_threshold", [0.0, 0.3, 0.5, 0.7])
def test_nms_matches_brute_force_reference(seed, iou_threshold):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    boxes = random_boxes(rng, n, integer=seed % 2 == 1)
    scores = rng.uniform(0, 1, n).round(1 if seed % 3 == 0 else 6)  # rounding makes ties
    kept = nms(boxes, scores, iou_threshold)
    assert kept.dtype == np.int64
    assert kept.tolist() == reference_nms(boxes, scores, iou_threshold)


@pytest.mark.parametrize("class_aware", [False, True])
def test_nms_of_many_candidates_matches_reference(class_aware):
    # More box pairs than the scalar path takes: the vectorised row-at-a-time loop answers, with the same rule.
    rng = np.random.default_rng(7)
    n = boxes_module._NMS_SCALAR_PAIRS // 5 + 50
    boxes, scores = random_boxes(rng, n, True), rng.uniform(0, 1, n).round(2)
    classes = rng.integers(0, 3, n) if class_aware else None
    for max_det in (None, 5):
        kept = nms(boxes, scores, 0.45, max_det=max_det, class_ids=classes)
        expected = reference_nms(boxes, scores, 0.45, class_ids=classes)
        assert kept.tolist() == (expected if max_det is None else expected[:max_det])


def test_nms_iou_exactly_at_threshold_is_kept():
    boxes = [[0, 0, 10, 10], [5, 0, 15, 10]]  # IoU = 1/3 exactly in float64
    assert nms(boxes, [0.9, 0.8], iou_threshold=50 / 150).tolist() == [0, 1]
    assert nms(boxes, [0.9, 0.8], iou_threshold=0.3).tolist() == [0]


def test_nms_ties_keep_lower_index():
    assert nms([[0, 0, 10, 10], [0, 0, 10, 10]], [0.5, 0.5], 0.5).tolist() == [0]


@pytest.mark.parametrize(
    ("score_threshold", "max_det", "expected"),
    [(0.0, None, [2, 0, 3]), (0.35, None, [2, 0]), (0.0, 2, [2, 0]), (0.95, None, [])],
)
def test_nms_score_threshold_and_max_det(score_threshold, max_det, expected):
    boxes = [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [100, 0, 110, 10]]
    scores = [0.8, 0.7, 0.9, 0.3]
    assert nms(boxes, scores, 0.5, score_threshold, max_det).tolist() == expected


@pytest.mark.parametrize("seed", range(6))
def test_class_aware_nms_matches_reference(seed):
    rng = np.random.default_rng(100 + seed)
    n = 30
    boxes, scores, classes = random_boxes(rng, n, True), rng.uniform(0, 1, n), rng.integers(0, 3, n)
    assert nms(boxes, scores, 0.4, class_ids=classes).tolist() == reference_nms(boxes, scores, 0.4, class_ids=classes)


def test_nms_empty_input():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"scores": [0.5]}, ValueError, "expected 2 scores"),
        ({"scores": [0.5, np.nan]}, ValueError, "finite"),
        ({"iou_threshold": 1.5}, ConfigError, r"expected a value in \[0, 1\]"),
        ({"max_det": 0}, ConfigError, "positive integer"),
    ],
)
def test_nms_rejects_bad_arguments(kwargs, error, match):
    args = {"xyxy": [[0, 0, 1, 1], [0, 0, 2, 2]], "scores": [0.5, 0.4], "iou_threshold": 0.5} | kwargs
    with pytest.raises(error, match=match):
        nms(**args)


@FAST
@given(
    st.integers(0, 25).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.float32, (n, 4), elements=st.floats(0, 64, width=32)),
            hnp.arrays(np.float64, (n,), elements=st.floats(0, 1)),
        )
    ),
    st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]),
)
def test_nms_property_matches_reference(data, iou_threshold):
    corners, scores = data
    boxes = np.concatenate([np.minimum(corners[:, :2], corners[:, 2:]), np.maximum(corners[:, :2], corners[:, 2:])], 1)
    kept = nms(boxes, scores, iou_threshold)
    assert kept.tolist() == reference_nms(boxes, scores, iou_threshold)
    if len(kept) > 1:  # no two kept boxes overlap more than the threshold, scores non-increasing
        iou = box_iou(boxes[kept], boxes[kept]).astype(np.float64)
        np.fill_diagonal(iou, 0)
        assert iou.max() <= iou_threshold + 1e-6
        assert np.all(np.diff(scores[kept]) <= 0)


# --- mask to box -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "box"),
    [
        ((slice(2, 5), slice(3, 9)), [3, 2, 9, 5]),
        ((slice(0, 1), slice(0, 1)), [0, 0, 1, 1]),
        ((slice(0, 20), slice(0, 30)), [0, 0, 30, 20]),
    ],
)
def test_mask_to_box_is_tight_with_exclusive_end(region, box):
    mask = np.zeros((20, 30), np.uint8)
    mask[region] = 255
    result = mask_to_box(mask)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, box)


def test_mask_to_box_of_two_blobs_and_3d_mask():
    mask = np.zeros((20, 30, 1), bool)
    mask[1, 2] = mask[10, 25] = True
    np.testing.assert_array_equal(mask_to_box(mask), [2, 1, 26, 11])


def test_mask_to_box_empty_is_none():
    assert mask_to_box(np.zeros((5, 5), np.uint8)) is None


@pytest.mark.shared
def test_mask_to_box_on_real_ph2_mask(shared_file):
    mask = cv2.imread(str(shared_file("data/ph2/masks/IMD002_segmentation.png")), cv2.IMREAD_GRAYSCALE)
    x0, y0, x1, y1 = mask_to_box(mask).astype(int)
    ys, xs = np.nonzero(mask)
    assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert not mask[:, :x0].any() and not mask[:y0].any() and not mask[:, x1:].any() and not mask[y1:].any()
