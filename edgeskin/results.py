"""Result types: small frozen dataclasses of numpy arrays, boxes in pixel xyxy of the original frame.

Every result serialises to plain JSON-ready dicts with ``to_dict()``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

# The messages of a frame (PipelineResult.messages). Without an answer, one of the first three says why; the UI,
# the kiosk and the CLI show RETAKE_ADVICE after it. The best box of the detector's unsure band (spec
# thresholds.unsure <= score < presence) is answered when the frame backs it up (edgeskin.core.evidence): retaking
# the picture would give the same frame and the same score. The lesion then carries ``detector_unsure`` and the
# frame DETECTOR_UNSURE.
NO_LESION_FOUND = "no lesion found"
NOT_SKIN = "no lesion found: this does not look like skin"
NOTHING_STANDS_OUT = "no lesion found: nothing in the box stands out from the skin"
DETECTOR_UNSURE = "detector unsure: check that the box is on the lesion"
# Shown with a lesion whose answer combines its crop with a context view (Lesion.context_view).
CONTEXT_VIEW = "context view: a wider view of the lesion was classified as well, and the answer combines both"
RETAKE_ADVICE: Mapping[str, str] = MappingProxyType(
    {
        NO_LESION_FOUND: "Centre the lesion, fill most of the frame, and take the picture again.",
        NOT_SKIN: "Point the camera at the skin lesion, close enough that skin fills the picture.",
        NOTHING_STANDS_OUT: "The detector's best guess is plain skin. If a lesion is there, centre it and take "
        "the picture again in even light.",
    }
)


def _frozen_array(values: Any, dtype: Any, shape_tail: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.array(values, dtype=dtype, copy=True)
    if arr.size == 0:
        arr = arr.reshape((0, *shape_tail))
    if arr.ndim != 1 + len(shape_tail) or tuple(arr.shape[1:]) != shape_tail:
        raise ValueError(
            f"{name}: expected shape (N, {', '.join(map(str, shape_tail))}), got {arr.shape}".replace(", )", ")")
        )
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class Detections:
    """All detections of one frame as parallel arrays (after NMS), boxes in original-frame pixels.

    Attributes:
        xyxy: (N, 4) float32 boxes ``[x0, y0, x1, y1]``.
        confidence: (N,) float32 scores in [0, 1].
        class_id: (N,) int32 class indices.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray

    def __post_init__(self) -> None:
        xyxy = _frozen_array(self.xyxy, np.float32, (4,), "xyxy")
        conf = _frozen_array(self.confidence, np.float32, (), "confidence")
        cls = _frozen_array(self.class_id, np.int32, (), "class_id")
        if not (len(xyxy) == len(conf) == len(cls)):
            raise ValueError(
                f"expected parallel arrays, got {len(xyxy)} boxes, {len(conf)} scores, {len(cls)} class ids"
            )
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "class_id", cls)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int32))

    def __len__(self) -> int:
        return len(self.confidence)

    def __getitem__(self, index: Any) -> Detections:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index])

    @property
    def area(self) -> np.ndarray:
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "xyxy": self.xyxy.round(2).tolist(),
            "confidence": self.confidence.round(4).tolist(),
            "class_id": self.class_id.tolist(),
        }


