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
