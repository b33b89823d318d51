"""training.train_detector.average_precision_50 matches boxes per image and scores them with edgeskin's one AP."""

from __future__ import annotations

import numpy as np
import pytest

from training.train_detector import average_precision_50


def _box(x: float, y: float, size: float = 10.0) -> np.ndarray:
    return np.array([x, y, x + size, y + size], np.float32)


def test_average_precision_50_by_hand() -> None:
    # Ranked: 0.9 hit (image 1), 0.8 miss (image 1, far away), 0.7 hit (image 2, IoU 0.67 >= 0.5).
    # Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1: the envelope gives AP = 1/2 * 1 + 1/2 * 2/3.
    per_image = [
        (np.stack([_box(0, 0), _box(50, 50)]), np.array([0.9, 0.8]), np.stack([_box(0, 0)])),
        (np.stack([_box(2, 0)]), np.array([0.7]), np.stack([_box(0, 0)])),
    ]
    assert average_precision_50(per_image) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_average_precision_50_duplicates_and_empty_cases() -> None:
    one = np.stack([_box(0, 0)])
    # A second box on the same truth is a duplicate (false positive) after the first one matched.
    assert average_precision_50([(np.stack([_box(0, 0), _box(1, 0)]), np.array([0.9, 0.8]), one)]) == pytest.approx(1.0)
    assert average_precision_50([(np.zeros((0, 4)), np.zeros(0), one)]) == 0.0  # no predictions
    assert average_precision_50([(one, np.array([0.5]), np.zeros((0, 4)))]) == 0.0  # no ground truth


def test_read_yolo_boxes_to_pixels(tmp_path) -> None:
    from training.train_detector import read_yolo_boxes

    label = tmp_path / "a.txt"
    label.write_text("0 0.5 0.25 0.2 0.5\n\n0 0.1 0.9 0.2 0.2\n")
    boxes = read_yolo_boxes(label, width=200, height=100)
    np.testing.assert_allclose(boxes, [[80, 0, 120, 50], [0, 80, 40, 100]], atol=1e-4)
    label.write_text("")
    assert read_yolo_boxes(label, 10, 10).shape == (0, 4)  # a hard negative: no box
    label.write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(ValueError, match="class cx cy w h"):
        read_yolo_boxes(label, 10, 10)
