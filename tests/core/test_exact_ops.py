"""Every operation on the path to a model input or a reported number is bit-exact, pinned to pure numpy.

Issue 13: ``INTER_LINEAR`` on uint8 differed by ±1 on a fifth of the pixels between the x86 (IPP) and the
aarch64 (carotene/KleidiCV) OpenCV wheels, enough to flip a diagnosis. The references in
``exact_reference.py`` say what the operations must compute; a future OpenCV wheel or HAL that changes
one of them fails here (and in ``scripts/check-aarch64.sh`` on emulated aarch64), not on a device.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import exact_reference as ref
import numpy as np
import pytest

from edgeskin.core.cam import class_activation_map, upsample_cam
from edgeskin.core.geometry import letterbox, resize_stretch, resize_to_input
from edgeskin.core.preprocess import shades_of_gray
from edgeskin.core.views import VIEWS, align_features, apply_view

RNG = np.random.default_rng(13)


@pytest.mark.parametrize(("src", "dst"), ref.RESIZE_CASES, ids=lambda v: "x".join(map(str, v)))
@pytest.mark.parametrize("channels", [3, 1])
def test_inter_linear_exact_matches_the_fixed_point_reference(src, dst, channels):
    image = RNG.integers(0, 256, (*src, channels), dtype=np.uint8)
    want = ref.resize_linear_exact(image, dst[1], dst[0])
    got = cv2.resize(image, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR_EXACT).reshape(*dst, channels)
    np.testing.assert_array_equal(got, want)


def test_the_reference_check_passes_on_random_sizes_and_dtypes():
    """The same check parity_run.py runs inside the aarch64 root: 20 random sizes, uint8 (1 and 3 channels)
    and uint16 resizes, gray conversion, LUT, flips and rotations, histograms."""
    assert ref.check(seed=0, random_cases=20) == []


def test_the_reference_is_not_plain_bilinear():
    """The reference must be able to fail: a float bilinear resize (what INTER_LINEAR computes with
    rounding of its own) differs from it on real-sized inputs."""
    image = RNG.integers(0, 256, (576, 768, 3), dtype=np.uint8)
    exact = ref.resize_linear_exact(image, 320, 240)
    # Float bilinear with the same taps, rounded once at the end.
    x = (np.arange(320) + 0.5) * 768 / 320 - 0.5
    y = (np.arange(240) + 0.5) * 576 / 240 - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    tx, ty = (x - x0)[None, :, None], (y - y0)[:, None, None]
    s = image.astype(np.float64)
    rows = lambda yy: s[yy][:, x0] * (1 - tx) + s[yy][:, np.minimum(x0 + 1, 767)] * tx  # noqa: E731
    bilinear = np.rint(rows(y0) * (1 - ty) + rows(np.minimum(y0 + 1, 575)) * ty)
    assert (bilinear != exact).mean() > 0.01


@pytest.mark.parametrize(("src", "dst"), [((576, 768), (320, 320)), ((211, 173), (192, 192))])
def test_model_inputs_are_resized_exactly(src, dst):
    """geometry's defaults (every model input in the runtime, training and conversion) are the exact path."""
    image = RNG.integers(0, 256, (*src, 3), dtype=np.uint8)
    stretched, _ = resize_stretch(image, dst)
    np.testing.assert_array_equal(stretched, ref.resize_linear_exact(image, dst[1], dst[0]))
    np.testing.assert_array_equal(resize_to_input(image, dst, "stretch")[0], stretched)
    boxed, transform = letterbox(image, dst)
    new_w, new_h = round(src[1] * transform.scale_x), round(src[0] * transform.scale_y)
    top, left = int(transform.pad_y), int(transform.pad_x)
    np.testing.assert_array_equal(
        boxed[top : top + new_h, left : left + new_w], ref.resize_linear_exact(image, new_w, new_h)
    )
    assert (boxed[:top] == 114).all() and (boxed[top + new_h :] == 114).all()


