"""Resize a frame to a model's input size and map boxes back to frame pixels.

Resizing uses ``cv2.INTER_LINEAR_EXACT``: OpenCV computes it in fixed point with the same result on every
platform, whereas ``INTER_LINEAR`` on uint8 goes through platform kernels (IPP on x86, carotene/KleidiCV on
ARM) that differ by ±1 on about a fifth of the pixels, enough to move a model's answer. Every model input
(runtime, training, conversion) is resized here, so models are trained and measured on what devices see.

Sizes passed to the resize functions are ``(height, width)``, the order of a model's input tensor
``[1, H, W, 3]``. Sizes stored in :class:`ImageTransform` are ``(width, height)``, the order of
``PipelineResult.image_size`` and :func:`edgeskin.core.boxes.clip_boxes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from numpy.typing import ArrayLike

from edgeskin.core.boxes import _as_boxes, clip_boxes
from edgeskin.errors import ConfigError, ImageError

__all__ = ["ImageTransform", "letterbox", "resize_stretch", "resize_to_input", "resize_into", "RESIZE_MODES"]

RESIZE_MODES = ("stretch", "letterbox")
ResizeMode = Literal["stretch", "letterbox"]


@dataclass(frozen=True)
class ImageTransform:
    """How a frame was mapped onto a model input: ``input = frame * scale + pad`` per axis.

    Attributes:
        scale_x: Input pixels per frame pixel along x.
        scale_y: Input pixels per frame pixel along y.
        pad_x: Left padding of the input, in input pixels.
        pad_y: Top padding of the input, in input pixels.
        src_size: ``(width, height)`` of the original frame.
        dst_size: ``(width, height)`` of the model input.
    """

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    src_size: tuple[int, int]
    dst_size: tuple[int, int]

    def __post_init__(self) -> None:
        if not (self.scale_x > 0 and self.scale_y > 0):
            raise ValueError(f"expected positive scales, got scale_x={self.scale_x}, scale_y={self.scale_y}")

    def to_frame(self, xyxy: ArrayLike) -> np.ndarray:
        """Map boxes from model-input pixels to original-frame pixels, clipped to the frame.

        Args:
            xyxy: Boxes of shape (..., 4) in model-input pixels.

        Returns:
            float32 boxes of the same shape in frame pixels.
        """
        b = _as_boxes(xyxy, "xyxy")
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float32)
        scale = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y], dtype=np.float32)
        return clip_boxes((b - offset) / scale, self.src_size)

    def to_input(self, xyxy: ArrayLike) -> np.ndarray:
        """Map boxes from original-frame pixels to model-input pixels, clipped to the input.

        Args:
            xyxy: Boxes of shape (..., 4) in frame pixels.

        Returns:
            float32 boxes of the same shape in model-input pixels.
        """
        b = _as_boxes(xyxy, "xyxy")
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], dtype=np.float32)
        scale = np.array([self.scale_x, self.scale_y, self.scale_x, self.scale_y], dtype=np.float32)
        return clip_boxes(b * scale + offset, self.dst_size)


def _check_image(image: np.ndarray) -> tuple[int, int]:
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        shape = getattr(image, "shape", type(image).__name__)
        raise ImageError(f"expected a non-empty (H, W) or (H, W, C) image array, got {shape}")
    return image.shape[0], image.shape[1]


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"size: expected (height, width), got {size!r}") from None
    if height < 1 or width < 1:
        raise ConfigError(f"size: expected positive (height, width), got {size!r}")
    return height, width


def _resize(image: np.ndarray, width: int, height: int, interpolation: int) -> np.ndarray:
    # cv2.resize drops a trailing channel axis of size 1; keep the caller's layout.
    return cv2.resize(image, (width, height), interpolation=interpolation).reshape(height, width, *image.shape[2:])


def resize_stretch(
    image: np.ndarray, size: tuple[int, int], interpolation: int = cv2.INTER_LINEAR_EXACT
) -> tuple[np.ndarray, ImageTransform]:
    """Resize to ``size`` ignoring the aspect ratio.

    Args:
        image: (H, W) or (H, W, C) array.
        size: ``(height, width)`` of the output.
        interpolation: OpenCV interpolation flag (keep the bit-exact default for model inputs).

    Returns:
        The resized image (the input itself when it already has that size) and the transform from
        frame to output pixels.
    """
    src_h, src_w = _check_image(image)
    dst_h, dst_w = _check_size(size)
    out = image if (src_h, src_w) == (dst_h, dst_w) else _resize(image, dst_w, dst_h, interpolation)
    return out, _placed(src_w, src_h, dst_w, dst_h, 0, 0, dst_w, dst_h)


def letterbox(
    image: np.ndarray,
    size: tuple[int, int],
    pad_value: int = 114,
    interpolation: int = cv2.INTER_LINEAR_EXACT,
) -> tuple[np.ndarray, ImageTransform]:
    """Resize keeping the aspect ratio and pad to ``size``, the content centred.

    Args:
        image: (H, W) or (H, W, C) array.
        size: ``(height, width)`` of the output.
        pad_value: Value of the padding pixels (114 is the YOLO convention).
        interpolation: OpenCV interpolation flag.

    Returns:
        The padded image and the transform from frame to output pixels. Its scales are the exact
        per-axis ratios after rounding the resized size to whole pixels.
    """
    src_h, src_w = _check_image(image)
    dst_h, dst_w = _check_size(size)
    new_w, new_h, left, top = _letterbox_geometry(src_w, src_h, dst_w, dst_h)
    resized = image if (new_h, new_w) == (src_h, src_w) else _resize(image, new_w, new_h, interpolation)
    if (new_h, new_w) == (dst_h, dst_w):
        out = resized
    else:
        out = np.full((dst_h, dst_w, *image.shape[2:]), pad_value, dtype=image.dtype)
        out[top : top + new_h, left : left + new_w] = resized
    return out, _placed(src_w, src_h, new_w, new_h, left, top, dst_w, dst_h)


def _placed(
    src_w: int, src_h: int, new_w: int, new_h: int, left: int, top: int, dst_w: int, dst_h: int
) -> ImageTransform:
    """The transform of a ``src`` frame resized to ``new`` and placed at ``(left, top)`` in a ``dst`` output."""
    return ImageTransform(new_w / src_w, new_h / src_h, float(left), float(top), (src_w, src_h), (dst_w, dst_h))


def _letterbox_geometry(src_w: int, src_h: int, dst_w: int, dst_h: int) -> tuple[int, int, int, int]:
    """``(new_w, new_h, left, top)``: the resized content's size and its offset inside the padded output."""
    ratio = min(dst_h / src_h, dst_w / src_w)
    new_w = min(dst_w, max(1, round(src_w * ratio)))
    new_h = min(dst_h, max(1, round(src_h * ratio)))
    return new_w, new_h, (dst_w - new_w) // 2, (dst_h - new_h) // 2


