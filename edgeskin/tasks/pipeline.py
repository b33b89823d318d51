"""LesionPipeline: frame → detect → crop → classify → CAM, with per-stage timings.

The stages are the tasks of this package; the pipeline only wires them, keeps one interpreter per
model for its lifetime, and turns the classifier's dx probabilities (8 ISIC 2019 or 7 HAM10000 diagnoses) into the product's views (4
clinical groups, malignant probability, refer flag).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from edgeskin.core.context import GROWN_MARGIN, ContextRule, combine_views, context_measures
from edgeskin.core.crop import crop_with_margin
from edgeskin.core.evidence import SCENE, EvidenceThresholds, lesion_evidence
from edgeskin.errors import ConfigError, check_fraction
from edgeskin.image import validate_frame
from edgeskin.labels import (  # refer_decision and refer_rule: re-exported from here, as before
    DX8_CLASSES,
    DX_CLASSES,
    GROUPS,
    is_dx_labels,
    malignant_probability,
    refer_decision,
    refer_rule,
    to_groups,
)
from edgeskin.results import (  # the messages: re-exported from here, as before
    DETECTOR_UNSURE,
    NO_LESION_FOUND,
    NOT_SKIN,
    NOTHING_STANDS_OUT,
    Classification,
    Lesion,
    PipelineResult,
    merge_timings,
)
from edgeskin.roles import ClassifierRole, DetectorRole
from edgeskin.runtime.interpreter import check_delegate, check_threads
from edgeskin.runtime.spec import ModelSpec
from edgeskin.tasks.base import closed_on_error, keyword_options
from edgeskin.tasks.cam import CamExplainer

__all__ = [
    "CLASSICAL",
    "DEFAULT_CONTEXT",
    "ContextRule",
    "DETECTOR_UNSURE",
    "NO_LESION_FOUND",
    "NOT_SKIN",
    "NOTHING_STANDS_OUT",
    "LesionPipeline",
    "PipelineOptions",
    "TIMING_STAGES",
    "refer_decision",
    "refer_rule",
]

logger = logging.getLogger(__name__)

CLASSICAL = "classical"
TIMING_STAGES: tuple[str, ...] = ("preprocess", "detect", "crop", "classify", "cam", "total")
# The context view's rule, chosen on the internal validation (HAM10000 and ISIC 2017 validation images) by the
# criterion written in advance in docs/context-view.md: a box over half of the frame also gets the whole frame
# (one single-view invoke), and the view with the higher melanoma probability answers.
DEFAULT_CONTEXT: ContextRule | None = ContextRule(area=0.5, context="frame", combination="max_mel")


@dataclass(frozen=True)
class PipelineOptions:
    """Options of a :class:`LesionPipeline`.

    Attributes:
        classifier_path: The 7-class dx classifier ``.tflite`` (edgeskin spec beside it).
        classifier_spec: Its spec or spec path (None: ``<stem>.json`` beside the model).
        detector: A detector ``.tflite`` path; ``"classical"`` for the model-free localiser
            (:class:`~edgeskin.tasks.detector.ClassicalDetector`); or None to classify the whole frame as
            one lesion (for lesion-centred dermoscopy crops).
        detector_spec: The detector's spec or spec path (None: beside the model).
        num_threads: Interpreter CPU threads for each model (None: the interpreter's default).
        delegate: ``"cpu"``, ``"edgetpu"`` or ``"auto"``.
        crop_margin: Skin around each box given to the classifier, as a fraction of the box size per side.
        max_lesions: Analyse at most this many boxes per frame, highest detector confidence first.
        min_confidence: Detector score a box needs to be reported as a lesion (None: the detector spec's
            ``thresholds.presence``, else every box the detector keeps). Lower-scoring boxes are
            candidates: when none reaches it, the best candidate is answered if it scores at least
            ``unsure_confidence`` and the frame backs it up (``unsure_evidence``), flagged ``detector_unsure``;
            otherwise the frame has no lesion and a message that says why.
        unsure_confidence: Lower end of the detector's unsure band (None: the detector spec's
            ``thresholds.unsure``; no band when neither gives one).
        unsure_evidence: The limits that decide whether an unsure-band box is answered (None: the measured
            defaults of :class:`~edgeskin.core.evidence.EvidenceThresholds`).
        cam: Compute a class activation map for each lesion's top diagnosis.
        refer_threshold: Malignant-probability threshold for "refer" (None: the classifier spec's
            ``triage.malignant_threshold``; without one, refer when the top group is malignant).
        tta: The classifier's test-time augmentation views (None: its spec's; ``()``: one view, the
            fastest; see :class:`~edgeskin.tasks.classifier.ClassifierOptions`).
        context: When a lesion's crop also gets a context view (the whole frame or a wider window, one
            single-view classifier invoke per frame) and how the two are combined
            (:class:`~edgeskin.core.context.ContextRule`; default :data:`DEFAULT_CONTEXT`, chosen in
            ``docs/context-view.md``); None: never. Not used without a detector (the crop is the frame).
    """

    classifier_path: str | Path
    classifier_spec: ModelSpec | str | Path | None = None
    detector: str | Path | None = None
    detector_spec: ModelSpec | str | Path | None = None
    num_threads: int | None = None
    delegate: str = "cpu"
    crop_margin: float = 0.15
    max_lesions: int = 3
    min_confidence: float | None = None
    cam: bool = True
    refer_threshold: float | None = None
    tta: Sequence[str] | None = None
    unsure_confidence: float | None = None
    unsure_evidence: EvidenceThresholds | None = None
    context: ContextRule | None = DEFAULT_CONTEXT

    def __post_init__(self) -> None:
        check_delegate(self.delegate)
        check_threads(self.num_threads)
        if not isinstance(self.max_lesions, int) or self.max_lesions < 1:
            raise ConfigError(f"max_lesions: expected a positive integer, got {self.max_lesions!r}")
        if not (isinstance(self.crop_margin, (int, float)) and 0.0 <= self.crop_margin <= 5.0):
            raise ConfigError(f"crop_margin: expected a fraction of the box size in [0, 5], got {self.crop_margin!r}")
        check_fraction(self.min_confidence, "min_confidence")
        check_fraction(self.refer_threshold, "refer_threshold")
        check_fraction(self.unsure_confidence, "unsure_confidence")
        if self.detector_spec is not None and (self.detector is None or self.detector == CLASSICAL):
            raise ConfigError("detector_spec is given but the detector is not a model file")
        _check_context(self.context)


class LesionPipeline:
    """Find lesions in a frame, classify each, and explain the answer.

    Stages: validate the frame (RGB uint8) → detect (a YOLO detector, the classical localiser, or the
    whole frame as one lesion) → crop each box with a margin → classify the crop (the classifier applies
    its own spec's resize and preprocessing profile to the model-input-sized crop; a lesion that the context rule
    picks, by default one whose box covers over half of the frame, also gets the whole frame as one single-view
    invoke, combined with the crop's answer: :mod:`edgeskin.core.context`, ``Lesion.context_view``) → dx probabilities,
    4 group probabilities (sums), malignant probability and the refer flag → CAM of the top diagnosis
    over the crop. No box at the presence threshold: the best box of the unsure band is answered, flagged
    ``detector_unsure``, when the frame looks like skin and the box stands out from it
    (:mod:`edgeskin.core.evidence`); otherwise no lesion and a message that says why.

    Example::

        with LesionPipeline.from_defaults(threads=2) as pipeline:
            result = pipeline(read_image("photo.jpg"))
            for lesion in result.lesions:
                print(lesion.label, lesion.malignant, lesion.refer)
            print(result.timings_ms)

    Args:
        classifier: A :class:`~edgeskin.tasks.classifier.Classifier` over the 8 ISIC 2019 (or the 7 HAM10000) diagnoses.
        detector: Anything with ``detect(frame) -> Detections`` (:class:`~edgeskin.tasks.detector.Detector`,
            :class:`~edgeskin.tasks.detector.ClassicalDetector`), or None for whole-frame classification.
        crop_margin, max_lesions, min_confidence, cam, refer_threshold, unsure_confidence, unsure_evidence,
            context: see :class:`PipelineOptions`.
        explainer: The CAM explainer (default: from the classifier's spec when ``cam`` is on).

    One instance owns its interpreters and is not thread-safe; make one per thread. Closing the
    pipeline closes its models.
    """

    def __init__(
        self,
        classifier: ClassifierRole,
        detector: DetectorRole | None = None,
        *,
        crop_margin: float = 0.15,
        max_lesions: int = 3,
        min_confidence: float | None = None,
        cam: bool = True,
        refer_threshold: float | None = None,
        explainer: CamExplainer | None = None,
        unsure_confidence: float | None = None,
        unsure_evidence: EvidenceThresholds | None = None,
        context: ContextRule | None = DEFAULT_CONTEXT,
    ) -> None:
        labels = tuple(classifier.labels)
        if not is_dx_labels(labels):
            raise ConfigError(
                f"LesionPipeline needs a classifier over the 8 ISIC 2019 diagnoses {list(DX8_CLASSES)} or the 7 "
                f"HAM10000 diagnoses {list(DX_CLASSES)}, got labels "
                f"{list(labels)[:10]}{' ...' if len(labels) > 10 else ''}"
            )
        if not isinstance(max_lesions, int) or max_lesions < 1:
            raise ConfigError(f"max_lesions: expected a positive integer, got {max_lesions!r}")
        thresholds = getattr(getattr(detector, "spec", None), "thresholds", None) or {}
        if min_confidence is None:
            min_confidence = thresholds.get("presence")
        if unsure_confidence is None:
            unsure_confidence = thresholds.get("unsure")
        check_fraction(min_confidence, "min_confidence")
        check_fraction(unsure_confidence, "unsure_confidence")
        if unsure_confidence is not None and min_confidence is not None and unsure_confidence > min_confidence:
            unsure_confidence = None  # a reporting threshold below the band: every candidate in it is reported
        check_fraction(refer_threshold, "refer_threshold")
        self.classifier = classifier
        self.detector = detector
        self.dx_labels = labels
        self.group_labels = GROUPS
        self.crop_margin = float(crop_margin)
        self.max_lesions = max_lesions
        self.min_confidence = min_confidence
        self.unsure_confidence = unsure_confidence
        self.unsure_evidence = unsure_evidence or EvidenceThresholds()
        self.context = _check_context(context)
        # Every view of every lesion in one invoke when the classifier offers it (edgeskin's Classifier does).
        self._classify_many = getattr(classifier, "classify_many", None)
        spec = getattr(classifier, "spec", None)
        spec_threshold = spec.malignant_threshold if spec is not None else None
        # (height, width) of the classifier's input, for the context rule's upsampling; None without one.
        self._input_size = getattr(getattr(spec, "input", None), "size", None)
        self.refer_threshold: float | None = refer_threshold if refer_threshold is not None else spec_threshold
        self.explainer: CamExplainer | None = None
        if cam:
            if explainer is not None:
                self.explainer = explainer
            elif spec is not None and spec.cam_arrays() is not None and "features" in spec.outputs:
                self.explainer = CamExplainer.from_spec(spec)
            else:
                logger.warning('CAM is off: the classifier\'s spec has no "cam" weights or "features" output')
        # The group matrix is built once; per frame only a (7,) @ (7, 4) product remains.

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def create(cls, options: PipelineOptions) -> LesionPipeline:
        """Open the models named in ``options``.

        Raises:
            ModelError: a model is missing, corrupt or disagrees with its spec. ConfigError: the classifier
                is not a 7-class dx model. DelegateError: the Edge TPU was asked but is absent.
        """
        from edgeskin.tasks.classifier import Classifier, ClassifierOptions
        from edgeskin.tasks.detector import ClassicalDetector, Detector, DetectorOptions

        classifier = Classifier.create(
            ClassifierOptions(
                options.classifier_path,
                spec=options.classifier_spec,
                num_threads=options.num_threads,
                delegate=options.delegate,
                tta=options.tta,
            )
        )
        detector: Any = None
        with closed_on_error(classifier):
            if options.detector is not None and str(options.detector) == CLASSICAL:
                detector = ClassicalDetector()
            elif options.detector is not None:
                detector = Detector.create(
                    DetectorOptions(
                        options.detector,
                        options.detector_spec,
                        confidence_threshold=options.min_confidence,
                        # NMS keeps boxes best first, so stopping at max_lesions changes nothing but the time.
                        max_det=options.max_lesions,
                        num_threads=options.num_threads,
                        delegate=options.delegate,
                    )
                )
                unsure = options.unsure_confidence
                unsure = detector.spec.thresholds.get("unsure") if unsure is None else unsure
                if unsure is not None and detector.confidence_threshold > unsure:
                    detector.confidence_threshold = float(unsure)  # keep the unsure band's candidates
        with closed_on_error(classifier, detector):
            return cls(classifier, detector, **keyword_options(cls, options))

    @classmethod
    def from_defaults(cls, **overrides: Any) -> LesionPipeline:
        """The pipeline on the shipped models (``edgeskin/models``), with :class:`PipelineOptions` overrides.

        ``threads=`` is accepted for ``num_threads`` and ``classifier=`` for ``classifier_path``. Passing ``classifier_path`` or ``detector`` (a path,
        ``"classical"`` or None) replaces that default; a default model is only looked up when it is used.

        Raises:
            NoDefaultModelError: a default model that is needed is not installed.
            ConfigError: an unknown option.
        """
        from edgeskin.models import default_classifier_path, default_detector_path

        for alias, name in (("threads", "num_threads"), ("classifier", "classifier_path")):
            if alias in overrides:
                overrides[name] = overrides.pop(alias)
        known = {f.name for f in fields(PipelineOptions)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown pipeline option(s) {sorted(unknown)}; expected some of {sorted(known)}")
        if "classifier_path" not in overrides:
            overrides["classifier_path"] = default_classifier_path()
        if "detector" not in overrides:
            overrides["detector"] = default_detector_path()
        return cls.create(PipelineOptions(**overrides))

    def __enter__(self) -> LesionPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the classifier and the detector (their interpreters)."""
        self.classifier.close()
        if self.detector is not None and hasattr(self.detector, "close"):
            self.detector.close()

    # -- inference ---------------------------------------------------------------------------------
    def __call__(self, frame_rgb: np.ndarray, *, source: str | None = None) -> PipelineResult:
        return self.predict(frame_rgb, source=source)

    def predict(self, frame_rgb: np.ndarray, *, source: str | None = None) -> PipelineResult:
        """Analyse one frame.

        Args:
            frame_rgb: The frame, RGB (see :func:`edgeskin.image.validate_frame` for what is accepted:
                uint8/uint16/float, gray, RGB or RGBA, at least 32x32).
            source: Where the frame came from (a path, a camera name), copied into the result.

        Returns:
            A :class:`PipelineResult`; ``timings_ms`` has one entry per stage and the ``total``:
            ``preprocess`` (frame validation and conversion), ``detect`` (the detector's resize, inference
            and decoding), ``crop``, ``classify`` (the classifier's resize, preprocessing profile and
            inference, summed over lesions) and ``cam``.

        Raises:
            ImageError: the frame is not a usable image.
        """
        start = time.perf_counter()
        frame = validate_frame(frame_rgb)
        height, width = frame.shape[:2]
        validated = time.perf_counter()

        boxes, scores, top_score, top_box = self._detect(frame)
        unsure, absent = False, NO_LESION_FOUND
        if not len(boxes) and self._in_band(top_score):
            verdict = lesion_evidence(frame, top_box, self.unsure_evidence.work_side).verdict(self.unsure_evidence)
            if verdict is None:
                boxes, scores, unsure = top_box[np.newaxis], np.array([top_score], np.float32), True
            else:
                absent = NOT_SKIN if verdict == SCENE else NOTHING_STANDS_OUT
        detected = time.perf_counter()

        kept, crops, crop_boxes = [], [], []
        for i, box in enumerate(boxes):
            if self.detector is None:
                crop, crop_box = frame, np.array([0, 0, width, height], dtype=np.int32)
            else:
                try:  # a view of the frame: the classifier's resize reads it in place
                    crop, crop_box = crop_with_margin(frame, box, margin=self.crop_margin, copy=False)
                except ValueError:  # a degenerate box from an untrusted detector: skip it, not the frame
                    logger.debug("skipped a degenerate box %s", box)
                    continue
            kept.append(i)
            crops.append(crop)
            crop_boxes.append(crop_box)
        cropped = time.perf_counter()

        want_features = self.explainer is not None
        if not crops:
            classified: list[tuple[Classification, np.ndarray | None]] = []
        elif self._classify_many is not None:
            classified = self._classify_many(crops, want_features=want_features)
        elif want_features:
            classified = [self.classifier.classify_with_features(crop) for crop in crops]
        else:
            classified = [(self.classifier.classify(crop), None) for crop in crops]
        classified, context_ran = self._add_context(frame, [boxes[i] for i in kept], crop_boxes, classified)
        classified_at = time.perf_counter()

        cams: list[np.ndarray | None] = [None] * len(classified)
        if self.explainer is not None:
            for j, (dx, features) in enumerate(classified):
                if features is not None:
                    cams[j] = self.explainer.explain(features, int(np.argmax(dx.probabilities)))
        explained = time.perf_counter()
        lesions = [
            self._lesion(boxes[i], scores[i], dx, crop_box, cam, unsure, ran)
            for i, (dx, _), crop_box, cam, ran in zip(kept, classified, crop_boxes, cams, context_ran, strict=True)
        ]
        crop_ms = (cropped - detected) * 1000.0
        classify_ms = (classified_at - cropped) * 1000.0
        cam_ms = (explained - classified_at) * 1000.0
        end = time.perf_counter()

        timings = {
            "preprocess": (validated - start) * 1000.0,
            "detect": (detected - validated) * 1000.0,
            "crop": crop_ms,
            "classify": classify_ms,
            "cam": cam_ms,
            "total": (end - start) * 1000.0,
        }
        messages = (DETECTOR_UNSURE,) if unsure and lesions else () if lesions else (absent,)
        return PipelineResult((width, height), tuple(lesions), timings, messages, source)

    def _detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, float | None, np.ndarray | None]:
        """The boxes to report (at most ``max_lesions``, best first), their scores, and the best candidate's
        score and box before the reporting threshold (None without a detector or a candidate)."""
        if self.detector is None:
            height, width = frame.shape[:2]
            return np.array([[0, 0, width, height]], np.float32), np.ones(1, np.float32), None, None
        detections = self.detector.detect(frame)
        scores = detections.confidence
        best = int(np.argmax(scores)) if len(scores) else None
        top_score = None if best is None else float(scores[best])
        top_box = None if best is None else np.asarray(detections.xyxy[best], np.float32)
        keep = np.ones(len(scores), bool) if self.min_confidence is None else scores >= self.min_confidence
        index = np.flatnonzero(keep)
        order = index[np.argsort(-scores[index], kind="stable")][: self.max_lesions]
        return detections.xyxy[order], scores[order], top_score, top_box

    def _add_context(
        self,
        frame: np.ndarray,
        boxes: Sequence[np.ndarray],
        crop_boxes: Sequence[np.ndarray],
        classified: list[tuple[Classification, np.ndarray | None]],
    ) -> tuple[list[tuple[Classification, np.ndarray | None]], list[bool]]:
        """The lesions' classifications with the context view combined in where :attr:`context` triggers, and
        whether it did per lesion. The context views of a frame are one single-view invoke together."""
        rule = self.context
        ran = [False] * len(classified)
        if rule is None or self.detector is None or not classified:
            return classified, ran
        frame_size = (frame.shape[1], frame.shape[0])
        for j, (box, crop_box) in enumerate(zip(boxes, crop_boxes, strict=True)):
            ran[j] = rule.triggers(*context_measures(box, crop_box, frame_size, self._input_size))
        if not any(ran):
            return classified, ran
        if rule.context == "frame":
            views = [frame]
        else:
            views = [
                crop_with_margin(frame, box, margin=GROWN_MARGIN, copy=False)[0]
                for box, r in zip(boxes, ran, strict=True)
                if r
            ]
        if self._classify_many is not None:
            crop_timings = dict(getattr(self.classifier, "last_timings_ms", {}))
            crop_batches = tuple(getattr(self.classifier, "last_invoke_batches", ()))
            contexts = [dx for dx, _ in self._classify_many(views, views=("identity",))]
            # The classifier's record of this frame covers every invoke of it: the crops' and the context's.
            self.classifier.last_timings_ms = merge_timings(crop_timings, self.classifier.last_timings_ms)
            self.classifier.last_invoke_batches = crop_batches + tuple(self.classifier.last_invoke_batches)
        else:  # a classifier without batches (a test fake, a third-party wrapper): one call per view
            contexts = [self.classifier.classify(view) for view in views]
        melanoma = self.dx_labels.index("mel")
        out, k = list(classified), 0
        for j, (dx, features) in enumerate(classified):
            if ran[j]:
                combined = combine_views(dx.probabilities, contexts[k].probabilities, rule.combination, melanoma)
                out[j] = (Classification(combined, dx.labels), features)
                k += rule.context == "grown"
        return out, ran

    def _in_band(self, top_score: float | None) -> bool:
        """True when the best candidate is in the unsure band (below the reporting threshold, at or above its floor)."""
        low = self.unsure_confidence
        return top_score is not None and low is not None and top_score >= low

    def _lesion(
        self,
        box: np.ndarray,
        score: float,
        dx: Classification,
        crop_box: np.ndarray,
        cam: np.ndarray | None,
        detector_unsure: bool = False,
        context_view: bool = False,
    ) -> Lesion:
        probs = dx.probabilities
        groups = to_groups(probs, self.dx_labels)
        malignant = float(malignant_probability(probs, self.dx_labels))
        refer = bool(refer_decision(probs, self.dx_labels, self.refer_threshold))
        return Lesion(
            box=np.asarray(box, np.float32),
            score=float(score),
            dx=dx,
            group=Classification(groups, GROUPS),
            malignant=malignant,
            refer=refer,
            crop_box=crop_box,
            cam=cam,
            detector_unsure=detector_unsure,
            context_view=context_view,
        )

    def __repr__(self) -> str:
        detector = "whole frame" if self.detector is None else repr(self.detector)
        return (
            f"LesionPipeline(classifier={self.classifier!r}, detector={detector}, max_lesions={self.max_lesions}, "
            f"cam={'on' if self.explainer is not None else 'off'}, refer_threshold={self.refer_threshold}, "
            f"context={self.context})"
        )


def _check_context(context: object) -> ContextRule | None:
    if context is not None and not isinstance(context, ContextRule):
        raise ConfigError(f"context: expected a ContextRule or None (no context view), got {context!r}")
    return context
