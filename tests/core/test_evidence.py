"""The unsure-band evidence is integer arithmetic after an integer block mean: the same verdict on every CPU."""

from __future__ import annotations

import numpy as np
import pytest

from edgeskin.core.evidence import _block_mean, _spread, lesion_evidence


@pytest.mark.parametrize(("height", "width", "factor"), [(480, 640, 3), (574, 765, 3), (97, 131, 2), (50, 60, 1)])
def test_the_block_mean_is_the_rounded_mean_of_whole_blocks(height, width, factor):
    frame = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    small = _block_mean(frame, factor)
    assert small.shape == (height // factor, width // factor, 3) and small.dtype == np.uint8
    blocks = frame[: height // factor * factor, : width // factor * factor].astype(np.float64)
    mean = blocks.reshape(height // factor, factor, width // factor, factor, 3).mean(axis=(1, 3))
    assert np.array_equal(small, np.floor(mean + 0.5).astype(np.uint8))


def test_the_spread_is_the_exact_variance():
    values = np.random.default_rng(0).integers(0, 256, 100_000).astype(np.uint8)
    assert _spread(values) == pytest.approx(float(np.var(values.astype(np.float64))), rel=1e-12)
    assert _spread(np.full(10, 7, np.uint8)) == 0.0 and _spread(np.zeros(0, np.uint8)) == 0.0


def test_the_same_frame_gives_the_same_evidence_at_any_work_side_multiple():
    """A frame twice as large, made of 2x2 copies of each pixel, gives exactly the evidence of the original."""
    rng = np.random.default_rng(1)
    frame = np.clip(rng.normal(170, 20, (240, 320, 3)), 0, 255).astype(np.uint8)
    frame[80:160, 100:220] //= 3
    doubled = frame.repeat(2, axis=0).repeat(2, axis=1)
    box = np.array([100, 80, 220, 160], np.float32)
    assert lesion_evidence(doubled, box * 2, work_side=320) == lesion_evidence(frame, box, work_side=320)
