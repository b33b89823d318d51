"""A small fake classifier for the UI tests: a real LesionPipeline with the classical detector and a
numpy "classifier" whose spec, probabilities and CAM have the real shapes, so the page can be tested
before (and independently of) the shipped models."""

from __future__ import annotations

import cv2
import numpy as np

from edgeskin.labels import DX_CLASSES
from edgeskin.results import Classification
from edgeskin.runtime.spec import ModelSpec

# features: darkness, redness, 1 → 7 dx logits. Dark lesions lean to mel/nv, red ones to vasc.
_WEIGHTS = np.array(
    [
        # akiec bcc   bkl   df    mel   nv    vasc
        [0.2, 0.4, 0.3, 0.1, 2.0, 2.2, -1.0],  # darkness
        [0.5, 0.3, 0.1, 0.4, 0.2, -0.4, 3.0],  # redness
        [0.0, 0.0, 0.2, -0.5, -0.6, 0.3, -0.8],  # constant
    ],
    dtype=np.float32,
)

FAKE_SPEC = {
    "format_version": 1,
    "name": "fake-ui-classifier",
    "task": "classification",
    "input": {"size": [224, 224], "color_order": "RGB", "resize": "stretch", "mean": [0, 0, 0], "std": [1, 1, 1]},
    "preprocessing": {"name": "colour", "steps": [{"op": "shades_of_gray", "power": 6}]},
    "labels": list(DX_CLASSES),
    "outputs": {"probabilities": "probs", "features": "features"},
    "cam": {"weights": _WEIGHTS.tolist(), "bias": [0.0] * 7},
    "triage": {"malignant_threshold": 0.3},
    "metrics": {"val": {"balanced_accuracy": 0.5, "auc_malignant": 0.75}},
    "provenance": {"license": "test fixture"},
}


class FakeClassifier:
    """The parts of :class:`edgeskin.tasks.classifier.Classifier` that the pipeline and the app use."""

    def __init__(self) -> None:
        self.spec = ModelSpec.from_dict(FAKE_SPEC)
        self.labels = self.spec.labels
        self.closed = False

    def _features(self, crop: np.ndarray) -> np.ndarray:
        small = cv2.resize(crop, (7, 7), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        darkness = 1.0 - small.mean(axis=2)
        redness = np.clip(small[..., 0] - small[..., 1:].mean(axis=2), 0.0, 1.0)
        return np.stack([darkness, redness, np.ones_like(darkness)], axis=-1)

    def classify_with_features(self, crop: np.ndarray) -> tuple[Classification, np.ndarray]:
        features = self._features(crop)
        logits = features.mean(axis=(0, 1)) @ _WEIGHTS * 3.0
        probs = np.exp(logits - logits.max())
        return Classification(probs / probs.sum(), self.labels), features

    def classify(self, crop: np.ndarray) -> Classification:
        return self.classify_with_features(crop)[0]

    def close(self) -> None:
        self.closed = True


def make_fake_pipeline(refer_threshold: float | None = None):
    """A LesionPipeline: the classical (model-free) detector + :class:`FakeClassifier`, CAM on."""
    from edgeskin.tasks.detector import ClassicalDetector
    from edgeskin.tasks.pipeline import LesionPipeline

    return LesionPipeline(FakeClassifier(), ClassicalDetector(), refer_threshold=refer_threshold)