def test_training_resizes_with_the_exact_path():
    """train_classifier's augmentation and the validation loader use INTER_LINEAR_EXACT, never INTER_LINEAR."""
    root = Path(__file__).resolve().parents[2]
    for path in [root / "training" / "train_classifier.py", *sorted((root / "convert").glob("*.py"))]:
        text = path.read_text()
        assert "INTER_LINEAR)" not in text and "INTER_LINEAR," not in text, f"{path.name} resizes with INTER_LINEAR"


@pytest.mark.parametrize("power", [6, 1, 2.5])
def test_shades_of_gray_matches_the_float_formula(power):
    for seed in range(6):
        rng = np.random.default_rng(seed)
        image = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
        image[..., seed % 3] //= 1 + seed  # a coloured illuminant to correct
        np.testing.assert_array_equal(shades_of_gray(image, power), ref.shades_of_gray_float(image, power))


def test_shades_of_gray_is_exact_integer_arithmetic():
    """No float reduction decides a table entry: the same moments give the same image, and the gains are
    those of the exact illuminant (a gray image keeps its values)."""
    gray = np.repeat(RNG.integers(0, 256, (40, 40, 1), dtype=np.uint8), 3, axis=2)
    np.testing.assert_array_equal(shades_of_gray(gray), gray)
    black = np.zeros((5, 5, 3), np.uint8)
    np.testing.assert_array_equal(shades_of_gray(black), black)


def test_views_are_exact_copies():
    x = RNG.integers(-128, 128, (1, 12, 12, 3), dtype=np.int8)
    for view in VIEWS:
        out = apply_view(view, x)
        assert out.dtype == x.dtype and sorted(out.ravel()) == sorted(x.ravel())
        np.testing.assert_array_equal(align_features(view, out[0]), x[0])


def test_the_cam_sums_channels_without_blas():
    """The map is the exact float64 sum of exact products, rounded once to float32 (no BLAS order)."""
    import math

    features = RNG.normal(size=(6, 6, 64)).astype(np.float32)
    weights = RNG.normal(size=(64, 5)).astype(np.float32)
    cam = class_activation_map(features, weights, 2, normalize=False)
    exact = np.array(
        [
            [
                math.fsum(float(f) * float(w) for f, w in zip(features[i, j], weights[:, 2], strict=True))
                for j in range(6)
            ]
            for i in range(6)
        ]
    )
    np.testing.assert_allclose(cam, np.maximum(exact, 0).astype(np.float32), rtol=1e-6, atol=1e-6)


def test_cam_upsampling_is_the_16_bit_exact_resize():
    cam = RNG.random((6, 6)).astype(np.float32)
    out = upsample_cam(cam, (211, 173))
    levels = np.rint(cam * 65535).astype(np.uint16)
    np.testing.assert_array_equal(out, ref.resize_linear_exact(levels, 173, 211).astype(np.float32) / np.float32(65535))
    # and it is still the bilinear map, within the 16-bit quantization
    float_resize = cv2.resize(cam, (173, 211), interpolation=cv2.INTER_LINEAR)
    assert np.abs(out - np.clip(float_resize, 0, 1)).max() < 1e-4


def test_group_probabilities_are_sums_in_index_order():
    """to_groups adds each group's members left to right (no BLAS product, whose order depends on the ISA)."""
    from edgeskin.labels import DX8_CLASSES, DX_CLASSES, group_matrix, to_groups

    for labels in (DX_CLASSES, DX8_CLASSES):
        probs = np.random.default_rng(1).dirichlet(np.full(len(labels), 0.3), 5000).astype(np.float32)
        members = group_matrix(labels) > 0
        got = to_groups(probs, labels)
        for g in range(members.shape[1]):
            index = np.flatnonzero(members[:, g])
            want = probs[:, index[0]].copy()
            for i in index[1:]:
                want = want + probs[:, i]
            np.testing.assert_array_equal(got[:, g], want)
