"""Tasks: Classifier, Detector, CamExplainer, LesionPipeline.

Each task lives in its own module and is imported on first use, so ``from edgeskin.tasks import
Classifier`` does not load the others. To add a task, add its module and names to ``_EXPORTS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgeskin._lazy import lazy_exports

# module (relative to this package) -> the public names it defines
_EXPORTS: dict[str, tuple[str, ...]] = {
    "classifier": ("Classifier", "ClassifierOptions"),
    "detector": ("Detector", "DetectorOptions"),
    "cam": ("CamExplainer",),
    "pipeline": ("LesionPipeline", "PipelineOptions"),
}

if TYPE_CHECKING:  # pragma: no cover
    from edgeskin.tasks.classifier import Classifier, ClassifierOptions  # noqa: F401

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
