"""The context view: when a lesion's crop is likely to lose, classify a wider view as well and combine the two.

A small lesion in a small frame gives a crop that the classifier's resize enlarges a lot, and a box that covers
most of the frame gives a crop that is nearly the frame with its edge cut. On such lesions the crop ranked
melanomas worse than the whole frame (issue 29). A :class:`ContextRule` says when a second view is classified
(the crop's upsampling or the box's share of the frame over a limit), which view (the whole frame or the box
grown by its own size per side) and how its probabilities are combined with the crop's. The rule's candidates and
how the default was chosen are in ``docs/context-view.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from edgeskin.errors import ConfigError

__all__ = ["COMBINATIONS", "CONTEXTS", "GROWN_MARGIN", "ContextRule", "combine_views", "context_measures"]

CONTEXTS = ("frame", "grown")
COMBINATIONS = ("mean", "logit", "max_mel")
GROWN_MARGIN = 1.0  # the "grown" context: the box plus its own width and height on each side


@dataclass(frozen=True)
class ContextRule:
    """When and how the pipeline adds a context view to a lesion's crop.

    Attributes:
        upsampling: Trigger when the classifier's resize enlarges the crop by more than this factor
            (``math.inf``: never on this measure).
        area: Trigger when the detector box covers more than this fraction of the frame (``math.inf``: never).
        context: ``"frame"`` (the whole frame) or ``"grown"`` (the box grown by its own size on each side).
        combination: ``"mean"`` of the probabilities, ``"logit"`` (their normalised geometric mean: the mean
            of the calibrated logits) or ``"max_mel"`` (the view with the higher melanoma probability).
    """

    upsampling: float = math.inf
    area: float = math.inf
    context: str = "frame"
    combination: str = "mean"

    def __post_init__(self) -> None:
        for name in ("upsampling", "area"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
                raise ConfigError(f"context rule {name}: expected a number >= 0 (inf: never), got {value!r}")
        if self.context not in CONTEXTS:
            raise ConfigError(f"context rule context: expected one of {list(CONTEXTS)}, got {self.context!r}")
        if self.combination not in COMBINATIONS:
            raise ConfigError(
                f"context rule combination: expected one of {list(COMBINATIONS)}, got {self.combination!r}"
            )

    def triggers(self, upsampling: float, area: float) -> bool:
        """True when a lesion with this crop upsampling and box area fraction gets the context view."""
        return bool(upsampling > self.upsampling or area > self.area)


def context_measures(
    box: ArrayLike, crop_box: ArrayLike, frame_size: Sequence[int], input_size: Sequence[int] | None
) -> tuple[float, float]:
    """The two measures a :class:`ContextRule` reads, known before any classification.

    Args:
        box: The detector box ``[x0, y0, x1, y1]`` in frame pixels.
        crop_box: The crop window ``[x0, y0, x1, y1]`` given to the classifier (x1, y1 exclusive).
        frame_size: ``(width, height)`` of the frame.
        input_size: ``(height, width)`` of the classifier's input (its spec's order); None when unknown (a
            classifier without a spec): the upsampling is then NaN, which never triggers.

    Returns:
        ``(upsampling, area)``: the largest per-axis factor by which the classifier's resize enlarges the crop
        (below 1: it shrinks it), and the box's share of the frame's area after clipping to the frame.
    """
    width, height = (float(v) for v in frame_size)
    in_h, in_w = (math.nan, math.nan) if input_size is None else (float(v) for v in input_size)
    cx0, cy0, cx1, cy1 = (float(v) for v in np.asarray(crop_box, np.float64).reshape(4))
    crop_w, crop_h = cx1 - cx0, cy1 - cy0
    if crop_w <= 0 or crop_h <= 0 or width <= 0 or height <= 0:
        raise ValueError(
            f"context_measures: expected a non-empty crop window and frame, got {crop_box} in {frame_size}"
        )
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, np.float64).reshape(4))
    box_w = max(0.0, min(x1, width) - max(x0, 0.0))
    box_h = max(0.0, min(y1, height) - max(y0, 0.0))
    return max(in_w / crop_w, in_h / crop_h), box_w * box_h / (width * height)


def combine_views(crop: ArrayLike, context: ArrayLike, combination: str, melanoma: int) -> np.ndarray:
    """The crop's and the context's probability vectors combined as ``combination`` says; sums to 1.

    Args:
        crop, context: (C,) probabilities of the two views.
        combination: One of :data:`COMBINATIONS`.
        melanoma: The index of the melanoma class (for ``max_mel``).
    """
    p = np.asarray(crop, np.float64)
    q = np.asarray(context, np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"combine_views: expected two (C,) probability vectors, got {p.shape} and {q.shape}")
    if combination == "mean":
        out = (p + q) / 2.0
    elif combination == "logit":
        tiny = np.finfo(np.float32).tiny  # a quantized softmax can give exact zeros
        log_mean = (np.log(np.maximum(p, tiny)) + np.log(np.maximum(q, tiny))) / 2.0
        out = np.exp(log_mean - log_mean.max())
    elif combination == "max_mel":
        out = q if q[melanoma] > p[melanoma] else p
    else:
        raise ConfigError(f"combination: expected one of {list(COMBINATIONS)}, got {combination!r}")
    return (out / out.sum()).astype(np.float32)
