"""Lesion detection: a YOLO-family INT8 TFLite detector, and a classical fallback with the same interface.

Both return :class:`~edgeskin.results.Detections` in original-frame pixels from ``detect(frame_rgb)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from edgeskin.core.boxes import nms
from edgeskin.core.dfl import dfl_to_predictions
from edgeskin.core.geometry import ImageTransform, resize_into, resize_to_input
from edgeskin.errors import ConfigError, ImageTooSmallError, ModelError, SpecError, check_fraction
from edgeskin.image import require_rgb_uint8
from edgeskin.results import Detections
from edgeskin.runtime.interpreter import InputEncoder, TFLiteModel
from edgeskin.runtime.spec import ModelSpec
from edgeskin.tasks.base import BaseOptions, ModelTask

__all__ = [
    "ClassicalDetector",
    "Detector",
    "DetectorOptions",
    "decode_yolo",
    "DEFAULT_CONFIDENCE",
    "DEFAULT_IOU",
]

logger = logging.getLogger(__name__)

CLASSICAL_MIN_SIZE = 8  # edgeskin.core.localize needs at least 8x8 pixels
DEFAULT_CONFIDENCE = 0.25  # used when neither the options nor the spec's "thresholds" give one
DEFAULT_IOU = 0.45
DEFAULT_MAX_DET = 100
# Greedy NMS is quadratic in the candidates it visits; an untrained or badly thresholded model can
# put thousands above the threshold. Like ultralytics' max_nms, keep only the best ones.
MAX_NMS_CANDIDATES = 3000


@dataclass(frozen=True)
class DetectorOptions(BaseOptions):
    """Options of a :class:`Detector`: the :class:`~edgeskin.tasks.base.BaseOptions` (model path, spec,
    threads, delegate) and the detector's own.

    Attributes:
        confidence_threshold: Keep boxes scoring at least this (None: the spec's
            ``thresholds.confidence``, else 0.25).
        iou_threshold: NMS overlap above which the lower-scored box of the same class is dropped
            (None: the spec's ``thresholds.iou``, else 0.45).
        max_det: Keep at most this many boxes per frame.
        class_agnostic: NMS across classes (default: class-aware, a box only suppresses its own class).
    """

    confidence_threshold: float | None = None
    iou_threshold: float | None = None
    max_det: int = DEFAULT_MAX_DET
    class_agnostic: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fraction(self.confidence_threshold, "confidence_threshold")
        check_fraction(self.iou_threshold, "iou_threshold")
        if not isinstance(self.max_det, int) or self.max_det < 1:
            raise ConfigError(f"max_det: expected a positive integer, got {self.max_det!r}")


def decode_yolo(
    raw: np.ndarray,
    input_size: tuple[int, int],
    transform: ImageTransform,
    *,
    num_classes: int | None = None,
    boxes: Literal["xywh_normalized", "xywh_pixels"] = "xywh_normalized",
    confidence_threshold: float = DEFAULT_CONFIDENCE,
    iou_threshold: float = DEFAULT_IOU,
    max_det: int = DEFAULT_MAX_DET,
    class_agnostic: bool = False,
) -> Detections:
    """Decode a YOLO (v5u/v8-style, anchor-free, decoded in the graph) prediction tensor.

    Args:
        raw: Dequantized ``[1, 4 + nc, N]`` (or ``[1, N, 4 + nc]``; the axis of size ``4 + nc`` is found)
            predictions: rows ``cx, cy, w, h`` then one score per class.
        input_size: ``(height, width)`` of the model input.
        transform: The frame → input transform of this frame (letterbox or stretch).
        num_classes: nc, to find the channel axis; None: the smaller of the two axes.
        boxes: ``"xywh_normalized"`` (fractions of the input size) or ``"xywh_pixels"`` (input pixels).
        confidence_threshold: Keep boxes whose best class score is at least this.
        iou_threshold: NMS threshold.
        max_det: Most boxes kept.
        class_agnostic: NMS across classes instead of per class.

    Returns:
        Detections in frame pixels (clipped to the frame; boxes with no area left are dropped), highest
        score first.
    """
    pred = np.asarray(raw, dtype=np.float32)
    if pred.ndim == 3 and pred.shape[0] == 1:
        pred = pred[0]
    if pred.ndim != 2:
        raise ValueError(f"predictions: expected shape [1, 4 + nc, N] or [1, N, 4 + nc], got {np.shape(raw)}")
    rows, cols = pred.shape
    if num_classes is not None:
        channels = 4 + num_classes
        if rows == channels:
            pass  # [4 + nc, N], the ultralytics TFLite layout (also when N happens to equal 4 + nc)
        elif cols == channels:
            pred = pred.T
        else:
            raise ValueError(
                f"predictions: expected an axis of size 4 + {num_classes} = {channels}, got shape {np.shape(raw)}"
            )
    elif rows > cols:
        pred = pred.T
    if pred.shape[0] < 5:
        raise ValueError(f"predictions: expected at least 5 rows (4 box values + scores), got shape {np.shape(raw)}")
    if boxes not in ("xywh_normalized", "xywh_pixels"):
        raise ConfigError(f"boxes: expected 'xywh_normalized' or 'xywh_pixels', got {boxes!r}")

    class_scores = pred[4:]
    if class_scores.shape[0] == 1:
        scores = class_scores[0]
        candidates = np.flatnonzero(scores >= confidence_threshold)
        class_id = np.zeros(candidates.size, np.int32)
    else:
        best = class_scores.argmax(axis=0)
        scores = class_scores[best, np.arange(class_scores.shape[1])]
        candidates = np.flatnonzero(scores >= confidence_threshold)
        class_id = best[candidates].astype(np.int32)
    if candidates.size == 0:
        return Detections.empty()
    score = scores[candidates]
    if candidates.size > MAX_NMS_CANDIDATES:
        top = np.argpartition(-score, MAX_NMS_CANDIDATES)[:MAX_NMS_CANDIDATES]
        candidates, score, class_id = candidates[top], score[top], class_id[top]

    xywh = pred[:4, candidates].T  # (k, 4)
    if boxes == "xywh_normalized":
        height, width = input_size
        xywh = xywh * np.array([width, height, width, height], dtype=np.float32)
    half = xywh[:, 2:] / 2
    xyxy = np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1)
    # One class: class-aware NMS is class-agnostic NMS.
    per_class = not class_agnostic and class_scores.shape[0] > 1
    keep = nms(xyxy, score, iou_threshold, max_det=max_det, class_ids=class_id if per_class else None)
    frame_boxes = transform.to_frame(xyxy[keep])
    has_area = (frame_boxes[:, 2] > frame_boxes[:, 0]) & (frame_boxes[:, 3] > frame_boxes[:, 1])
    return Detections(frame_boxes[has_area], score[keep][has_area], class_id[keep][has_area])


class Detector(ModelTask):
    """Find lesions in an RGB frame with a YOLO-family TFLite model.

    Tensor contract:
        * Input: one ``[1, H, W, 3]`` tensor, int8/uint8 (quantized) or float32. The frame is resized as
          the spec says (``input.resize``, ``"letterbox"`` with pad value 114 for YOLO), the spec's
          preprocessing profile is applied to the input-sized image, then ``(pixel - mean) / std`` and the
          input tensor's own scale and zero point. edgeskin's detector folds ``/255`` into the graph
          (mean 0, std 1, so int8 input = pixel - 128).
        * Output ``spec.outputs["predictions"]``: ``[1, 4 + nc, N]`` (``layout: "yolo"``; ``[1, N, 4 + nc]``
          is accepted too): ``cx, cy, w, h`` in input coordinates, normalised to [0, 1]
          (``boxes: "xywh_normalized"``) or in input pixels (``"xywh_pixels"``), then nc class scores
          in [0, 1] (sigmoid, no objectness). Decoding, thresholding and NMS run here in numpy.

    Use :meth:`create` (or :meth:`from_model`) and close it, or use it as a context manager::

        with Detector.from_model("edgeskin-yolov5n-det.tflite") as detector:
            detections = detector.detect(frame_rgb)
            print(detections.xyxy, detections.confidence, detector.last_timings_ms)

    One instance is not thread-safe (it owns one interpreter); make one per thread.
    """

    def __init__(
        self,
        model: TFLiteModel,
        spec: ModelSpec,
        *,
        confidence_threshold: float | None = None,
        iou_threshold: float | None = None,
        max_det: int = DEFAULT_MAX_DET,
        class_agnostic: bool = False,
    ) -> None:
        if spec.task != "detection":
            raise ConfigError(f"Detector needs a detection spec; '{spec.name}' is a {spec.task} spec")
        check_fraction(confidence_threshold, "confidence_threshold")
        check_fraction(iou_threshold, "iou_threshold")
        if not isinstance(max_det, int) or max_det < 1:
            raise ConfigError(f"max_det: expected a positive integer, got {max_det!r}")
        self.model = model
        self.spec = spec
        self.labels: tuple[str, ...] = spec.labels
        thresholds = spec.thresholds
        self.confidence_threshold = float(
            confidence_threshold
            if confidence_threshold is not None
            else thresholds.get("confidence", DEFAULT_CONFIDENCE)
        )
        self.iou_threshold = float(iou_threshold if iou_threshold is not None else thresholds.get("iou", DEFAULT_IOU))
        check_fraction(self.confidence_threshold, "thresholds.confidence")
        check_fraction(self.iou_threshold, "thresholds.iou")
        self.max_det = max_det
        self.class_agnostic = class_agnostic
        self._predictions_output = spec.outputs["predictions"]
        # layout "yolo_dfl" (Edge TPU export): raw DFL box logits + scores, decoded here by edgeskin.core.dfl
        self._scores_output = spec.outputs["scores"] if spec.layout == "yolo_dfl" else None
        self._profile = spec.preprocessing_profile()
        if self._profile is not None and not self._profile.steps:
            self._profile = None
        self._encoder = InputEncoder(model.input, spec.input.mean, spec.input.std, spec.input.color_order)
        # An 8-bit input without a preprocessing profile is resized straight into the input tensor's memory and
        # encoded there in place (the encoding reads each byte once, so reading and writing it is safe).
        self._resize_in_place = model.input.dtype.itemsize == 1 and self._profile is None
        self._output_names = (self._predictions_output,) + (
            (self._scores_output,) if self._scores_output is not None else ()
        )
        self._score_floor: tuple[float, int | None] | None = None  # (threshold, its stored-score floor)
        self.last_timings_ms: dict[str, float] = {}

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def _open_model(cls, options: DetectorOptions) -> tuple[TFLiteModel, ModelSpec]:
        """The detection model with its spec; :meth:`create` builds the detector on it."""
        return options.load_model("detection")

    @classmethod
    def from_model(
        cls,
        model_path: str | Path,
        spec: ModelSpec | str | Path | None = None,
        *,
        confidence_threshold: float | None = None,
        iou_threshold: float | None = None,
        max_det: int = DEFAULT_MAX_DET,
        threads: int | None = None,
        delegate: str = "cpu",
    ) -> Detector:
        """Shortcut for ``create(DetectorOptions(...))``."""
        return cls.create(
            DetectorOptions(
                model_path,
                spec,
                confidence_threshold=confidence_threshold,
                iou_threshold=iou_threshold,
                max_det=max_det,
                num_threads=threads,
                delegate=delegate,
            )
        )

    # -- stages ------------------------------------------------------------------------------------
    def preprocess(self, image_rgb: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        """Frame → (the input tensor's values ``[1, H, W, 3]``, the frame → input transform)."""
        require_rgb_uint8(image_rgb)
        resized, transform = self._resized(image_rgb)
        return self._encoder.encode(resized), transform

    def _resized(self, image_rgb: np.ndarray) -> tuple[np.ndarray, ImageTransform]:
        """The frame at the input size with the spec's profile applied, and the frame → input transform."""
        resized, transform = resize_to_input(image_rgb, self.spec.input.size, self.spec.input.resize)
        if self._profile is not None:
            resized = self._profile.apply(resized)
        return resized, transform

    def decode(self, raw: np.ndarray, transform: ImageTransform) -> Detections:
        """Dequantized predictions → :class:`Detections` in frame pixels (see :func:`decode_yolo`)."""
        return decode_yolo(
            raw,
            self.spec.input.size,
            transform,
            num_classes=len(self.labels) or None,
            boxes=self.spec.boxes,  # type: ignore[arg-type]
            confidence_threshold=self.confidence_threshold,
            iou_threshold=self.iou_threshold,
            max_det=self.max_det,
            class_agnostic=self.class_agnostic,
        )

    def _fill(self, image_rgb: np.ndarray, slot: np.ndarray) -> ImageTransform:
        """Write the input tensor's values of a frame into ``slot`` ``(H, W, 3)``; what :meth:`preprocess` gives."""
        if self._resize_in_place:
            pixels = slot.view(np.uint8)
            transform = resize_into(image_rgb, pixels, self.spec.input.resize)  # type: ignore[arg-type]
            self._encoder.encode(pixels, out=slot)
            return transform
        resized, transform = self._resized(image_rgb)
        self._encoder.encode(resized, out=slot)
        return transform

    def _quantized_score_floor(self) -> int | None:
        """The smallest stored score that dequantizes to at least the confidence threshold (None: no shortcut).

        For a one-class model whose scores are quantized per tensor (row 4 of a ``yolo`` output, or the
        ``scores`` output of a ``yolo_dfl`` model) the threshold is then checked on the stored integers, and only
        the candidates' columns are dequantized (and, for ``yolo_dfl``, decoded): the same values, the same boxes.
        """
        try:
            info = self.model.output(self._scores_output or self._predictions_output)
        except ModelError:
            return None
        if len(self.labels) != 1 or not info.is_quantized or len(info.scales) != 1 or info.dtype.itemsize > 2:
            return None
        levels = np.arange(np.iinfo(info.dtype).min, np.iinfo(info.dtype).max + 1).astype(info.dtype)
        passing = np.flatnonzero(info.dequantize(levels) >= self.confidence_threshold)
        # Dequantizing is monotone (a positive scale), so the levels that pass are the top ones.
        return int(levels[passing[0]]) if passing.size else int(levels[-1]) + 1

    def _candidate_predictions(self, stored: np.ndarray, stored_scores: np.ndarray | None) -> np.ndarray | None:
        """The dequantized ``[1, 5, k]`` columns of the boxes whose stored score passes, or None (no shortcut)."""
        if self._score_floor is None or self._score_floor[0] != self.confidence_threshold:  # (re)set after creation
            self._score_floor = (self.confidence_threshold, self._quantized_score_floor())
        floor = self._score_floor[1]
        if floor is None or stored.ndim != 3:
            return None
        predictions = self.model.output(self._predictions_output)
        if stored_scores is None:  # "yolo": the score is row 4 of the predictions
            if stored.shape[:2] != (1, 5):
                return None
            return predictions.dequantize(stored[:, :, np.flatnonzero(stored[0, 4] >= floor)])
        # "yolo_dfl": [1, 64, N] logits and [1, 1, N] scores, channels first as edgeskin's export writes them
        if stored_scores.ndim != 3 or stored_scores.shape[:2] != (1, 1) or stored.shape[2] != stored_scores.shape[2]:
            return None
        columns = np.flatnonzero(stored_scores[0, 0] >= floor)
        scores = self.model.output(self._scores_output).dequantize(stored_scores[:, :, columns])
        logits = predictions.dequantize(stored[:, :, columns])
        return dfl_to_predictions(logits, scores, self.spec.input.size, columns=columns)

    def _run(self, image_rgb: np.ndarray) -> tuple[dict[str, np.ndarray], ImageTransform, float, bool]:
        """One invoke on a frame: the outputs (as stored, or dequantized for a model object that only offers
        ``run``), the frame's transform, when the input was ready, and whether the outputs are as stored."""
        run_filled = getattr(self.model, "run_filled", None)
        if run_filled is None:
            x, transform = self.preprocess(image_rgb)
            ready = time.perf_counter()
            return self.model.run(x), transform, ready, False
        # load_model checked the spec's outputs against the model; run_filled looks them up again (ModelError).
        filled: list = []

        def fill(buffer: np.ndarray) -> None:
            filled.append(self._fill(image_rgb, buffer[0]))
            filled.append(time.perf_counter())

        outputs = run_filled(fill, self._output_names)
        transform, ready = filled
        return outputs, transform, ready, True

    def postprocess(
        self, outputs: dict[str, np.ndarray], transform: ImageTransform, *, stored: bool = True
    ) -> Detections:
        """One invoke's outputs → :class:`Detections` in frame pixels: what :meth:`detect` does after the invoke.

        Args:
            outputs: The model's outputs by name, as stored (``stored=True``: int8/uint8 for a quantized model) or
                already dequantized.
            transform: The frame → input transform of the frame.

        Raises:
            SpecError: the spec's outputs are not among ``outputs``.
        """
        try:
            predictions = outputs[self._predictions_output]
            scores = outputs[self._scores_output] if self._scores_output is not None else None
        except KeyError:
            raise SpecError(
                f"the spec's predictions/scores outputs {self._predictions_output!r}/{self._scores_output!r} are not "
                f"among the model's outputs {sorted(outputs)}"
            ) from None
        raw = self._candidate_predictions(predictions, scores) if stored else None
        if raw is None:
            raw = self.model.output(self._predictions_output).dequantize(predictions) if stored else predictions
            if scores is not None:
                scores = self.model.output(self._scores_output).dequantize(scores) if stored else scores
                raw = dfl_to_predictions(raw, scores, self.spec.input.size)
        return self.decode(raw, transform)

    def detect(self, image_rgb: np.ndarray) -> Detections:
        """Boxes, scores and classes of the lesions in an RGB uint8 (H, W, 3) frame.

        Timings (``preprocess_ms``, ``invoke_ms``, ``postprocess_ms``) go to :attr:`last_timings_ms`.

        Raises:
            ImageError: the frame is not an RGB uint8 (H, W, 3) array.
        """
        start = time.perf_counter()
        require_rgb_uint8(image_rgb)
        outputs, transform, ready, stored = self._run(image_rgb)
        invoke_ms = self.model.invoke_ms
        detections = self.postprocess(outputs, transform, stored=stored)
        end = time.perf_counter()
        self.last_timings_ms = {
            "preprocess_ms": (ready - start) * 1000.0,
            "invoke_ms": invoke_ms,
            "postprocess_ms": max(0.0, (end - ready) * 1000.0 - invoke_ms),
        }
        return detections

    __call__ = detect

    def __repr__(self) -> str:
        return (
            f"Detector({self.spec.name!r}, {len(self.labels)} classes, input {list(self.input_size)}, "
            f"confidence>={self.confidence_threshold}, iou {self.iou_threshold}, delegate={self.model.delegate})"
        )


class ClassicalDetector:
    """The model-free lesion localiser of :mod:`edgeskin.core.localize` behind the :class:`Detector` interface.

    It finds at most one lesion: the dark component chosen by :func:`~edgeskin.core.localize.lesion_box`
    (``method="segment"``, the careful segmentation: colour constancy, vignette removal, Otsu, central
    component) or :func:`~edgeskin.core.localize.classical_box` (``method="otsu"``, the plain baseline the
    learned detector is compared against).

    Its ``confidence`` is **not a probability**: it is the *darkness contrast* of the box,
    ``clip((L_around - L_inside) / L_around, 0, 1)``, where ``L`` is the mean CIE L* lightness of the box
    and ``L_around`` that of a ring around it (a band of a quarter of the box size, inside the frame).
    0 means the box is no darker than its surroundings (or covers the whole frame, leaving no ring);
    pigmented lesions on PH2 dermoscopy give about 0.15-0.4. Boxes below ``min_contrast`` (default 0.05)
    are dropped, so a frame without a dark blob yields no detection; the same gate also drops a lesion
    that fills the whole frame (``edgeskin evaluate detect --model classical`` therefore runs it with
    ``min_contrast=0``, as the plain localiser).
    """

    name = "classical"

    def __init__(self, method: Literal["segment", "otsu"] = "segment", *, min_contrast: float = 0.05) -> None:
        if method not in ("segment", "otsu"):
            raise ConfigError(f"method: expected 'segment' or 'otsu', got {method!r}")
        check_fraction(min_contrast, "min_contrast")
        from edgeskin.core import localize

        self.method = method
        self.min_contrast = float(min_contrast)
        self._localize = localize.lesion_box if method == "segment" else localize.classical_box
        self.labels: tuple[str, ...] = ("lesion",)
        self.last_timings_ms: dict[str, float] = {}

    def __enter__(self) -> ClassicalDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release (kept for the :class:`Detector` interface)."""

    def detect(self, image_rgb: np.ndarray) -> Detections:
        """At most one lesion box with its darkness-contrast score; timings in :attr:`last_timings_ms`."""
        require_rgb_uint8(image_rgb)
        if min(image_rgb.shape[:2]) < CLASSICAL_MIN_SIZE:
            raise ImageTooSmallError(
                f"expected a frame of at least {CLASSICAL_MIN_SIZE}x{CLASSICAL_MIN_SIZE} pixels for the classical "
                f"localiser, got {image_rgb.shape[1]}x{image_rgb.shape[0]}"
            )
        start = time.perf_counter()
        box = self._localize(image_rgb)
        located = time.perf_counter()
        detections = Detections.empty()
        if box is not None and box[2] > box[0] and box[3] > box[1]:
            contrast = darkness_contrast(image_rgb, box)
            if contrast >= self.min_contrast:
                detections = Detections(box[np.newaxis], [contrast], [0])
        end = time.perf_counter()
        self.last_timings_ms = {
            "preprocess_ms": 0.0,
            "invoke_ms": (located - start) * 1000.0,
            "postprocess_ms": (end - located) * 1000.0,
        }
        return detections

    __call__ = detect

    def __repr__(self) -> str:
        return f"ClassicalDetector(method={self.method!r}, min_contrast={self.min_contrast})"


def darkness_contrast(image_rgb: np.ndarray, box: Sequence[float] | np.ndarray, work_side: int = 256) -> float:
    """How much darker a box is than a ring around it: ``clip((L_ring - L_box) / L_ring, 0, 1)``.

    Computed on a copy downscaled to ``work_side`` pixels on the long side (L* from CIE Lab). The ring
    extends a quarter of the box's width and height beyond it, clipped to the frame; when the box
    covers the whole frame the ring is empty and the contrast is 0.
    """
    height, width = image_rgb.shape[:2]
    scale = min(1.0, work_side / max(height, width))
    small = image_rgb
    if scale < 1.0:
        small = cv2.resize(
            image_rgb, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
    lightness = cv2.cvtColor(small, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)
    h, w = lightness.shape
    x0, y0, x1, y1 = (float(v) * scale for v in box)
    bx0, by0 = int(np.clip(np.floor(x0), 0, w - 1)), int(np.clip(np.floor(y0), 0, h - 1))
    bx1, by1 = int(np.clip(np.ceil(x1), bx0 + 1, w)), int(np.clip(np.ceil(y1), by0 + 1, h))
    pad_x, pad_y = max(1, round((bx1 - bx0) / 4)), max(1, round((by1 - by0) / 4))
    rx0, ry0 = max(0, bx0 - pad_x), max(0, by0 - pad_y)
    rx1, ry1 = min(w, bx1 + pad_x), min(h, by1 + pad_y)
    inside = lightness[by0:by1, bx0:bx1]
    outer = lightness[ry0:ry1, rx0:rx1]
    ring_count = outer.size - inside.size
    if ring_count <= 0 or inside.size == 0:
        return 0.0
    ring_mean = (float(outer.sum()) - float(inside.sum())) / ring_count
    if ring_mean <= 0:
        return 0.0
    return float(np.clip((ring_mean - float(inside.mean())) / ring_mean, 0.0, 1.0))
