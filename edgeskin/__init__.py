"""edgeskin: skin-lesion detection, classification and visual explanation on small devices (INT8 TFLite).

The public API is imported on first use, so ``import edgeskin`` stays fast on a Raspberry Pi and never
loads an interpreter, OpenCV or NumPy until they are needed::

    import edgeskin

    with edgeskin.Classifier.from_model("model.tflite", labels="labels.txt") as classifier:
        print(classifier.classify(edgeskin.read_image("photo.jpg")).top_k(3))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it. Add a line here to export a new name.
_EXPORTS: dict[str, str] = {
    # tasks
    "Classifier": "edgeskin.tasks",
    "ClassifierOptions": "edgeskin.tasks",
    "Detector": "edgeskin.tasks",
    "DetectorOptions": "edgeskin.tasks",
    "CamExplainer": "edgeskin.tasks",
    "LesionPipeline": "edgeskin.tasks",
    "PipelineOptions": "edgeskin.tasks",
    # runtime
    "ModelSpec": "edgeskin.runtime.spec",
    "load_model": "edgeskin.runtime.spec",
    "load_spec": "edgeskin.runtime.spec",
    "TFLiteModel": "edgeskin.runtime.interpreter",
    "make_interpreter": "edgeskin.runtime.interpreter",
    # images and results
    "read_image": "edgeskin.image",
    "Classification": "edgeskin.results",
    "Detections": "edgeskin.results",
    "Lesion": "edgeskin.results",
    "PipelineResult": "edgeskin.results",
    # errors
    "EdgeskinError": "edgeskin.errors",
}

if TYPE_CHECKING:  # pragma: no cover
    from edgeskin.errors import EdgeskinError  # noqa: F401
    from edgeskin.results import Classification, Detections, Lesion, PipelineResult  # noqa: F401
    from edgeskin.runtime.interpreter import TFLiteModel, make_interpreter  # noqa: F401
    from edgeskin.runtime.spec import ModelSpec, load_model, load_spec  # noqa: F401
    from edgeskin.tasks.classifier import Classifier, ClassifierOptions  # noqa: F401


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgeskin")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'edgeskin' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | {"__version__"})


__all__ = ["__version__", *_EXPORTS]
