"""What the model tasks share: one interpreter-backed model with its spec, closed on exit."""

from __future__ import annotations

from typing import TypeVar

from edgeskin.runtime.interpreter import TFLiteModel
from edgeskin.runtime.spec import ModelSpec

_Task = TypeVar("_Task", bound="ModelTask")


class ModelTask:
    """Base of :class:`~edgeskin.tasks.classifier.Classifier` and :class:`~edgeskin.tasks.detector.Detector`:
    a context manager that owns ``model`` (one :class:`TFLiteModel`) and knows its ``spec``."""

    model: TFLiteModel
    spec: ModelSpec

    def __enter__(self: _Task) -> _Task:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.model.close()

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` of the model input."""
        return self.spec.input.size