@dataclass(frozen=True)
class Classification:
    """Class probabilities of one image or crop.

    Attributes:
        probabilities: (C,) float32, summing to 1.
        labels: The C class names, in output order.
    """

    probabilities: np.ndarray
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        probs = np.array(self.probabilities, dtype=np.float32, copy=True).reshape(-1)
        if len(probs) != len(self.labels):
            raise ValueError(f"expected {len(self.labels)} probabilities (one per label), got {len(probs)}")
        probs.setflags(write=False)
        object.__setattr__(self, "probabilities", probs)
        object.__setattr__(self, "labels", tuple(self.labels))

    def top_k(self, k: int = 5) -> list[tuple[str, float]]:
        """Return the k most probable (label, probability) pairs, most probable first."""
        order = np.argsort(-self.probabilities, kind="stable")[: max(1, k)]
        return [(self.labels[i], float(self.probabilities[i])) for i in order]

    @property
    def label(self) -> str:
        return self.labels[int(np.argmax(self.probabilities))]

    def as_dict(self) -> dict[str, float]:
        return {name: round(float(p), 6) for name, p in zip(self.labels, self.probabilities, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "probabilities": self.as_dict()}


@dataclass(frozen=True)
class Lesion:
    """One analysed lesion: where it is, what it most likely is, and why the model thinks so.

    Attributes:
        box: (4,) float32 pixel xyxy in the original frame.
        score: Detector confidence (1.0 when the whole image was classified without detection).
        dx: Probabilities over the classifier's diagnoses (8 ISIC 2019, or 7 HAM10000).
        group: Probabilities over the 4 clinical groups (sums of dx).
        malignant: mel + bcc + scc + ak (akiec) probability.
        refer: True when ``malignant`` is at or above the model's triage threshold.
        cam: (h, w) float32 heatmap in [0, 1] over ``crop_box`` (None when CAM is off).
        crop_box: (4,) int pixel xyxy of the crop that was classified.
        detector_unsure: True when the detector scored the box in its unsure band (below its presence
            threshold) and it was answered because the frame backed it up; the answer is the classifier's as
            for any lesion, and the user should check that the box is on the lesion.
        context_view: True when a context view (the whole frame or a wider window around the box) was
            classified as well and ``dx`` combines it with the crop's (``edgeskin.core.context``).
    """

    box: np.ndarray
    score: float
    dx: Classification
    group: Classification
    malignant: float
    refer: bool
    crop_box: np.ndarray
    cam: np.ndarray | None = None
    detector_unsure: bool = False
    context_view: bool = False

    @property
    def label(self) -> str:
        return self.dx.label

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "label": self.dx.label,
            "group_label": self.group.label,
            "dx": self.dx.as_dict(),
            "group": self.group.as_dict(),
            "malignant": round(float(self.malignant), 6),
            "refer": bool(self.refer),
            "detector_unsure": bool(self.detector_unsure),
            "context_view": bool(self.context_view),
            "crop_box": [int(v) for v in self.crop_box],
        }


@dataclass(frozen=True)
class PipelineResult:
    """Everything the pipeline found in one frame, with per-stage timings in milliseconds.

    ``lesions`` is empty when no lesion was found; ``messages`` then says why (e.g. "no lesion found",
    or quality-gate guidance such as "hold still").
    """

    image_size: tuple[int, int]  # (width, height) of the original frame
    lesions: tuple[Lesion, ...]
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    messages: tuple[str, ...] = ()
    source: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "lesions", tuple(self.lesions))
        object.__setattr__(self, "messages", tuple(self.messages))
        object.__setattr__(self, "timings_ms", MappingProxyType(dict(self.timings_ms)))

    @property
    def found(self) -> bool:
        return bool(self.lesions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "image_size": list(self.image_size),
            "lesions": [lesion.to_dict() for lesion in self.lesions],
            "messages": list(self.messages),
            "timings_ms": {k: round(float(v), 3) for k, v in self.timings_ms.items()},
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)


def merge_timings(*parts: Mapping[str, float]) -> dict[str, float]:
    """Merge stage-timing dicts, adding values of the same stage."""
    out: dict[str, float] = {}
    for part in parts:
        for key, value in part.items():
            out[key] = out.get(key, 0.0) + float(value)
    return out


__all__: Sequence[str] = (
    "DETECTOR_UNSURE",
    "NO_LESION_FOUND",
    "NOT_SKIN",
    "NOTHING_STANDS_OUT",
    "RETAKE_ADVICE",
    "Detections",
    "Classification",
    "Lesion",
    "PipelineResult",
    "merge_timings",
)
