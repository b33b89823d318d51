"""Test-time augmentation views: the dihedral transforms of a square model input, and their inverses.

A dermoscopic lesion has no preferred orientation, so the classifier can average its logits over flipped
and rotated copies of the same input (test-time augmentation). For a head GAP → Dense the averaged logits
equal the Dense layer applied to the average of the feature maps *after each is turned back* to the
original orientation (global average pooling ignores the arrangement), so the class activation map of
the averaged decision is exact when built from :func:`align_features`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from edgeskin.errors import ConfigError

# name -> (forward on (H, W, ...) arrays, inverse)
_VIEWS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]] = {
    "identity": (lambda a: a, lambda a: a),
    "hflip": (lambda a: a[:, ::-1], lambda a: a[:, ::-1]),
    "vflip": (lambda a: a[::-1], lambda a: a[::-1]),
    "rot180": (lambda a: a[::-1, ::-1], lambda a: a[::-1, ::-1]),
    "rot90": (lambda a: np.rot90(a, 1), lambda a: np.rot90(a, -1)),
    "rot270": (lambda a: np.rot90(a, -1), lambda a: np.rot90(a, 1)),
    "transpose": (lambda a: np.swapaxes(a, 0, 1), lambda a: np.swapaxes(a, 0, 1)),
    "antitranspose": (lambda a: np.rot90(a, 2).swapaxes(0, 1), lambda a: np.rot90(a.swapaxes(0, 1), 2)),
}
VIEWS: tuple[str, ...] = tuple(_VIEWS)
SQUARE_ONLY = frozenset({"rot90", "rot270", "transpose", "antitranspose"})


def check_views(views: Sequence[str], input_size: tuple[int, int] | None = None) -> tuple[str, ...]:
    """Validate view names (and that 90° views meet a square input); returns them as a tuple."""
    if isinstance(views, str):
        raise ConfigError(f"views: expected a list of names, got the string {views!r}")
    views = tuple(views)
    unknown = [v for v in views if v not in _VIEWS]
    if unknown:
        raise ConfigError(f"unknown test-time augmentation view(s) {unknown}; expected some of {list(VIEWS)}")
    if len(set(views)) != len(views):
        raise ConfigError(f"views: each view at most once, got {list(views)}")
    if input_size is not None and input_size[0] != input_size[1] and SQUARE_ONLY & set(views):
        raise ConfigError(f"views {sorted(SQUARE_ONLY & set(views))} need a square input, not {list(input_size)}")
    return views


# OpenCV's flip/rotate copy a (H, W, C <= 4) image in one vectorised pass; numpy's reversed-stride copy
# of the same 192x192x3 input took 0.16 ms here, a quarter of a classifier invoke.
_CV_OPS = {
    "hflip": lambda cv2, a: cv2.flip(a, 1),
    "vflip": lambda cv2, a: cv2.flip(a, 0),
    "rot180": lambda cv2, a: cv2.flip(a, -1),
    "rot90": lambda cv2, a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
    "rot270": lambda cv2, a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    "transpose": lambda cv2, a: cv2.transpose(a),
    "antitranspose": lambda cv2, a: cv2.flip(cv2.transpose(a), -1),
}


def apply_view(name: str, batch: np.ndarray) -> np.ndarray:
    """The view of a ``(1, H, W, C)`` model input (contiguous, ready for the interpreter)."""
    image = batch[0]
    if name == "identity":
        return np.ascontiguousarray(batch)
    if image.ndim == 3 and image.shape[2] <= 4 and image.dtype in (np.uint8, np.int8, np.float32):
        import cv2

        out = _CV_OPS[name](cv2, np.ascontiguousarray(image))
        return out.reshape(out.shape[:2] + image.shape[2:])[None]
    return np.ascontiguousarray(_VIEWS[name][0](image)[None])


def align_features(name: str, features: np.ndarray) -> np.ndarray:
    """Turn a ``(h, w, K)`` feature map computed on view ``name`` back to the original orientation."""
    return _VIEWS[name][1](features)


# The inverses on a stack (..., h, w, K) of feature maps: numpy views, no copy.
_ROWS, _COLS = -3, -2
_INVERSE_STACKED: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda a: a,
    "hflip": lambda a: a[..., ::-1, :],  # np.flip(a, _COLS) as a slice: the same view, without its axis checks
    "vflip": lambda a: a[..., ::-1, :, :],
    "rot180": lambda a: a[..., ::-1, ::-1, :],
    "rot90": lambda a: np.rot90(a, -1, axes=(_ROWS, _COLS)),
    "rot270": lambda a: np.rot90(a, 1, axes=(_ROWS, _COLS)),
    "transpose": lambda a: np.swapaxes(a, _ROWS, _COLS),
    "antitranspose": lambda a: np.rot90(np.swapaxes(a, _ROWS, _COLS), 2, axes=(_ROWS, _COLS)),
}


def align_stacked(name: str, features: np.ndarray) -> np.ndarray:
    """:func:`align_features` of a stack ``(..., h, w, K)`` of maps computed on view ``name`` (a view)."""
    return _INVERSE_STACKED[name](features)


_CV_INTO = {
    "hflip": lambda cv2, a, out: cv2.flip(a, 1, dst=out),
    "vflip": lambda cv2, a, out: cv2.flip(a, 0, dst=out),
    "rot180": lambda cv2, a, out: cv2.flip(a, -1, dst=out),
    "rot90": lambda cv2, a, out: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE, dst=out),
    "rot270": lambda cv2, a, out: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE, dst=out),
    "transpose": lambda cv2, a, out: cv2.transpose(a, dst=out),
}


def view_into(name: str, image: np.ndarray, out: np.ndarray) -> None:
    """Write view ``name`` of a ``(H, W, C)`` model input into ``out`` (e.g. one slot of a batch tensor).

    ``out`` must be C-contiguous with the view's shape and ``image``'s dtype; nothing else is allocated for
    the 3-channel 8-bit and float inputs of image models.
    """
    if name == "identity":
        np.copyto(out, image)
        return
    if (
        name in _CV_INTO
        and image.ndim == 3
        and 1 < image.shape[2] <= 4
        and image.dtype in (np.uint8, np.int8, np.float32)
    ):
        import cv2

        result = _CV_INTO[name](cv2, image, out)
        if result is not None and not np.shares_memory(result, out):  # OpenCV could not write in place
            np.copyto(out, result)
        return
    np.copyto(out, _VIEWS[name][0](image))
