"""Shades of Gray: the vectorised limb moments equal the exact Python-integer moments, bit for bit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeskin.core.preprocess import _LIMB_BITS, _sog_limbs, _sog_weights, shades_of_gray


@pytest.mark.parametrize("power", [1.0, 2.0, 6.0, 2.5, 7.3, 20.0])
def test_limb_moments_equal_the_python_integer_moments(power: float) -> None:
    weights, _ = _sog_weights(power)
    rng = np.random.default_rng(int(power * 10))
    for trial in range(10):
        image = rng.integers(0, 256, (int(rng.integers(1, 200)), int(rng.integers(1, 200)), 3)).astype(np.uint8)
        if trial == 0:
            image[...] = 255  # the largest moments
        hists = np.stack([cv2.calcHist([image], [c], None, [256], [0, 256]).ravel() for c in range(3)])
        parts = (hists.astype(np.int64) @ _sog_limbs(power)).tolist()
        fast = [sum(int(v) << (_LIMB_BITS * k) for k, v in enumerate(row)) for row in parts]
        exact = [
            sum(int(h) * w for h, w in zip(hist.astype(np.int64).tolist(), weights, strict=True)) for hist in hists
        ]
        assert fast == exact


def test_shades_of_gray_keeps_its_output_for_a_known_image() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 200, 100, 50
    out = shades_of_gray(image, 6)
    # A flat image: every channel is scaled to the same grey level.
    assert out[..., 0].max() - out[..., 0].min() == 0
    assert abs(int(out[0, 0, 0]) - int(out[0, 0, 1])) <= 1 and abs(int(out[0, 0, 1]) - int(out[0, 0, 2])) <= 1
