"""Tasks: Classifier, Detector, CamExplainer, LesionPipeline.

Each task lives in its own module and is imported on first use, so ``from edgeskin.tasks import
Classifier`` does not load the others. To add a task, add one line to ``_EXPORTS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeskin._lazy import lazy_exports

# public name -> module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    "Classifier": "classifier",
    "ClassifierOptions": "classifier",
    "Detector": "detector",
    "DetectorOptions": "detector",
    "CamExplainer": "cam",
    "LesionPipeline": "pipeline",
    "PipelineOptions": "pipeline",
}

if TYPE_CHECKING:  # pragma: no cover
    from edgeskin.tasks.classifier import Classifier, ClassifierOptions  # noqa: F401

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
