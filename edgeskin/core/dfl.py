"""Box decoding of an anchor-free YOLO head (v5u/v8 style) done outside the model, in numpy.

The head predicts, for every anchor point (the centre of a cell of the stride-8, 16 and 32 grids), four
distances (left, top, right, bottom, in cells) each as a distribution over ``reg_max`` bins ("distribution
focal loss", DFL). The distance is the expectation ``sum_i i * softmax(logits)_i``. In the model this is a
``SOFTMAX`` over a ``[1, 4, N, 16]`` tensor, which the Edge TPU cannot map (it maps only 1-D softmax), so
an Edge TPU detector exports the raw logits and its class scores and decodes here instead
(spec ``layout: "yolo_dfl"``). :func:`dfl_to_predictions` gives the same ``[1, 4 + nc, N]`` tensor as a
model that decodes in the graph (``layout: "yolo"``, ``boxes: "xywh_normalized"``), so the rest of the
detector is shared.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

__all__ = ["DEFAULT_STRIDES", "anchor_points", "dfl_distances", "dfl_to_predictions", "detector_output_roles"]

DEFAULT_STRIDES: tuple[int, ...] = (8, 16, 32)


def anchor_points(input_hw: tuple[int, int], strides: Sequence[int] = DEFAULT_STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """Anchor centres in input pixels ``(N, 2)`` (x, y) and each anchor's stride ``(N,)``.

    Ordered like ultralytics' ``make_anchors``: stride by stride, row-major within a grid (y outer, x inner).
    The arrays are computed once per input size and shared (read-only).
    """
    return _anchor_points(tuple(int(v) for v in input_hw), tuple(int(s) for s in strides))


@functools.lru_cache(maxsize=8)
def _anchor_points(input_hw: tuple[int, int], strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    height, width = input_hw
    points, anchor_strides = [], []
    for stride in strides:
        rows, cols = int(np.ceil(height / stride)), int(np.ceil(width / stride))
        yy, xx = np.meshgrid(np.arange(rows, dtype=np.float32), np.arange(cols, dtype=np.float32), indexing="ij")
        points.append((np.stack([xx.ravel(), yy.ravel()], axis=1) + 0.5) * stride)
        anchor_strides.append(np.full(rows * cols, stride, np.float32))
    arrays = np.concatenate(points).astype(np.float32), np.concatenate(anchor_strides)
    for array in arrays:
        array.setflags(write=False)
    return arrays


def dfl_distances(logits: np.ndarray, reg_max: int = 16) -> np.ndarray:
    """``(4 * reg_max, N)`` logits → ``(4, N)`` float32 expected distances in bins (softmax over each side's bins).

    Computed in float64 (as the classifier's softmax), then rounded to float32.
    """
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2 or logits.shape[0] != 4 * reg_max:
        raise ValueError(f"DFL logits: expected shape (4 * {reg_max}, N), got {logits.shape}")
    bins = logits.reshape(4, reg_max, -1)
    bins = np.exp(bins - np.maximum.reduce(bins, axis=1, keepdims=True))
    # sum_b b * e_b / sum_b e_b with the bins added one after the other (a running sum: add.accumulate is
    # sequential), so a column decodes to the same bits whichever other columns are in the tensor (the runtime
    # decodes only the anchors whose score passes; numpy's reduce orders its additions by the tensor's shape).
    total = np.add.accumulate(bins, axis=1)[:, -1]
    bins *= _bin_indices(reg_max)
    weighted = np.add.accumulate(bins, axis=1)[:, -1]
    return (weighted / total).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _bin_indices(reg_max: int) -> np.ndarray:
    """``0 .. reg_max - 1`` as float64, shaped to scale the bins of a ``(4, reg_max, N)`` tensor (read-only)."""
    indices = np.arange(reg_max, dtype=np.float64)[None, :, None]
    indices.setflags(write=False)
    return indices


def dfl_to_predictions(
    logits: np.ndarray,
    scores: np.ndarray,
    input_hw: tuple[int, int],
    strides: Sequence[int] = DEFAULT_STRIDES,
    reg_max: int = 16,
    columns: np.ndarray | None = None,
) -> np.ndarray:
    """Raw DFL box logits and class scores → ``[1, 4 + nc, N]``: ``cx, cy, w, h`` as fractions of the input,
    then the scores (the ``layout: "yolo"`` tensor).

    Args:
        logits: ``[1, 4 * reg_max, N]`` or ``[1, N, 4 * reg_max]`` (dequantized).
        scores: ``[1, nc, N]`` or ``[1, N, nc]`` class scores in [0, 1].
        input_hw: ``(height, width)`` of the model input.
        columns: The anchors (indices into all N) that ``logits`` and ``scores`` hold, e.g. those whose score
            passed a threshold; None: all N anchors. Each column is decoded as in the whole tensor.
    """
    points, anchor_strides = anchor_points(input_hw, strides)
    if columns is not None:
        points, anchor_strides = points[columns], anchor_strides[columns]
    n = len(points)
    logits = _channels_first(logits, n, "DFL logits")
    scores = _channels_first(scores, n, "scores")
    ltrb = dfl_distances(logits, reg_max)
    ltrb *= anchor_strides
    x0, y0 = points[:, 0] - ltrb[0], points[:, 1] - ltrb[1]
    x1, y1 = points[:, 0] + ltrb[2], points[:, 1] + ltrb[3]
    height, width = input_hw
    out = np.empty((1, 4 + len(scores), n), np.float32)  # rows written in place: no stack, no concatenate
    np.divide(np.add(x0, x1) / 2, width, out=out[0, 0])
    np.divide(np.add(y0, y1) / 2, height, out=out[0, 1])
    np.divide(np.subtract(x1, x0), width, out=out[0, 2])
    np.divide(np.subtract(y1, y0), height, out=out[0, 3])
    out[0, 4:] = scores
    return out


def _channels_first(tensor: np.ndarray, n: int, what: str) -> np.ndarray:
    array = np.asarray(tensor, np.float32)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or n not in array.shape:
        raise ValueError(f"{what}: expected [1, C, {n}] or [1, {n}, C], got {np.shape(tensor)}")
    return array if array.shape[1] == n else array.T


def detector_output_roles(outputs: Sequence) -> tuple[str, str | None]:
    """``(predictions, scores)`` names of an exported YOLO detector's outputs (objects with ``name`` and ``shape``).

    One output decodes in the graph (``layout: "yolo"``; scores None). Two outputs are the DFL logits (the one with
    64 channels) and the class scores (``layout: "yolo_dfl"``). A converter may rename outputs, so the roles come
    from the shapes.

    Raises:
        ValueError: any other set of outputs.
    """
    outputs = list(outputs)
    if len(outputs) == 1:
        return outputs[0].name, None
    logits = [o for o in outputs if 64 in tuple(o.shape)[1:]]
    if len(outputs) == 2 and len(logits) == 1:
        return logits[0].name, next(o.name for o in outputs if o is not logits[0])
    raise ValueError(
        f"expected one output, or DFL logits and scores, got {[(o.name, tuple(o.shape)) for o in outputs]}"
    )
