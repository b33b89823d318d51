"""Annotators: draw boxes, labels, class activation maps and notices on a copy of a frame.

Drawing is apart from inference (the supervision idea): an annotator takes a frame and a result and
returns a new frame; the input is never modified. Frames are RGB uint8 (H, W, 3); colours are RGB.
Text uses OpenCV's built-in Hershey fonts (ASCII only, nothing to download)::

    result = pipeline(frame)
    shown = annotate(frame, result)                  # boxes, labels, heatmaps, notice
    shown = BoxAnnotator().annotate(frame, result)   # or compose the parts you want
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from edgeskin.errors import ConfigError, ImageError
from edgeskin.labels import DX_NAMES
from edgeskin.results import Detections, Lesion, PipelineResult

__all__ = [
    "NOT_A_DIAGNOSIS",
    "BannerAnnotator",
    "BoxAnnotator",
    "HeatmapAnnotator",
    "LabelAnnotator",
    "MessageAnnotator",
    "annotate",
    "lesion_crop_heatmap",
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


@functools.lru_cache(maxsize=256)
def _text_patch(text: str, color: Color, scale: float, thickness: int) -> np.ndarray:
    """Text on a filled background, rendered once per (text, colour, size) and kept (read-only)."""
    (text_w, text_h), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    pad = max(2, round(4 * scale))
    box_w, box_h = text_w + 2 * pad, text_h + baseline + 2 * pad
    patch = np.empty((box_h + 1, box_w + 1, 3), np.uint8)
    patch[...] = color
    cv2.putText(patch, text, (pad, pad + text_h), FONT, scale, TEXT_COLOR, thickness, cv2.LINE_AA)
    patch.setflags(write=False)
    return patch


def _draw_text_box(
    scene: np.ndarray, text: str, origin: tuple[int, int], color: Color, scale: float, thickness: int
) -> None:
    """Text on a filled background; ``origin`` is the top-left corner, moved inside the frame.

    The patch is rendered once per label and pasted (a copy of a few kilobytes) on later frames.
    """
    patch = _text_patch(text, tuple(int(c) for c in color), float(scale), int(thickness))
    height, width = scene.shape[:2]
    box_h, box_w = patch.shape[0] - 1, patch.shape[1] - 1
    x = int(np.clip(origin[0], 0, max(0, width - box_w)))
    y = int(np.clip(origin[1], 0, max(0, height - box_h)))
    rows, cols = min(patch.shape[0], height - y), min(patch.shape[1], width - x)
    scene[y : y + rows, x : x + cols] = patch[:rows, :cols]


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


# JET as an RGB lookup table for cv2.applyColorMap (which applies a user table as it is: no BGR swap needed).
_JET_RGB = np.ascontiguousarray(
    cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), cv2.COLORMAP_JET)[:, :, ::-1]
)


@functools.lru_cache(maxsize=32)
def _blend_tables(opacity: float, floor: float, weighted: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per map level 0..255: the heatmap colour already multiplied by its weight ``a`` (a (256, 1, 3) uint8
    table for cv2.applyColorMap) and the frame's weight ``1 - a`` in 1/255 steps (a (256,) uint8 table)."""
    level = np.arange(256, dtype=np.float64) / 255.0
    if weighted:
        alpha = opacity * np.clip((level - floor) / max(1e-6, 1.0 - floor), 0.0, 1.0)
    else:
        alpha = np.full(256, opacity)
    colour = np.rint(_JET_RGB.astype(np.float64) * alpha[:, None, None]).astype(np.uint8)
    keep = np.rint((1.0 - alpha) * 255.0).astype(np.uint8)
    colour.setflags(write=False)
    keep.setflags(write=False)
    return colour, keep


# Work images of the heatmap blend, kept per thread between frames: fresh box-sized arrays on every frame cost
# more in page faults than the blend itself. Larger ones (a lesion filling a 4K frame) are not kept.
_WORK = threading.local()
_WORK_MAX_BYTES = 8 << 20


