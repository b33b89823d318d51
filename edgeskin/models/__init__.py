"""The shipped default models: INT8 ``.tflite`` files with their ``.json`` specs in this folder.

``edgeskin predict``, :meth:`edgeskin.tasks.pipeline.LesionPipeline.from_defaults` and ``edgeskin evaluate``
use them when no model is named. They are built by ``training/`` and ``convert/`` (see the model card,
``MODEL_CARD.md``); while they are absent every lookup raises :class:`~edgeskin.errors.NoDefaultModelError`
with a one-line message.

The folder can be overridden with the ``EDGESKIN_MODELS_DIR`` environment variable (tests and
deployments that keep models outside the package).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from edgeskin.errors import NoDefaultModelError

__all__ = [
    "CLASSIFIER_NAME",
    "DETECTOR_NAME",
    "MODELS_DIR",
    "DefaultModelPaths",
    "default_classifier_path",
    "default_detector_path",
    "default_model_paths",
    "models_dir",
]

MODELS_DIR = Path(__file__).resolve().parent
CLASSIFIER_NAME = "edgeskin-mnv2-cls"
DETECTOR_NAME = "edgeskin-yolov5n-det"
ENV_VAR = "EDGESKIN_MODELS_DIR"


class DefaultModelPaths(NamedTuple):
    """The ``.tflite`` files of the shipped classifier and detector (each with ``<stem>.json`` beside it)."""

    classifier: Path
    detector: Path


def models_dir() -> Path:
    """The folder searched for default models: ``$EDGESKIN_MODELS_DIR`` when set, else this package folder."""
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else MODELS_DIR


def _default_path(name: str, role: str, alternative: str) -> Path:
    folder = models_dir()
    model = folder / f"{name}.tflite"
    spec = folder / f"{name}.json"
    absent = [p.name for p in (model, spec) if not p.is_file()]
    if absent:
        raise NoDefaultModelError(
            f"no default model is installed: the {role} {' and '.join(absent)} {'is' if len(absent) == 1 else 'are'} missing from {folder}; "
            f"build it with training/ and convert/ (see the README), or {alternative}"
        )
    return model


def default_classifier_path() -> Path:
    """The shipped classifier ``edgeskin-mnv2-cls.tflite``.

    Raises:
        NoDefaultModelError: the model or its spec is not installed.
    """
    return _default_path(CLASSIFIER_NAME, "classifier", "name a classifier with --classifier/--model")


def default_detector_path() -> Path:
    """The shipped lesion detector ``edgeskin-yolov5n-det.tflite``.

    Raises:
        NoDefaultModelError: the model or its spec is not installed.
    """
    return _default_path(DETECTOR_NAME, "detector", "name one with --detector (or 'classical' / 'none')")


def default_model_paths() -> DefaultModelPaths:
    """Both shipped models.

    Raises:
        NoDefaultModelError: either model or its spec is not installed.
    """
    return DefaultModelPaths(default_classifier_path(), default_detector_path())
