"""Image-quality gate for live frames: is this frame good enough to show a diagnosis?

Checks, each with guidance for the person holding the camera:

* **blur** - variance of the Laplacian of the grey frame, measured at a fixed working size and with the
  brightness normalised to a mean of 128, so that the same threshold holds for any camera resolution and
  for dim and bright frames alike (a plain variance of the Laplacian falls with the square of the
  exposure) → "hold still";
* **under-exposure** - mean luminance → "too dark";
* **over-exposure** - share of clipped (near-white) pixels or a very high mean luminance → "too bright";
* **lesion too small** - the lesion box's share of the frame → "move closer".

Default thresholds were measured on the 100 PH2 dermoscopy images turned into camera-like frames (a
centred 4:3 view at zoom 1x, 1.6x and 2x, resized to 320x240, JPEG quality 75: 300 frames) and on
blurred, darkened and brightened versions of them. ``benchmarks/quality_thresholds.py`` prints this table:

=============  ======================  ==================  ===========  =====  =====  ======
frames         sharpness min/p5/p50    luma min/p50/max    clipped max  blur   dark   bright
=============  ======================  ==================  ===========  =====  =====  ======
original       18.8 / 33.6 / 135.0     55 / 146 / 213      0.26         1 %    1 %    0 %
blur σ=2       2.2 / 3.0 / 10.6        55 / 146 / 213      0.25         70 %   1 %    0 %
blur σ=3       1.2 / 1.7 / 4.9         55 / 146 / 212      0.25         96 %   1 %    0 %
blur σ=4       1.0 / 1.3 / 3.4         55 / 146 / 212      0.25         99 %   1 %    0 %
dark ×0.4      16.8 / 31.9 / 120.6     22 / 58 / 85        0.00         0 %    93 %   0 %
dark ×0.25     19.0 / 33.5 / 118.0     13 / 36 / 53        0.00         0 %    100 %  0 %
bright ×1.6    4.3 / 12.0 / 84.9       87 / 209 / 250      0.87         1 %    0 %    39 %
bright ×2.2    0.9 / 6.3 / 56.6        119 / 235 / 254     0.91         0 %    0 %    69 %
=============  ======================  ==================  ===========  =====  =====  ======

The originals called "too dark" (4 of 300) are 1.6x and 2x views filled by a large dark lesion; the two
called blurred are views of one very smooth image (IMD045). PH2 lesion boxes cover 5.5 % (min) / 12.5 % (5th
percentile) / 38 % (median) of the image; "move closer" starts below 4 %. Directional (motion) blur along
one axis keeps the edges across it and is only partly caught.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

__all__ = [
    "GUIDANCE",
    "QualityThresholds",
    "QualityReport",
    "QualityGate",
    "assess_quality",
    "sharpness",
]

# issue -> message shown instead of a diagnosis
GUIDANCE: dict[str, str] = {
    "blur": "hold still",
    "dark": "too dark",
    "bright": "too bright",
    "small": "move closer",
}


@dataclass(frozen=True)
class QualityThresholds:
    """Thresholds of the quality gate (defaults measured on PH2; see the module docstring).

    Attributes:
        min_sharpness: Smallest accepted brightness-normalised variance of the Laplacian at
            ``analysis_side``. PH2 frames: 5th percentile 33.6; blurred σ=2: median 10.6.
        min_mean_luminance: Smallest accepted mean grey level (0-255). PH2 frames: median 146;
            darkened ×0.4: median 58.
        max_mean_luminance: Largest accepted mean grey level. PH2 frames: max 213.
        clip_level: A grey level at or above this counts as clipped.
        max_clipped_fraction: Largest accepted share of clipped pixels. PH2 frames: max 0.26.
        min_lesion_fraction: Smallest accepted lesion-box area as a share of the frame. PH2 boxes: min 0.055.
        analysis_side: Long side (pixels) the frame is resized to before measuring.
    """

    min_sharpness: float = 20.0
    min_mean_luminance: float = 75.0
    max_mean_luminance: float = 235.0
    clip_level: int = 250
    max_clipped_fraction: float = 0.30
    min_lesion_fraction: float = 0.04
    analysis_side: int = 320

    def __post_init__(self) -> None:
        if not 0 <= self.min_mean_luminance < self.max_mean_luminance <= 255:
            raise ValueError(
                f"expected 0 <= min_mean_luminance < max_mean_luminance <= 255, got "
                f"{self.min_mean_luminance} and {self.max_mean_luminance}"
            )
        for name in ("max_clipped_fraction", "min_lesion_fraction"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if self.analysis_side < 32:
            raise ValueError(f"analysis_side must be at least 32 pixels, got {self.analysis_side}")


@dataclass(frozen=True)
class QualityReport:
    """What the gate measured on one frame and what it tells the user.

    Attributes:
        ok: True when every check passed.
        issues: Failed checks, from ``blur``, ``dark``, ``bright``, ``small`` (in that order).
        guidance: One message per issue, e.g. ``("hold still",)``.
        sharpness: Brightness-normalised variance of the Laplacian.
        mean_luminance: Mean grey level (0-255).
        clipped_fraction: Share of pixels at or above the clip level.
        lesion_fraction: Lesion-box area / frame area, or None when no box was given.
    """

    ok: bool
    issues: tuple[str, ...]
    guidance: tuple[str, ...]
    sharpness: float
    mean_luminance: float
    clipped_fraction: float
    lesion_fraction: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "issues": list(self.issues),
            "guidance": list(self.guidance),
            "sharpness": round(self.sharpness, 2),
            "mean_luminance": round(self.mean_luminance, 2),
            "clipped_fraction": round(self.clipped_fraction, 4),
            "lesion_fraction": None if self.lesion_fraction is None else round(self.lesion_fraction, 4),
        }


def _grey_at(frame_rgb: np.ndarray, side: int) -> np.ndarray:
    if not isinstance(frame_rgb, np.ndarray) or frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got shape {getattr(frame_rgb, 'shape', None)}")
    height, width = frame_rgb.shape[:2]
    scale = side / max(height, width)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        frame_rgb = cv2.resize(frame_rgb, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(np.ascontiguousarray(frame_rgb), cv2.COLOR_RGB2GRAY)


def sharpness(frame_rgb: np.ndarray, analysis_side: int = 320) -> float:
    """Brightness-normalised variance of the Laplacian of the frame resized to ``analysis_side``."""
    grey = _grey_at(frame_rgb, analysis_side).astype(np.float32)
    return _normalised_laplacian_variance(grey)


def _normalised_laplacian_variance(grey: np.ndarray) -> float:
    mean = float(grey.mean())
    if mean < 1.0:  # a black frame has no edges at any gain
        return 0.0
    return float(cv2.Laplacian(grey * (128.0 / mean), cv2.CV_32F).var())


def _box_fraction(box: Sequence[float] | np.ndarray, width: int, height: int) -> float:
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    x0, x1 = np.clip([x0, x1], 0, width)
    y0, y1 = np.clip([y0, y1], 0, height)
    return float(max(0.0, x1 - x0) * max(0.0, y1 - y0) / float(width * height))


def assess_quality(
    frame_rgb: np.ndarray,
    box: Sequence[float] | np.ndarray | None = None,
    thresholds: QualityThresholds | None = None,
) -> QualityReport:
    """Measure a frame and say whether it is good enough for a diagnosis.

    Args:
        frame_rgb: RGB uint8 (H, W, 3) frame.
        box: The main lesion's pixel ``xyxy`` box in this frame, to check its size; None skips that check.
        thresholds: Thresholds; default :class:`QualityThresholds()`.

    Returns:
        A :class:`QualityReport`.
    """
    th = thresholds or QualityThresholds()
    grey = _grey_at(frame_rgb, th.analysis_side)
    grey_f = grey.astype(np.float32)
    mean = float(grey_f.mean())
    clipped = float(np.count_nonzero(grey >= th.clip_level)) / grey.size
    sharp = _normalised_laplacian_variance(grey_f)
    issues: list[str] = []
    # A frame that is badly exposed has no trustworthy edges either: say the exposure, not "hold still".
    dark = mean < th.min_mean_luminance
    bright = clipped > th.max_clipped_fraction or mean > th.max_mean_luminance
    if sharp < th.min_sharpness and not (dark or bright):
        issues.append("blur")
    if dark:
        issues.append("dark")
    if bright:
        issues.append("bright")
    fraction = None
    if box is not None:
        height, width = frame_rgb.shape[:2]
        fraction = _box_fraction(box, width, height)
        if fraction < th.min_lesion_fraction:
            issues.append("small")
    return QualityReport(
        ok=not issues,
        issues=tuple(issues),
        guidance=tuple(GUIDANCE[i] for i in issues),
        sharpness=sharp,
        mean_luminance=mean,
        clipped_fraction=clipped,
        lesion_fraction=fraction,
    )


class QualityGate:
    """The gate the live loop calls: ``gate(frame_rgb, box=None) -> QualityReport``.

    Args:
        thresholds: Thresholds; default :class:`QualityThresholds()`.
        checks: Which checks to apply, from ``blur``, ``dark``, ``bright``, ``small`` (default: all).
    """

    def __init__(self, thresholds: QualityThresholds | None = None, checks: Sequence[str] | None = None) -> None:
        self.thresholds = thresholds or QualityThresholds()
        chosen = tuple(GUIDANCE) if checks is None else tuple(checks)
        unknown = sorted(set(chosen) - set(GUIDANCE))
        if unknown:
            raise ValueError(f"unknown quality checks {unknown}; expected some of {list(GUIDANCE)}")
        self.checks = chosen

    def __call__(self, frame_rgb: np.ndarray, box: Sequence[float] | np.ndarray | None = None) -> QualityReport:
        """Check the frame (and the lesion box, when given)."""
        report = assess_quality(frame_rgb, box if "small" in self.checks else None, self.thresholds)
        return self._only_chosen(report)

    def check_box(
        self, report: QualityReport, box: Sequence[float] | np.ndarray, frame_size: tuple[int, int]
    ) -> QualityReport:
        """Add the lesion-size check to a report of the same frame (the frame is not measured again).

        Args:
            report: The frame's report from ``gate(frame_rgb)``.
            box: The main lesion's pixel ``xyxy`` box.
            frame_size: (width, height) of the frame the box is in.
        """
        fraction = _box_fraction(box, frame_size[0], frame_size[1])
        issues = tuple(i for i in report.issues if i != "small")
        if "small" in self.checks and fraction < self.thresholds.min_lesion_fraction:
            issues = (*issues, "small")
        return replace(
            report, ok=not issues, issues=issues, guidance=tuple(GUIDANCE[i] for i in issues), lesion_fraction=fraction
        )

    def _only_chosen(self, report: QualityReport) -> QualityReport:
        if set(report.issues) <= set(self.checks):
            return report
        issues = tuple(i for i in report.issues if i in self.checks)
        return replace(report, ok=not issues, issues=issues, guidance=tuple(GUIDANCE[i] for i in issues))
