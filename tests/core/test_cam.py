from __future__ import annotations

import numpy as np
import pytest

from edgeskin.core.cam import class_activation_map, upsample_cam
from edgeskin.errors import ConfigError


def head_logits(features: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """A GAP -> Dense classification head, in float64."""
    return features.mean(axis=(0, 1)) @ weights + bias


def numeric_gradient(features: np.ndarray, weights: np.ndarray, bias: np.ndarray, k: int) -> np.ndarray:
    """d logit_k / d features by central differences (no knowledge of the head's algebra)."""
    grad = np.zeros_like(features)
    eps = 1e-4
    for index in np.ndindex(features.shape):
        bumped = features.copy()
        bumped[index] += eps
        up = head_logits(bumped, weights, bias)[k]
        bumped[index] -= 2 * eps
        down = head_logits(bumped, weights, bias)[k]
        grad[index] = (up - down) / (2 * eps)
    return grad


def minmax(x: np.ndarray) -> np.ndarray:
    return (x - x.min()) / (x.max() - x.min())


SHAPES = [(7, 7, 16, 7), (3, 5, 8, 4), (1, 1, 4, 2), (10, 6, 32, 3)]


@pytest.mark.parametrize(("h", "w", "c", "k"), SHAPES)
def test_cam_matches_direct_einsum(h, w, c, k):
    rng = np.random.default_rng(h * 100 + w)
    features = rng.normal(size=(h, w, c)).astype(np.float32)
    weights = rng.normal(size=(c, k)).astype(np.float32)
    for cls in range(k):
        raw = np.maximum(np.einsum("hwc,c->hw", features.astype(np.float64), weights[:, cls].astype(np.float64)), 0)
        np.testing.assert_allclose(
            class_activation_map(features, weights, cls, normalize=False), raw, rtol=1e-5, atol=1e-5
        )
        cam = class_activation_map(features, weights, cls)
        assert cam.shape == (h, w) and cam.dtype == np.float32
        expected = minmax(raw) if raw.max() > raw.min() else np.zeros_like(raw)
        np.testing.assert_allclose(cam, expected, atol=1e-5)


@pytest.mark.parametrize(("h", "w", "c", "k"), SHAPES[:3])
def test_cam_equals_grad_cam_for_gap_dense_head(h, w, c, k):
    rng = np.random.default_rng(7)
    features = np.abs(rng.normal(size=(h, w, c)))  # post-ReLU activations, as in MobileNetV2
    weights = rng.normal(size=(c, k))
    bias = rng.normal(size=k)
    for cls in range(k):
        grad = numeric_gradient(features, weights, bias, cls)
        alpha = grad.mean(axis=(0, 1))  # Grad-CAM channel weights
        np.testing.assert_allclose(alpha, weights[:, cls] / (h * w), atol=1e-7)
        grad_cam = np.maximum(np.einsum("hwc,c->hw", features, alpha), 0)
        raw = class_activation_map(features, weights, cls, normalize=False)
        np.testing.assert_allclose(raw / (h * w), grad_cam, rtol=1e-4, atol=1e-6)
        if grad_cam.max() > grad_cam.min():
            np.testing.assert_allclose(class_activation_map(features, weights, cls), minmax(grad_cam), atol=1e-5)


def test_cam_with_bias_averages_to_the_logit_when_positive():
    rng = np.random.default_rng(3)
    features = np.abs(rng.normal(size=(4, 4, 6)))
    weights = np.abs(rng.normal(size=(6, 3)))  # all-positive map, so the ReLU changes nothing
    bias = np.array([0.5, -0.1, 2.0])
    for cls in range(3):
        raw = class_activation_map(features, weights, cls, bias=bias, normalize=False)
        assert raw.mean() == pytest.approx(head_logits(features, weights, bias)[cls], rel=1e-5)


def test_cam_accepts_batch_axis_and_highlights_the_active_region():
    features = np.zeros((1, 7, 7, 4), np.float32)
    features[0, 2:4, 5:7, 1] = 3.0  # channel 1 fires top-right
    weights = np.eye(4, 2, k=-1, dtype=np.float32)  # class 0 <- channel 1
    cam = class_activation_map(features, weights, 0)
    assert cam[2:4, 5:7].min() == 1.0 and cam.sum() == 4.0


def test_all_negative_map_is_zero():
    features = np.ones((3, 3, 2), np.float32)
    cam = class_activation_map(features, -np.ones((2, 1), np.float32), 0)
    np.testing.assert_array_equal(cam, np.zeros((3, 3)))


@pytest.mark.parametrize(
    ("features", "weights", "k", "bias", "match"),
    [
        (np.zeros((7, 7)), np.zeros((7, 2)), 0, None, r"expected shape \(h, w, C\)"),
        (np.zeros((7, 7, 8)), np.zeros((4, 2)), 0, None, r"expected shape \(8, K\)"),
        (np.zeros((7, 7, 8)), np.zeros((8, 2)), 2, None, "0 <= k < 2"),
        (np.zeros((7, 7, 8)), np.zeros((8, 2)), 0, np.zeros(3), r"expected shape \(2,\)"),
    ],
)
def test_cam_rejects_bad_shapes(features, weights, k, bias, match):
    with pytest.raises(ValueError, match=match):
        class_activation_map(features, weights, k, bias=bias)


@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
@pytest.mark.parametrize("size", [(224, 224), (130, 97)])
def test_upsample_cam(interpolation, size):
    cam = np.zeros((7, 7), np.float32)
    cam[3, 3] = 1.0
    up = upsample_cam(cam, size, interpolation)
    assert up.shape == size and up.dtype == np.float32
    assert up.min() >= 0 and up.max() <= 1  # cubic overshoot is clipped
    peak = np.unravel_index(np.argmax(up), up.shape)
    assert abs(peak[0] - size[0] / 2) <= size[0] / 7 and abs(peak[1] - size[1] / 2) <= size[1] / 7


def test_upsample_cam_bad_interpolation():
    with pytest.raises(ConfigError, match="linear, cubic"):
        upsample_cam(np.zeros((2, 2)), (4, 4), "nearest")
