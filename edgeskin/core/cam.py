"""Class activation maps from a classifier's last feature map and its Dense head.

For a head ``logits = GAP(features) @ W + b`` the gradient of logit ``k`` with respect to the feature
map is ``W[:, k] / (h * w)`` at every position, so Grad-CAM's channel weights (the spatially averaged
gradients) are ``W[:, k] / (h * w)`` and Grad-CAM equals ``ReLU(features @ W[:, k])`` up to a positive
factor: CAM and Grad-CAM coincide, and cost one small matrix-vector product.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import ArrayLike

from edgeskin.errors import ConfigError

__all__ = ["class_activation_map", "upsample_cam"]

_INTERPOLATION = {"linear": cv2.INTER_LINEAR_EXACT, "cubic": cv2.INTER_CUBIC}
_CAM_LEVELS = 65535  # upsample_cam's fixed-point resolution


def class_activation_map(
    features: ArrayLike,
    weights: ArrayLike,
    class_index: int,
    bias: ArrayLike | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """Class activation map of one class.

    ``cam = ReLU(features @ weights[:, class_index] (+ bias[class_index]))``, then min-max scaled to
    [0, 1] when ``normalize`` is set (an all-zero map stays zero).

    Args:
        features: (h, w, C) feature map (a leading batch axis of 1 is accepted), dequantized.
        weights: (C, K) Dense kernel of the classification head.
        class_index: Class k in [0, K).
        bias: Optional (K,) Dense bias. It is added at every position, so the map's mean is the
            class logit; it shifts the map before the ReLU. Plain CAM and Grad-CAM leave it out.
        normalize: Min-max scale to [0, 1]; otherwise the map is in logit units (after the ReLU).

    Returns:
        (h, w) float32 map.
    """
    fmap = np.asarray(features, dtype=np.float32)
    if fmap.ndim == 4 and fmap.shape[0] == 1:
        fmap = fmap[0]
    kernel = np.asarray(weights, dtype=np.float32)
    if fmap.ndim != 3:
        raise ValueError(f"features: expected shape (h, w, C) or (1, h, w, C), got {np.shape(features)}")
    if kernel.ndim != 2 or kernel.shape[0] != fmap.shape[2]:
        raise ValueError(f"weights: expected shape ({fmap.shape[2]}, K) to match the features, got {kernel.shape}")
    num_classes = kernel.shape[1]
    if not 0 <= int(class_index) < num_classes:
        raise ValueError(f"class_index: expected 0 <= k < {num_classes}, got {class_index}")
    # Products in float64 are exact (24-bit by 24-bit mantissas) and numpy's pairwise sum over the channel
    # axis runs in the same order on every platform; a matrix product would go through BLAS, whose
    # x86 and ARM kernels sum in different orders (different last bits, issue 13).
    column = kernel[:, int(class_index)].astype(np.float64)
    cam = np.add.reduce(np.multiply(fmap, column, dtype=np.float64), axis=-1)  # widened in the product's loop
    if bias is not None:
        bias_arr = np.asarray(bias, dtype=np.float32).reshape(-1)
        if bias_arr.shape != (num_classes,):
            raise ValueError(f"bias: expected shape ({num_classes},), got {bias_arr.shape}")
        cam = cam + float(bias_arr[int(class_index)])
    np.maximum(cam, 0.0, out=cam)
    if normalize:
        low, high = float(np.minimum.reduce(cam, axis=None)), float(np.maximum.reduce(cam, axis=None))
        if high > low:
            cam -= low
            cam /= high - low
        else:
            cam[...] = 0.0
    return cam.astype(np.float32)


def upsample_cam(cam: ArrayLike, size: tuple[int, int], interpolation: str = "linear") -> np.ndarray:
    """Resize a [0, 1] map to ``size`` and clip it back to [0, 1] (cubic interpolation overshoots).

    ``"linear"`` is bit-exact on every platform: the map is quantized to 16 bits and resized with
    ``INTER_LINEAR_EXACT`` (fixed point), whereas OpenCV's float resize goes through platform kernels
    (IPP, KleidiCV) with their own rounding. ``"cubic"`` uses the float resize and is for display only.

    Args:
        cam: (h, w) map.
        size: ``(height, width)`` of the output, e.g. the crop's size.
        interpolation: ``"linear"`` or ``"cubic"``.

    Returns:
        (height, width) float32 map in [0, 1].
    """
    arr = np.asarray(cam, dtype=np.float32)
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"cam: expected a non-empty (h, w) map, got shape {arr.shape}")
    if interpolation not in _INTERPOLATION:
        raise ConfigError(f"interpolation: expected one of {', '.join(_INTERPOLATION)}, got {interpolation!r}")
    height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise ConfigError(f"size: expected positive (height, width), got {size!r}")
    if interpolation == "cubic":
        out = cv2.resize(arr, (width, height), interpolation=cv2.INTER_CUBIC)
        return np.clip(out, 0.0, 1.0)
    levels = np.rint(np.clip(np.nan_to_num(arr, nan=0.0), 0.0, 1.0) * _CAM_LEVELS).astype(np.uint16)
    out = cv2.resize(levels, (width, height), interpolation=cv2.INTER_LINEAR_EXACT).reshape(height, width)
    return out.astype(np.float32) / np.float32(_CAM_LEVELS)
