"""The roles the pipeline, the live loop, the kiosk and the UI depend on, as typing Protocols.

:class:`~edgeskin.tasks.classifier.Classifier`, :class:`~edgeskin.tasks.detector.Detector` /
:class:`~edgeskin.tasks.detector.ClassicalDetector` and :class:`~edgeskin.tasks.pipeline.LesionPipeline` fill
them; tests pass small fakes. A component is used through its role only, never through attribute guessing.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from edgeskin.results import Classification, Detections, PipelineResult
from edgeskin.runtime.spec import ModelSpec

__all__ = ["ClassifierRole", "DetectorRole", "HasSpec", "InspectablePipeline", "PipelineRole"]


class ClassifierRole(Protocol):
    """An image classifier: its label list and probabilities per image (``Classifier``)."""

    @property
    def labels(self) -> tuple[str, ...]: ...

    def classify(self, image_rgb: np.ndarray) -> Classification: ...

    def close(self) -> None: ...


class DetectorRole(Protocol):
    """Boxes in frame pixels with their scores (``Detector``, ``ClassicalDetector``)."""

    def detect(self, image_rgb: np.ndarray) -> Detections: ...


@runtime_checkable
class PipelineRole(Protocol):
    """A frame in, a :class:`~edgeskin.results.PipelineResult` out, and the referral threshold it applies.

    ``refer_threshold``: the malignant probability at or above which a lesion is referred, or None when
    the rule is "the most probable group is malignant" (:func:`edgeskin.labels.refer_decision`). The live loop
    smooths diagnoses over frames and refers with the same threshold. A plain callable can stand in for a
    pipeline where no threshold is needed (the loop then uses its own option, or the group rule).
    """

    refer_threshold: float | None

    def __call__(self, frame_rgb: np.ndarray) -> PipelineResult: ...


@runtime_checkable
class HasSpec(Protocol):
    """A model that carries its :class:`~edgeskin.runtime.spec.ModelSpec` (``Classifier``, ``Detector``; not the
    classical localiser, which has no model)."""

    spec: ModelSpec


class InspectablePipeline(PipelineRole, Protocol):
    """A pipeline whose models a page can describe (the UI's model facts): its classifier and its detector
    (None: whole-frame classification), each with a spec when it has one (:class:`HasSpec`)."""

    classifier: ClassifierRole
    detector: DetectorRole | None