def _work(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """This thread's uint8 work array ``name`` of ``shape`` (reused; its contents are undefined)."""
    size = int(np.prod(shape))
    buffer = _WORK.__dict__.get(name)
    if buffer is None or buffer.size < size:
        buffer = np.empty(size, np.uint8)
        if size <= _WORK_MAX_BYTES:
            _WORK.__dict__[name] = buffer
    return buffer[:size].reshape(shape)


def _map_on_box(cam: np.ndarray, crop_box: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The map (over ``crop_box``) at the pixels of ``box`` = (x0, y0, x1, y1), x1/y1 exclusive, as uint8
    levels 0..255: the small grid resized bilinearly to the crop in 8 bits (OpenCV's fast path), then the
    box's window of it (a view of a per-thread work array, valid until the next call)."""
    grid = np.clip(np.nan_to_num(np.asarray(cam, np.float32), nan=0.0), 0.0, 1.0)  # the small grid: cheap
    levels = cv2.convertScaleAbs(grid, alpha=255.0)
    cx0, cy0, cx1, cy1 = (int(v) for v in crop_box)
    x0, y0, x1, y1 = box
    full = _work("map", (max(1, cy1 - cy0), max(1, cx1 - cx0)))
    cv2.resize(levels, full.shape[::-1], dst=full, interpolation=cv2.INTER_LINEAR)
    return full[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]


@dataclass(frozen=True)
class HeatmapAnnotator:
    """Blend each lesion's class activation map (JET colours) over its box.

    The map (``Lesion.cam``, computed over ``Lesion.crop_box``) is sampled at the lesion box's own pixels and
    mixed with the frame there: ``out = (1 - a) * frame + a * heatmap``. With ``weighted=True`` (the default,
    as usual for Grad-CAM overlays) the weight follows the map: ``a = opacity * (m - floor) / (1 - floor)``,
    0 where the map ``m`` is below ``floor``, so weak areas stay transparent and the lesion stays visible;
    with ``weighted=False``, ``a = opacity`` everywhere in the box. Lesions without a map are left as they are.

    Cost: one 8-bit resize of the small map, then, on the box alone, two table lookups (the weighted colour
    and the frame's weight, both functions of the map level) and the blend as one multiply and one add in
    8 bits, in place (within one level of a float blend). The work images are kept between frames (per
    thread): new box-sized arrays on every frame cost as much again in page faults.

    Attributes:
        opacity: Largest weight of the heatmap, in [0, 1].
        weighted: Scale the weight by the map value.
        floor: Map level in [0, 1) below which the heatmap is fully transparent (``weighted`` only).
    """

    opacity: float = 0.5
    weighted: bool = True
    floor: float = 0.25

    def __post_init__(self) -> None:
        if not (isinstance(self.opacity, (int, float)) and 0.0 <= self.opacity <= 1.0):
            raise ConfigError(f"opacity: expected a number in [0, 1], got {self.opacity!r}")
        if not (isinstance(self.floor, (int, float)) and 0.0 <= self.floor < 1.0):
            raise ConfigError(f"floor: expected a number in [0, 1), got {self.floor!r}")

    def annotate(
        self, scene: np.ndarray, result: PipelineResult | Sequence[Lesion], *, copy: bool = True
    ) -> np.ndarray:
        """Return ``scene`` with the heatmaps blended in (a copy unless ``copy=False``)."""
        _check_scene(scene)
        out = scene.copy() if copy else scene
        if self.opacity == 0.0:
            return out
        colour, keep = _blend_tables(float(self.opacity), float(self.floor), bool(self.weighted))
        for lesion in _lesions(result):
            if lesion.cam is None or np.ndim(lesion.cam) != 2 or 0 in np.shape(lesion.cam):
                continue
            x0, y0, x1, y1 = _int_box(lesion.box, out)
            cx0, cy0, cx1, cy1 = (int(v) for v in lesion.crop_box)
            # The box (x1/y1 exclusive) where the map is defined: inside the crop, which holds the box.
            x0, y0, x1, y1 = max(x0, cx0), max(y0, cy0), min(x1 + 1, cx1), min(y1 + 1, cy1)
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            levels = _map_on_box(lesion.cam, lesion.crop_box, (x0, y0, x1, y1))
            region = out[y0:y1, x0:x1]  # blended in place, in 8 bits: frame * (1 - a) + a * colour
            size = (y1 - y0, x1 - x0)
            kept = cv2.LUT(levels, keep, dst=_work("kept", size))
            weight = cv2.cvtColor(kept, cv2.COLOR_GRAY2RGB, dst=_work("weight", (*size, 3)))
            cv2.multiply(region, weight, dst=region, scale=1.0 / 255.0)
            cv2.add(region, cv2.applyColorMap(levels, colour, dst=_work("colour", (*size, 3))), dst=region)
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
            _draw_messages(out, result.messages, self.text_scale, self.background)
        return out


def _draw_messages(out: np.ndarray, messages: Sequence[str], text_scale: float | None, background: Color) -> None:
    """One text box per message, stacked from the top-left corner."""
    scale = text_scale or _auto_scale(out)
    thickness = max(1, round(scale * 1.6))
    y = 0
    for message in messages:
        _draw_text_box(out, message, (0, y), background, scale, thickness)
        (_, text_h), baseline = cv2.getTextSize(message, FONT, scale, thickness)
        y += text_h + baseline + 2 * max(2, round(4 * scale)) + 2


@dataclass(frozen=True)
class MessageAnnotator:
    """Guidance lines (e.g. the live loop's "hold still") across the top, as :class:`BannerAnnotator` writes a
    result's messages.

    Attributes:
        messages: The lines, top first.
    """

    messages: Sequence[str] = ()
    text_scale: float | None = None
    background: Color = (30, 30, 30)

    def annotate(self, scene: np.ndarray, result: PipelineResult | None = None, *, copy: bool = True) -> np.ndarray:
        """Return ``scene`` with the messages written (a copy unless ``copy=False``); ``result`` is not used."""
        _check_scene(scene)
        out = scene.copy() if copy else scene
        _draw_messages(out, self.messages, self.text_scale, self.background)
        return out


def lesion_crop_heatmap(frame: np.ndarray, lesion: Lesion, opacity: float = 0.5) -> np.ndarray | None:
    """The lesion's crop (``Lesion.crop_box``, inside the frame) with its class activation map over all of it.

    :class:`HeatmapAnnotator` with a uniform weight (``weighted=False``): ``opacity`` 0 gives the crop, 1 the
    map. None when the lesion has no map. ``frame`` is not modified.
    """
    if lesion.cam is None:
        return None
    _check_scene(frame)
    height, width = frame.shape[:2]
    cx0, cy0, cx1, cy1 = (int(v) for v in lesion.crop_box)
    x0, y0 = min(max(cx0, 0), width - 1), min(max(cy0, 0), height - 1)
    x1, y1 = max(min(cx1, width), x0 + 1), max(min(cy1, height), y0 + 1)
    crop = np.ascontiguousarray(frame[y0:y1, x0:x1])
    in_crop = replace(  # the lesion seen from the crop: its box is the whole crop, its map where it was
        lesion,
        box=np.array([0, 0, x1 - x0, y1 - y0], np.float32),
        crop_box=np.array([cx0 - x0, cy0 - y0, cx1 - x0, cy1 - y0], np.int64),
    )
    return HeatmapAnnotator(opacity, weighted=False).annotate(crop, [in_crop], copy=False)


def annotate(
    frame: np.ndarray,
    result: PipelineResult,
    *,
    heatmap: bool = True,
    opacity: float = 0.5,
    labels: bool = True,
    banner: bool = True,
) -> np.ndarray:
    """Everything at once, on one copy of ``frame``: heatmaps, boxes, labels, notice and messages.

    Args:
        frame: RGB uint8 (H, W, 3), the frame the result was computed on (not modified).
        result: The pipeline's result for that frame.
        heatmap: Blend the class activation maps over the lesion boxes (weak areas transparent).
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
