"""Is a doubtful detector box a skin lesion? Two measures of the frame, for the detector's unsure band.

A box that the detector scores in its unsure band (``thresholds.unsure`` <= score < ``thresholds.presence``) is
answered only when the frame backs it up:

* **the frame looks like skin, not a scene** - a dermoscopy or close-up skin frame is a smooth, nearly uniform
  field: few strong edges and little spread of colour. Everyday photos (fur, faces, clothes, foliage) have both.
  *Edge density*: the share of the lit field (the frame without a dermatoscope's vignette) whose Sobel gradient
  magnitude is at least 60 grey levels; *chroma spread*: the standard deviation of the lit field's colour in CIE
  Lab (a*, b* together). A frame with both at or above their limits is a scene, and so is a frame whose chroma
  spread alone is beyond any dermoscopy frame's of the choosing sets (a bird on a blurred green background);
* **something stands out from the skin** - *centre darkness*: how much darker the middle of the box (its
  central half in each direction) is than the brightest tenth of the lit field, ``(L90 - median L_centre) /
  L90`` in CIE L*. The brightest tenth of the field is skin however large and dark the lesion is, so a
  frame-filling melanoma on well-lit skin scores high; a box on plain skin scores near 0.

Everything is measured on the frame shrunk by integer block means to at most ``work_side`` pixels on its long
side, with integer arithmetic after that: the same verdict on every CPU. The thresholds, and the
rule that chose them, are in :class:`EvidenceThresholds`; ``benchmarks/unsure_band.py`` measures what they do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgeskin.core.localize import field_of_view
from edgeskin.errors import check_at_least, check_fraction

__all__ = ["EvidenceThresholds", "LesionEvidence", "lesion_evidence", "SCENE", "PLAIN_SKIN"]

# Why an unsure-band box was not answered (LesionEvidence.verdict).
SCENE = "scene"
PLAIN_SKIN = "plain skin"
_EDGE_LEVEL = 60.0  # Sobel magnitude (grey levels) that counts as a strong edge


@dataclass(frozen=True)
class EvidenceThresholds:
    """Limits of :func:`lesion_evidence`'s verdict.

    Chosen (``benchmarks/unsure_band.py``) on the unsure-band boxes of the detector's held-out dermoscopy (HAM10000
    validation, ISIC 2017/2018 held-out third: 90 boxes) and of its non-lesion frames (seeds 0 and 1: 82 boxes), by
    this rule: ``min_centre_darkness`` is the largest value, in steps of 0.01, that leaves every melanoma of those
    lesion boxes answered; the scene limits are the rounded lowest values of the everyday-photo boxes' edge density
    and chroma spread (cat crops: 0.20 and 9). ``scene_chroma_alone`` was added after non-lesion seed 2, measured as
    a fresh set, had bird, cat and portrait crops with a smooth background answered (chroma spread 13.9-22.3 with
    few edges): the smallest whole number above every unsure-band lesion box of the choosing sets (at most 13.1).
    Seed 2 then joined the choosing frames; seed 3 is the fresh one. Figures: DETECTOR_CARD.md.

    Attributes:
        min_centre_darkness: The box centre must be at least this much darker than the skin (fraction of L90).
        scene_edge_density: With ``scene_chroma_spread``: a frame at or above both is a scene, not skin.
        scene_chroma_spread: Lab chroma standard deviation of the lit field (see the module docstring).
        scene_chroma_alone: A chroma spread at or above this makes a scene whatever the edges.
        work_side: Long side (pixels) the frame is resized to before measuring.
    """

    min_centre_darkness: float = 0.05
    scene_edge_density: float = 0.20
    scene_chroma_spread: float = 9.0
    scene_chroma_alone: float = 14.0
    work_side: int = 256

    def __post_init__(self) -> None:
        for name in ("min_centre_darkness", "scene_edge_density"):
            check_fraction(getattr(self, name), name)
        for name in ("scene_chroma_spread", "scene_chroma_alone"):
            check_at_least(getattr(self, name), 0, name)
        check_at_least(self.work_side, 32, "work_side", " pixels")


@dataclass(frozen=True)
class LesionEvidence:
    """What the frame says about one box (see the module docstring).

    Attributes:
        centre_darkness: ``(L90 - median L of the box centre) / L90``; negative when the centre is brighter.
        edge_density: Share of the lit field with a strong edge.
        chroma_spread: Standard deviation of the lit field's Lab chroma.
    """

    centre_darkness: float
    edge_density: float
    chroma_spread: float

    def verdict(self, thresholds: EvidenceThresholds | None = None) -> str | None:
        """None when the box may be answered; else why not: :data:`SCENE` or :data:`PLAIN_SKIN`."""
        th = thresholds or EvidenceThresholds()
        cluttered = self.edge_density >= th.scene_edge_density and self.chroma_spread >= th.scene_chroma_spread
        if cluttered or self.chroma_spread >= th.scene_chroma_alone:
            return SCENE
        if self.centre_darkness < th.min_centre_darkness:
            return PLAIN_SKIN
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "centre_darkness": round(self.centre_darkness, 4),
            "edge_density": round(self.edge_density, 4),
            "chroma_spread": round(self.chroma_spread, 3),
        }


def _block_mean(frame_rgb: np.ndarray, factor: int) -> np.ndarray:
    """The frame shrunk by an integer factor, each pixel the rounded mean of a factor x factor block (integer
    arithmetic: the same on every CPU). Rows and columns past the last whole block are dropped."""
    if factor == 1:
        return np.ascontiguousarray(frame_rgb)
    height, width = (frame_rgb.shape[0] // factor) * factor, (frame_rgb.shape[1] // factor) * factor
    blocks = frame_rgb[:height, :width].reshape(height // factor, factor, width // factor, factor, 3)
    sums = blocks.sum(axis=(1, 3), dtype=np.uint32)
    area = factor * factor
    return ((sums + area // 2) // area).astype(np.uint8)


def _spread(values: np.ndarray) -> float:
    """Variance of integer values, from exact integer sums."""
    n = int(values.size)
    if n == 0:
        return 0.0
    total = int(values.sum(dtype=np.int64))
    squares = int(np.square(values, dtype=np.int64).sum())
    return (n * squares - total * total) / (n * n)


def lesion_evidence(frame_rgb: np.ndarray, box: np.ndarray | list[float], work_side: int = 256) -> LesionEvidence:
    """Measure the frame around one box (pixel ``xyxy`` in ``frame_rgb``).

    The frame is shrunk by the smallest integer factor that brings its long side to ``work_side`` or less, by
    integer block means; every measure after that is integer arithmetic or a correctly rounded float operation,
    so the verdict is the same on every CPU.
    """
    height, width = frame_rgb.shape[:2]
    factor = max(1, -(-max(height, width) // work_side))
    small = _block_mean(frame_rgb, factor)
    h, w = small.shape[:2]
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB)
    lightness = lab[..., 0]
    field = field_of_view(lightness)
    lit = lightness[field]

    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    dx = cv2.Sobel(grey, cv2.CV_16S, 1, 0).astype(np.int32)
    dy = cv2.Sobel(grey, cv2.CV_16S, 0, 1).astype(np.int32)
    strong = dx * dx + dy * dy > _EDGE_LEVEL * _EDGE_LEVEL
    edge_density = float(np.count_nonzero(strong[field])) / max(1, lit.size)
    chroma = lab[..., 1:][field]
    chroma_spread = float(np.sqrt(_spread(chroma[:, 0]) + _spread(chroma[:, 1])))

    x0, y0, x1, y1 = (float(v) / factor for v in np.asarray(box, np.float64).reshape(4))
    quarter_w, quarter_h = (x1 - x0) / 4.0, (y1 - y0) / 4.0
    cx0, cx1 = int(np.clip(x0 + quarter_w, 0, w - 1)), int(np.clip(np.ceil(x1 - quarter_w), 1, w))
    cy0, cy1 = int(np.clip(y0 + quarter_h, 0, h - 1)), int(np.clip(np.ceil(y1 - quarter_h), 1, h))
    centre = np.zeros((h, w), bool)
    centre[cy0 : max(cy1, cy0 + 1), cx0 : max(cx1, cx0 + 1)] = True
    centre &= field
    skin = float(np.percentile(lit, 90)) if lit.size else 0.0
    if skin <= 0.0 or not centre.any():
        darkness = 0.0
    else:
        darkness = (skin - float(np.median(lightness[centre]))) / skin
    return LesionEvidence(centre_darkness=darkness, edge_density=edge_density, chroma_spread=chroma_spread)
