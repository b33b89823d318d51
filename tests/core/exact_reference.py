"""Pure-numpy references of the OpenCV operations edgeskin relies on being bit-exact on every platform.

OpenCV's ``INTER_LINEAR_EXACT`` resize is defined in fixed point (``resize_bitExact`` in
``imgproc/src/resize.cpp``): per axis, the source position of output pixel ``d`` is
``(d + 0.5) * (1 / (dst / src)) - 0.5`` in IEEE double, its integer part selects two taps (clamped at
the edges, where the weight goes to the edge pixel), and its fraction is rounded (half to even) to
``B`` bits (8 for uint8, 16 for uint16). The horizontal pass keeps ``B`` fractional bits, the vertical
one ``2B``, and the result is rounded once: ``(sum + 2^(2B-1)) >> 2B``. ``COLOR_RGB2GRAY`` on uint8
is ``(9798 R + 19235 G + 3735 B + 2^14) >> 15``.

Used by ``tests/core/test_exact_ops.py`` (x86, CI) and by ``scripts/parity_run.py`` inside the
emulated aarch64 root (``scripts/check-aarch64.sh``): a wheel or HAL (IPP, carotene, KleidiCV) that
changes one of them fails there, not silently on a device. Needs only numpy (and cv2 for :func:`check`).
"""

from __future__ import annotations

import math

import numpy as np


def _taps(src: int, dst: int, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scale = 1.0 / (dst / src)
    first = np.empty(dst, np.int64)
    weight = np.empty(dst, np.int64)
    for d in range(dst):
        position = (d + 0.5) * scale - 0.5
        i = math.floor(position)
        fraction = position - i
        if i < 0:
            i, fraction = 0, 0.0
        if i >= src - 1:
            i, fraction = src - 1, 0.0
        first[d] = i
        weight[d] = int(np.rint(fraction * (1 << bits)))
    return first, np.minimum(first + 1, src - 1), weight


def resize_linear_exact(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR_EXACT)`` for uint8/uint16."""
    image = np.asarray(image)
    bits = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}[image.dtype]
    one = 1 << bits
    x0, x1, wx = _taps(image.shape[1], width, bits)
    y0, y1, wy = _taps(image.shape[0], height, bits)
    # uint16 needs 2 * 16 + 16 + 1 bits: Python integers (object arrays) keep it exact.
    src = image.astype(object) if bits > 8 else image.astype(np.int64)
    extra = (1,) * (image.ndim - 2)
    rows = src[:, x0] * (one - wx).reshape(1, -1, *extra) + src[:, x1] * wx.reshape(1, -1, *extra)
    out = rows[y0] * (one - wy).reshape(-1, 1, *extra) + rows[y1] * wy.reshape(-1, 1, *extra)
    out = (out + (1 << (2 * bits - 1))) >> (2 * bits)
    return np.clip(out.astype(np.int64), 0, one - 1).astype(image.dtype)


def rgb_to_gray(image: np.ndarray) -> np.ndarray:
    """``cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)`` for uint8."""
    s = np.asarray(image, np.int64)
    return ((9798 * s[..., 0] + 19235 * s[..., 1] + 3735 * s[..., 2] + (1 << 14)) >> 15).astype(np.uint8)


def shades_of_gray_float(image: np.ndarray, power: float = 6) -> np.ndarray:
    """Shades of Gray in plain float64 (the textbook formula); edgeskin's integer version must agree."""
    levels = np.arange(256, dtype=np.float64)
    illuminant = np.array(
        [
            255.0
            * (np.bincount(image[..., c].ravel(), minlength=256) @ ((levels / 255.0) ** power) / image[..., c].size)
            ** (1.0 / power)
            for c in range(3)
        ]
    )
    norm = math.sqrt(float((illuminant**2).sum()))
    if norm == 0:
        return image.copy()
    gains = np.where(illuminant > 0, norm / (math.sqrt(3.0) * np.maximum(illuminant, 1e-12)), 1.0)
    lut = np.clip(np.rint(levels[:, None] * gains[None, :]), 0, 255).astype(np.uint8)
    return np.stack([lut[image[..., c], c] for c in range(3)], axis=-1)


# (source height, width) -> (output height, width): the pipeline's cases and awkward ones.
RESIZE_CASES = (
    ((576, 768), (240, 320)),  # PH2 frame -> the detector's 320 letterbox
    ((576, 768), (320, 320)),  # stretched to 320
    ((211, 173), (192, 192)),  # a lesion crop -> the classifier's 192
    ((450, 600), (192, 192)),  # a HAM10000 image -> 192 (training and validation)
    ((100, 100), (50, 50)),  # exactly half: OpenCV switches to its area path
    ((7, 5), (192, 192)),  # strong upscaling
    ((1, 9), (4, 3)),  # one row
)


def check(seed: int = 0, random_cases: int = 40) -> list[str]:
    """Compare OpenCV with the references on seeded random images; returns the failures (empty: all exact)."""
    import cv2

    rng = np.random.default_rng(seed)
    failures = []
    cases = list(RESIZE_CASES)
    for _ in range(random_cases):
        cases.append((tuple(int(v) for v in rng.integers(1, 90, 2)), tuple(int(v) for v in rng.integers(1, 130, 2))))
    for (sh, sw), (h, w) in cases:
        for dtype, channels in ((np.uint8, 3), (np.uint8, 1), (np.uint16, 1)):
            shape = (sh, sw, 3) if channels == 3 else (sh, sw)
            image = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
            got = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR_EXACT).reshape(h, w, *shape[2:])
            if not np.array_equal(got, resize_linear_exact(image, w, h)):
                failures.append(f"INTER_LINEAR_EXACT {np.dtype(dtype).name} {sh}x{sw}x{channels} -> {h}x{w}")
    image = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)
    if not np.array_equal(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), rgb_to_gray(image)):
        failures.append("COLOR_RGB2GRAY")
    lut = rng.integers(0, 256, (256, 1, 3), dtype=np.uint8)
    if not np.array_equal(cv2.LUT(image, lut), np.stack([lut[image[..., c], 0, c] for c in range(3)], axis=-1)):
        failures.append("LUT")
    for name, got, want in (
        ("flip 1", cv2.flip(image, 1), image[:, ::-1]),
        ("flip 0", cv2.flip(image, 0), image[::-1]),
        ("flip -1", cv2.flip(image, -1), image[::-1, ::-1]),
        ("rotate 90 ccw", cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE), np.rot90(image)),
        ("rotate 90 cw", cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE), np.rot90(image, -1)),
        ("transpose", cv2.transpose(image), image.swapaxes(0, 1)),
    ):
        if not np.array_equal(got, want):
            failures.append(name)
    for c in range(3):
        counts = cv2.calcHist([image], [c], None, [256], [0, 256]).ravel()
        if not np.array_equal(counts, np.bincount(image[..., c].ravel(), minlength=256)):
            failures.append(f"calcHist channel {c}")
    return failures
