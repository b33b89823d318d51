"""Box maths on float32 pixel boxes: format conversion, clipping, area, IoU, NMS, mask → box.

Boxes are ``xyxy`` = ``[x0, y0, x1, y1]`` in continuous pixel coordinates: pixel ``i`` spans
``[i, i + 1)``, so a box covering pixels 2..5 is ``[2, y0, 6, y1]``. ``xywh`` here is always the
YOLO convention, centre first: ``[cx, cy, w, h]``.

Array-shape mistakes are programming errors and raise ``ValueError`` with an "expected ... got ..."
message; invalid options raise :class:`edgeskin.errors.ConfigError`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from edgeskin.errors import ConfigError

__all__ = [
    "xywh_to_xyxy",
    "xyxy_to_xywh",
    "clip_boxes",
    "box_area",
    "box_iou",
    "pair_iou",
    "nms",
    "mask_to_box",
]


def _as_boxes(boxes: ArrayLike, name: str, *, batch_only: bool = False) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size == 0 and arr.ndim <= 1:
        arr = arr.reshape(0, 4)
    if arr.ndim == 0 or arr.shape[-1] != 4 or (batch_only and arr.ndim != 2):
        expected = "(N, 4)" if batch_only else "(..., 4)"
        raise ValueError(f"{name}: expected boxes of shape {expected}, got shape {arr.shape}")
    return arr


def xywh_to_xyxy(xywh: ArrayLike) -> np.ndarray:
    """Convert centre boxes ``[cx, cy, w, h]`` (YOLO convention) to corner boxes ``[x0, y0, x1, y1]``.

    Args:
        xywh: Boxes of shape (..., 4).

    Returns:
        float32 array of the same shape.
    """
    b = _as_boxes(xywh, "xywh")
    half = b[..., 2:] / 2
    return np.concatenate([b[..., :2] - half, b[..., :2] + half], axis=-1)


def xyxy_to_xywh(xyxy: ArrayLike) -> np.ndarray:
    """The inverse of :func:`xywh_to_xyxy` (the same shapes, float32): corner boxes ``[x0, y0, x1, y1]`` to centre
    boxes ``[cx, cy, w, h]``. There and back gives the boxes again, up to float32 rounding."""
    b = _as_boxes(xyxy, "xyxy")
    wh = b[..., 2:] - b[..., :2]
    return np.concatenate([b[..., :2] + wh / 2, wh], axis=-1)


def clip_boxes(xyxy: ArrayLike, image_size: tuple[int, int]) -> np.ndarray:
    """Clip boxes to the image rectangle ``[0, width] x [0, height]``.

    Args:
        xyxy: Boxes of shape (..., 4).
        image_size: ``(width, height)`` of the image in pixels.

    Returns:
        A new float32 array of the same shape.
    """
    b = _as_boxes(xyxy, "xyxy")
    width, height = image_size
    # min(max(b, 0), size), which is what np.clip computes, in two ufunc calls on the whole array.
    b = np.maximum(b, np.float32(0))
    return np.minimum(b, np.array([width, height, width, height], np.float32), out=b)


def box_area(xyxy: ArrayLike) -> np.ndarray:
    """Area of each box; inverted (x1 < x0 or y1 < y0) boxes have area 0.

    Args:
        xyxy: Boxes of shape (..., 4).

    Returns:
        float32 array of shape (...).
    """
    b = _as_boxes(xyxy, "xyxy")
    wh = np.clip(b[..., 2:] - b[..., :2], 0, None)
    return wh[..., 0] * wh[..., 1]


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU in float64 (used by NMS so that thresholds compare exactly).

    Written with in-place ufuncs (no ``clip``/``prod``/``where`` wrappers): NMS calls it per frame on a handful
    of boxes, where numpy's per-call overhead is the whole cost.
    """
    a = a.astype(np.float64, copy=False)
    b = b.astype(np.float64, copy=False)
    wh = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh -= np.maximum(a[:, None, :2], b[None, :, :2])
    np.maximum(wh, 0.0, out=wh)
    inter = wh[..., 0] * wh[..., 1]
    size_a = np.maximum(a[:, 2:] - a[:, :2], 0.0)
    size_b = np.maximum(b[:, 2:] - b[:, :2], 0.0)
    union = (size_a[:, 0] * size_a[:, 1])[:, None] + (size_b[:, 0] * size_b[:, 1])[None, :]
    union -= inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_iou(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Pairwise intersection over union.

    Args:
        a: (N, 4) xyxy boxes.
        b: (M, 4) xyxy boxes.

    Returns:
        (N, M) float32 IoU in [0, 1]; pairs whose union is empty (two zero-area boxes) get 0.
    """
    return _iou_matrix(_as_boxes(a, "a", batch_only=True), _as_boxes(b, "b", batch_only=True)).astype(np.float32)


def pair_iou(a: ArrayLike | None, b: ArrayLike | None) -> float:
    """IoU of two optional xyxy boxes, e.g. two detectors' top boxes on one frame, or a box and the truth.

    The convention for "no box" (None): two missing boxes agree (1.0), one missing box matches nothing (0.0).
    Two present boxes use :func:`box_iou`, so zero-area boxes (empty union) get 0.0.
    """
    if a is None and b is None:
        return 1.0
    if a is None or b is None:
        return 0.0
    return float(
        box_iou(np.reshape(np.asarray(a, np.float32), (1, 4)), np.reshape(np.asarray(b, np.float32), (1, 4)))[0, 0]
    )


# A detector's few candidates per frame (at most this many box pairs to compare) go through plain Python floats:
# numpy's per-call overhead would be most of the cost there.
_NMS_SCALAR_PAIRS = 512


def nms(
    xyxy: ArrayLike,
    scores: ArrayLike,
    iou_threshold: float,
    score_threshold: float = 0.0,
    max_det: int | None = None,
    class_ids: ArrayLike | None = None,
) -> np.ndarray:
    """Greedy non-maximum suppression.

    Boxes are visited from the highest score down (ties: lower index first); a box is kept unless it
    overlaps an already kept box with IoU strictly greater than ``iou_threshold``. This is the
    torchvision ``nms`` rule. ``cv2.dnn.NMSBoxes`` is not used because it differs from this rule on
    ties and threshold boundaries.

    Args:
        xyxy: (N, 4) boxes.
        scores: (N,) finite scores.
        iou_threshold: Overlap above which the lower-scored box is suppressed, in [0, 1].
        score_threshold: Boxes with ``score < score_threshold`` are dropped first.
        max_det: Keep at most this many boxes (None: no limit).
        class_ids: Optional (N,) class of each box; when given, boxes only suppress boxes of their own
            class (class-aware NMS).

    Returns:
        int64 indices into ``xyxy`` of the kept boxes, highest score first.
    """
    boxes = _as_boxes(xyxy, "xyxy", batch_only=True)
    conf = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(conf) != len(boxes):
        raise ValueError(f"scores: expected {len(boxes)} scores (one per box), got {len(conf)}")
    if not (np.isfinite(conf).all() and np.isfinite(boxes).all()):
        raise ValueError("nms: expected finite boxes and scores, got NaN or infinity")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ConfigError(f"iou_threshold: expected a value in [0, 1], got {iou_threshold}")
    if max_det is not None and max_det < 1:
        raise ConfigError(f"max_det: expected a positive integer or None, got {max_det}")
    classes = None
    if class_ids is not None:
        classes = np.asarray(class_ids).reshape(-1)
        if len(classes) != len(boxes):
            raise ValueError(f"class_ids: expected {len(boxes)} class ids (one per box), got {len(classes)}")

    candidates = np.flatnonzero(conf >= score_threshold)
    order = candidates[np.argsort(-conf[candidates], kind="stable")]
    limit = len(order) if max_det is None else max_det
    boxes64 = boxes.astype(np.float64)
    keep: list[int] = []
    if len(order) * min(len(order), limit) <= _NMS_SCALAR_PAIRS:
        return _nms_scalar(boxes64[order].tolist(), order, iou_threshold, limit, classes)
    while order.size and len(keep) < limit:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        if not rest.size:
            break
        overlap = _iou_matrix(boxes64[best : best + 1], boxes64[rest])[0] > iou_threshold
        if classes is not None:
            overlap &= classes[rest] == classes[best]
        order = rest[~overlap]
    return np.asarray(keep, dtype=np.int64)


def _nms_scalar(
    ranked: list[list[float]], order: np.ndarray, iou_threshold: float, limit: int, classes: np.ndarray | None
) -> np.ndarray:
    """:func:`nms`'s greedy rule on Python floats (IEEE doubles: the IoUs of :func:`_iou_matrix` to the bit).

    ``ranked`` holds the float64 boxes in visiting order, ``order`` their indices.
    """
    ranked_classes = None if classes is None else classes[order].tolist()
    kept: list[int] = []  # positions in ranked
    for i, (x0, y0, x1, y1) in enumerate(ranked):
        area = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
        for j in kept:
            if ranked_classes is not None and ranked_classes[j] != ranked_classes[i]:
                continue
            k0, k1, k2, k3 = ranked[j]
            inter = max(min(k2, x1) - max(k0, x0), 0.0) * max(min(k3, y1) - max(k1, y0), 0.0)
            union = max(k2 - k0, 0.0) * max(k3 - k1, 0.0) + area - inter
            if union > 0 and inter / union > iou_threshold:
                break
        else:
            kept.append(i)
            if len(kept) >= limit:
                break
    return order[kept].astype(np.int64)


def mask_to_box(mask: ArrayLike) -> np.ndarray | None:
    """Tight box around the nonzero pixels of a mask.

    Args:
        mask: (H, W) or (H, W, 1) array; any nonzero value counts as foreground.

    Returns:
        float32 ``[x0, y0, x1, y1]`` with x1/y1 exclusive (last foreground column/row + 1), or None
        when the mask has no foreground pixel.
    """
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise ValueError(f"mask: expected shape (H, W) or (H, W, 1), got {m.shape}")
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)
