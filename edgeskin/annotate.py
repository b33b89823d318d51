"""Annotators: draw boxes, labels, class activation maps and notices on a copy of a frame.

Drawing is apart from inference (the supervision idea): an annotator takes a frame and a result and
returns a new frame; the input is never modified. Frames are RGB uint8 (H, W, 3); colours are RGB.
Text uses OpenCV's built-in Hershey fonts (ASCII only, nothing to download)::

    result = pipeline(frame)
    shown = annotate(frame, result)                  # boxes, labels, heatmaps, notice
    shown = BoxAnnotator().annotate(frame, result)   # or compose the parts you want
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edgeskin.core.cam import cam_to_heatmap, upsample_cam
from edgeskin.errors import ConfigError, ImageError
from edgeskin.labels import DX_NAMES
from edgeskin.results import Detections, Lesion, PipelineResult

__all__ = [
    "NOT_A_DIAGNOSIS",
    "BannerAnnotator",
    "BoxAnnotator",
    "HeatmapAnnotator",
    "LabelAnnotator",
    "annotate",
    "lesion_label",
]

NOT_A_DIAGNOSIS = "Research prototype - not a diagnosis. Show any changing or worrying spot to a doctor."

Color = tuple[int, int, int]
REFER_COLOR: Color = (230, 30, 40)  # red: refer to a doctor
OK_COLOR: Color = (40, 200, 120)  # green: not flagged (still not a diagnosis)
DETECTION_COLOR: Color = (255, 200, 0)  # amber: plain detections without a classification
TEXT_COLOR: Color = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _check_scene(scene: np.ndarray) -> None:
    if not isinstance(scene, np.ndarray) or scene.dtype != np.uint8 or scene.ndim != 3 or scene.shape[2] != 3:
        got = f"{scene.dtype} array of shape {scene.shape}" if isinstance(scene, np.ndarray) else type(scene).__name__
        raise ImageError(f"annotate: expected an RGB uint8 frame of shape (H, W, 3), got {got}")


def _lesions(result: PipelineResult | Sequence[Lesion]) -> tuple[Lesion, ...]:
    return tuple(result.lesions) if isinstance(result, PipelineResult) else tuple(result)


def _auto_scale(scene: np.ndarray) -> float:
    """Text scale that stays readable from a 320-pixel preview to a 4K frame."""
    return float(np.clip(min(scene.shape[:2]) / 900.0, 0.35, 2.0))


def _auto_thickness(scene: np.ndarray) -> int:
    return max(1, round(min(scene.shape[:2]) / 300))


def _int_box(box: np.ndarray, scene: np.ndarray) -> tuple[int, int, int, int]:
    height, width = scene.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box).reshape(-1)[:4])
    x0, x1 = int(np.clip(round(x0), 0, width - 1)), int(np.clip(round(x1) - 1, 0, width - 1))
    y0, y1 = int(np.clip(round(y0), 0, height - 1)), int(np.clip(round(y1) - 1, 0, height - 1))
    return x0, y0, max(x0, x1), max(y0, y1)


def _draw_text_box(
    scene: np.ndarray, text: str, origin: tuple[int, int], color: Color, scale: float, thickness: int
) -> None:
    """Text on a filled background; ``origin`` is the top-left corner, moved inside the frame."""
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    pad = max(2, round(4 * scale))
    height, width = scene.shape[:2]
    box_w, box_h = text_w + 2 * pad, text_h + baseline + 2 * pad
    x = int(np.clip(origin[0], 0, max(0, width - box_w)))
    y = int(np.clip(origin[1], 0, max(0, height - box_h)))
    cv2.rectangle(scene, (x, y), (x + box_w, y + box_h), color, thickness=cv2.FILLED)
    cv2.putText(scene, text, (x + pad, y + pad + text_h), FONT, scale, TEXT_COLOR, thickness, cv2.LINE_AA)


def lesion_label(lesion: Lesion) -> str:
    """``"Melanoma 0.82 (mel)"``, with ``"  REFER"`` appended when the lesion is flagged for referral."""
    name = lesion.dx.label
    probability = float(lesion.dx.probabilities.max())
    text = f"{DX_NAMES.get(name, name)} {probability:.2f} ({name})"
    return text + "  REFER" if lesion.refer else text


@dataclass(frozen=True)
class BoxAnnotator:
    """Draw each lesion's box: red when it is flagged for referral, green otherwise.

    Attributes:
        thickness: Line thickness in pixels (None: from the frame size).
        refer_color: Colour of referred lesions; ok_color: of the others; detection_color: of plain
            :class:`Detections`.
    """

    thickness: int | None = None
    refer_color: Color = REFER_COLOR
    ok_color: Color = OK_COLOR
    detection_color: Color = DETECTION_COLOR

    def annotate(
        self, scene: np.ndarray, result: PipelineResult | Sequence[Lesion] | Detections, *, copy: bool = True
    ) -> np.ndarray:
        """Return ``scene`` with the boxes drawn (a copy unless ``copy=False``)."""
        _check_scene(scene)
        out = scene.copy() if copy else scene
        thickness = self.thickness or _auto_thickness(out)
        if isinstance(result, Detections):
            for box in result.xyxy:
                x0, y0, x1, y1 = _int_box(box, out)
                cv2.rectangle(out, (x0, y0), (x1, y1), self.detection_color, thickness, cv2.LINE_AA)
            return out
        for lesion in _lesions(result):
            x0, y0, x1, y1 = _int_box(lesion.box, out)
            color = self.refer_color if lesion.refer else self.ok_color
            cv2.rectangle(out, (x0, y0), (x1, y1), color, thickness, cv2.LINE_AA)
        return out


@dataclass(frozen=True)
class LabelAnnotator:
    """Write each lesion's label (``"Melanoma 0.82 (mel)"``, plus ``"REFER"``) above its box.

    Attributes:
        text_scale: Hershey font scale (None: from the frame size).
        text_thickness: Stroke thickness (None: from the scale).
        show_score: Append the detector score (``"det 0.91"``).
    """

    text_scale: float | None = None
    text_thickness: int | None = None
    show_score: bool = False
    refer_color: Color = REFER_COLOR
    ok_color: Color = OK_COLOR

    def annotate(
        self, scene: np.ndarray, result: PipelineResult | Sequence[Lesion], *, copy: bool = True
    ) -> np.ndarray:
        """Return ``scene`` with a label per lesion (a copy unless ``copy=False``)."""
        _check_scene(scene)
        out = scene.copy() if copy else scene
        scale = self.text_scale or _auto_scale(out)
        thickness = self.text_thickness or max(1, round(scale * 1.6))
        for lesion in _lesions(result):
            text = lesion_label(lesion)
            if self.show_score:
                text += f"  det {lesion.score:.2f}"
            (_, text_h), baseline = cv2.getTextSize(text, FONT, scale, thickness)
            x0, y0, _, y1 = _int_box(lesion.box, out)
            label_h = text_h + baseline + 2 * max(2, round(4 * scale))
            # Above the box (its background spans label_h + 1 rows); else inside the box's top edge:
            # below it would sit under the bottom banner.
            y = y0 - label_h - 1 if y0 - label_h - 1 >= 0 else min(y0 + 1, max(0, out.shape[0] - label_h - 1))
            color = self.refer_color if lesion.refer else self.ok_color
            _draw_text_box(out, text, (x0, y), color, scale, thickness)
        return out


@dataclass(frozen=True)
class HeatmapAnnotator:
    """Blend each lesion's class activation map (JET colours) into its crop region.

    The map (``Lesion.cam``, over ``Lesion.crop_box``) is resized to the crop and mixed with the frame
    inside the crop box: ``out = (1 - a) * frame + a * heatmap`` with ``a = opacity`` (``weighted=False``)
    or ``a = opacity * cam`` (``weighted=True``, the default: where the map is weak the skin stays
    visible, so the overlay shows where the model looked). Lesions without a map are left as they are.

    Attributes:
        opacity: Largest weight of the heatmap, in [0, 1].
        weighted: Scale the weight by the map value.
    """

    opacity: float = 0.4
    weighted: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.opacity, (int, float)) and 0.0 <= self.opacity <= 1.0):
            raise ConfigError(f"opacity: expected a number in [0, 1], got {self.opacity!r}")

    def annotate(
        self, scene: np.ndarray, result: PipelineResult | Sequence[Lesion], *, copy: bool = True
    ) -> np.ndarray:
        """Return ``scene`` with the heatmaps blended in (a copy unless ``copy=False``)."""
        _check_scene(scene)
        out = scene.copy() if copy else scene
        height, width = out.shape[:2]
        for lesion in _lesions(result):
            if lesion.cam is None:
                continue
            x0, y0, x1, y1 = (int(v) for v in lesion.crop_box)
            x0, x1 = max(0, x0), min(width, x1)
            y0, y1 = max(0, y0), min(height, y1)
            if x1 <= x0 or y1 <= y0:
                continue
            cam = upsample_cam(lesion.cam, (y1 - y0, x1 - x0))
            heat = cam_to_heatmap(cam)
            region = out[y0:y1, x0:x1]
            if self.weighted:
                # Per-pixel weights: the CAM decides how much heat shows (OpenCV's blend, ~6x numpy's speed).
                alpha = (self.opacity * cam).astype(np.float32)
                region[...] = cv2.blendLinear(region, heat, 1.0 - alpha, alpha)
            else:
                region[...] = cv2.addWeighted(heat, self.opacity, region, 1.0 - self.opacity, 0.0)
        return out


@dataclass(frozen=True)
class BannerAnnotator:
    """A strip across the bottom of the frame with a notice (default: "not a diagnosis"), and the
    result's messages (e.g. "no lesion found") across the top.

    Attributes:
        text: The notice.
        show_messages: Also write ``PipelineResult.messages`` at the top.
        text_scale: Hershey font scale (None: from the frame size; long notices are shrunk to fit).
    """

    text: str = NOT_A_DIAGNOSIS
    show_messages: bool = True
    text_scale: float | None = None
    background: Color = (30, 30, 30)

    def annotate(self, scene: np.ndarray, result: PipelineResult | None = None, *, copy: bool = True) -> np.ndarray:
        """Return ``scene`` with the notice (and messages) drawn (a copy unless ``copy=False``)."""
        _check_scene(scene)
        out = scene.copy() if copy else scene
        height, width = out.shape[:2]
        scale = self.text_scale or _auto_scale(out)
        thickness = max(1, round(scale * 1.4))
        if self.text:
            text_w = cv2.getTextSize(self.text, FONT, scale, thickness)[0][0]
            room = 0.95 * width - 2 * max(2, round(4 * scale))  # getTextSize runs a little short
            if text_w > room:  # shrink to fit the frame's width
                scale *= room / text_w
                thickness = max(1, round(scale * 1.4))
            (_, text_h), baseline = cv2.getTextSize(self.text, FONT, scale, thickness)
            _draw_text_box(out, self.text, (0, height - text_h - baseline - 8), self.background, scale, thickness)
        if self.show_messages and result is not None:
            scale = self.text_scale or _auto_scale(out)
            thickness = max(1, round(scale * 1.6))
            y = 0
            for message in result.messages:
                _draw_text_box(out, message, (0, y), self.background, scale, thickness)
                (_, text_h), baseline = cv2.getTextSize(message, FONT, scale, thickness)
                y += text_h + baseline + 2 * max(2, round(4 * scale)) + 2
        return out


def annotate(
    frame: np.ndarray,
    result: PipelineResult,
    *,
    heatmap: bool = True,
    opacity: float = 0.4,
    labels: bool = True,
    banner: bool = True,
) -> np.ndarray:
    """Everything at once, on one copy of ``frame``: heatmaps, boxes, labels, notice and messages.

    Args:
        frame: RGB uint8 (H, W, 3), the frame the result was computed on (not modified).
        result: The pipeline's result for that frame.
        heatmap: Blend the class activation maps into the crop regions.
        opacity: Largest heatmap weight in [0, 1] (see :class:`HeatmapAnnotator`).
        labels: Write each lesion's label.
        banner: Write the not-a-diagnosis notice and the result's messages.

    Returns:
        A new annotated RGB uint8 frame.
    """
    _check_scene(frame)
    if (frame.shape[1], frame.shape[0]) != tuple(result.image_size):
        raise ImageError(
            f"annotate: the result is for a {result.image_size[0]}x{result.image_size[1]} frame, "
            f"got a {frame.shape[1]}x{frame.shape[0]} frame"
        )
    out = frame.copy()
    if heatmap:
        HeatmapAnnotator(opacity).annotate(out, result, copy=False)
    BoxAnnotator().annotate(out, result, copy=False)
    if labels:
        LabelAnnotator().annotate(out, result, copy=False)
    if banner:
        BannerAnnotator().annotate(out, result, copy=False)
    return out