def _resize_into(image: np.ndarray, out: np.ndarray, interpolation: int) -> None:
    """Resize ``image`` to ``out``'s size, written into ``out`` (a view of a larger buffer is fine)."""
    height, width = out.shape[:2]
    if image.shape[:2] == (height, width):
        np.copyto(out, image.reshape(out.shape))
        return
    if image.ndim == 3 and out.ndim == 3 and image.shape[2] > 1:
        result = cv2.resize(image, (width, height), dst=out, interpolation=interpolation)
        if not np.shares_memory(result, out):  # OpenCV could not take this view as its output
            np.copyto(out, result.reshape(out.shape))
        return
    np.copyto(out, _resize(image, width, height, interpolation).reshape(out.shape))


def resize_into(
    image: np.ndarray, out: np.ndarray, mode: ResizeMode = "stretch", pad_value: int = 114
) -> ImageTransform:
    """:func:`resize_to_input` written into ``out``, e.g. a model's own input tensor: no image is allocated.

    The pixels are those :func:`resize_to_input` returns for ``out``'s ``(height, width)``, bit for bit
    (the same ``INTER_LINEAR_EXACT`` resize, into a view of ``out``); the letterbox padding is written too.

    Args:
        image: (H, W) or (H, W, C) array.
        out: (height, width, ...) array of ``image``'s dtype and channels.
        mode: ``"stretch"`` or ``"letterbox"``.
        pad_value: Padding value for ``"letterbox"``.

    Returns:
        The transform from frame to ``out`` pixels.
    """
    src_h, src_w = _check_image(image)
    if out.ndim != image.ndim or out.shape[2:] != image.shape[2:] or out.dtype != image.dtype:
        raise ImageError(
            f"resize_into: expected an output of shape (height, width{', ' if image.ndim == 3 else ''}"
            f"{', '.join(map(str, image.shape[2:]))}) and dtype {image.dtype}, got {out.shape} {out.dtype}"
        )
    dst_h, dst_w = _check_size(out.shape[:2])
    interpolation = cv2.INTER_LINEAR_EXACT
    if mode == "stretch":
        _resize_into(image, out, interpolation)
        return _placed(src_w, src_h, dst_w, dst_h, 0, 0, dst_w, dst_h)
    if mode != "letterbox":
        raise ConfigError(f"resize mode: expected one of {', '.join(RESIZE_MODES)}, got {mode!r}")
    new_w, new_h, left, top = _letterbox_geometry(src_w, src_h, dst_w, dst_h)
    bottom, right = top + new_h, left + new_w
    # Only the padding strips are filled, the content is resized straight into its place.
    out[:top] = pad_value
    out[bottom:] = pad_value
    out[top:bottom, :left] = pad_value
    out[top:bottom, right:] = pad_value
    _resize_into(image, out[top:bottom, left:right], interpolation)
    return _placed(src_w, src_h, new_w, new_h, left, top, dst_w, dst_h)


def resize_to_input(
    image: np.ndarray,
    size: tuple[int, int],
    mode: ResizeMode = "stretch",
    pad_value: int = 114,
) -> tuple[np.ndarray, ImageTransform]:
    """Resize a frame to a model's input size with the spec's resize mode.

    Args:
        image: (H, W) or (H, W, C) array.
        size: ``(height, width)`` of the model input.
        mode: ``"stretch"`` or ``"letterbox"``.
        pad_value: Padding value for ``"letterbox"``.

    Returns:
        The model-input image and the transform from frame to input pixels.
    """
    if mode == "stretch":
        return resize_stretch(image, size)
    if mode == "letterbox":
        return letterbox(image, size, pad_value=pad_value)
    raise ConfigError(f"resize mode: expected one of {', '.join(RESIZE_MODES)}, got {mode!r}")
