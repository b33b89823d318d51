"""Tasks: Classifier, Detector, CamExplainer, LesionPipeline.

Each task lives in its own module and is imported on first use, so ``from edgeskin.tasks import
Classifier`` does not load the others. To add a task, add one line to ``_EXPORTS``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{module_name}":
            raise
        raise AttributeError(f"{name} is not available: edgeskin.tasks.{module_name} is not installed") from exc
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = list(_EXPORTS)
