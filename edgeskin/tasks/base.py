"""What the model tasks share: their base options, and one interpreter-backed model with its spec, closed on exit."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol, TypeVar

from edgeskin.runtime.interpreter import TFLiteModel, check_delegate, check_threads
from edgeskin.runtime.spec import ModelSpec, load_model


@dataclass(frozen=True)
class BaseOptions:
    """What every model task needs, validated here once (MediaPipe's ``BaseOptions``).

    :class:`~edgeskin.tasks.classifier.ClassifierOptions` and :class:`~edgeskin.tasks.detector.DetectorOptions`
    are built on it: they add their task's options and check only those.

    Attributes:
        model_path: The ``.tflite`` model.
        spec: Its :class:`ModelSpec` or spec path; None: ``<stem>.json`` beside the model.
        num_threads: Interpreter CPU threads (None: the interpreter's default).
        delegate: ``"cpu"``, ``"edgetpu"`` or ``"auto"``.
    """

    model_path: str | Path
    spec: ModelSpec | str | Path | None = None
    num_threads: int | None = None
    delegate: str = "cpu"

    def __post_init__(self) -> None:
        check_delegate(self.delegate)
        check_threads(self.num_threads)

    @property
    def base_options(self) -> BaseOptions:
        """Only the base part (of a task's options)."""
        return BaseOptions(self.model_path, self.spec, self.num_threads, self.delegate)

    def load_model(self, task: str) -> tuple[TFLiteModel, ModelSpec]:
        """Open the model with its spec, checked to be a ``task`` model ("classification", "detection")."""
        return load_model(
            self.model_path, self.spec, expected_task=task, num_threads=self.num_threads, delegate=self.delegate
        )


def keyword_options(constructor: Callable[..., object], options: Any) -> dict[str, Any]:
    """The fields of the ``options`` dataclass that ``constructor`` takes as keyword-only parameters, by name.

    A task's ``create`` passes its options on with this, so each option is named in its options class and in the
    constructor's signature, not a third time in between. Fields the constructor does not take (the model path, the
    threads) are left to ``create``.
    """
    parameters = inspect.signature(constructor).parameters
    return {
        option.name: getattr(options, option.name)
        for option in fields(options)
        if option.name in parameters and parameters[option.name].kind is inspect.Parameter.KEYWORD_ONLY
    }


class _Closeable(Protocol):
    def close(self) -> None: ...


@contextmanager
def closed_on_error(*resources: _Closeable | None) -> Iterator[None]:
    """Close ``resources`` (None skipped) if the block raises, then re-raise: a task that fails while it is
    being built leaves no interpreter open. On success they stay open: the built task owns them."""
    try:
        yield
    except BaseException:
        for resource in resources:
            if resource is not None:
                resource.close()
        raise


_Task = TypeVar("_Task", bound="ModelTask")


class ModelTask:
    """Base of :class:`~edgeskin.tasks.classifier.Classifier` and :class:`~edgeskin.tasks.detector.Detector`:
    built from its options by :meth:`create`, a context manager that owns ``model`` (one :class:`TFLiteModel`) and
    knows its ``spec``."""

    model: TFLiteModel
    spec: ModelSpec

    @classmethod
    def create(cls: type[_Task], options: BaseOptions) -> _Task:
        """Open the model of ``options`` (the task's options class), check it against its spec and build the task
        on it with every option its constructor takes (:func:`keyword_options`).

        Raises:
            ModelError: missing/corrupt model, checksum mismatch, a model of the other task, or tensors that
                disagree with the spec (SpecError). DelegateError: the Edge TPU was asked but is absent.
        """
        model, spec = cls._open_model(options)
        with closed_on_error(model):
            return cls(model, spec, **keyword_options(cls, options))  # type: ignore[call-arg]

    @classmethod
    def _open_model(cls, options: Any) -> tuple[TFLiteModel, ModelSpec]:
        """The task's model and spec, opened and checked against each other; each task says how."""
        raise NotImplementedError

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
