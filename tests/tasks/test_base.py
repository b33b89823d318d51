"""edgeskin.tasks.base: closed_on_error (a task that fails while it is built leaves no interpreter open) and
keyword_options (what a task's create passes on to its constructor)."""

from __future__ import annotations

import pytest

from edgeskin.models import default_classifier_path, default_detector_path
from edgeskin.runtime.interpreter import TFLiteModel
from edgeskin.tasks.base import closed_on_error, keyword_options
from edgeskin.tasks.classifier import Classifier, ClassifierOptions
from edgeskin.tasks.detector import Detector, DetectorOptions
from edgeskin.tasks.pipeline import LesionPipeline, PipelineOptions


class Resource:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_closed_on_error_closes_only_when_the_block_raises():
    first, second = Resource(), Resource()
    with pytest.raises(KeyError, match="boom"), closed_on_error(first, None, second):
        raise KeyError("boom")
    assert (first.closed, second.closed) == (1, 1)
    with closed_on_error(first):
        pass
    assert first.closed == 1  # the built task owns it now


@pytest.fixture()
def closed_models(monkeypatch) -> list[TFLiteModel]:
    """The TFLite models closed during the test."""
    closed: list[TFLiteModel] = []
    original = TFLiteModel.close

    def close(self: TFLiteModel) -> None:
        closed.append(self)
        original(self)

    monkeypatch.setattr(TFLiteModel, "close", close)
    return closed


def _fail(*args, **kwargs) -> None:
    raise RuntimeError("the task could not be built")


@pytest.mark.parametrize(
    ("task", "options"),
    [
        (Classifier, lambda: ClassifierOptions(default_classifier_path())),
        (Detector, lambda: DetectorOptions(default_detector_path())),
    ],
)
def test_a_task_that_fails_to_build_closes_its_model(task, options, closed_models, monkeypatch):
    monkeypatch.setattr(task, "__init__", _fail)
    with pytest.raises(RuntimeError, match="could not be built"):
        task.create(options())
    assert [model.path.name for model in closed_models] == [options().model_path.name]


def test_a_pipeline_that_fails_to_build_closes_both_models(closed_models, monkeypatch):
    monkeypatch.setattr(LesionPipeline, "__init__", _fail)
    with pytest.raises(RuntimeError, match="could not be built"):
        LesionPipeline.create(PipelineOptions(default_classifier_path(), detector=default_detector_path()))
    closed = {model.path.name for model in closed_models}
    assert closed == {default_classifier_path().name, default_detector_path().name}


@pytest.mark.parametrize(
    ("task", "options", "passed"),
    [
        (Classifier, ClassifierOptions("m.tflite", tta=("identity",)), {"apply_preprocessing", "tta", "batch"}),
        (Detector, DetectorOptions("m.tflite", max_det=7), {"confidence_threshold", "iou_threshold", "max_det", "class_agnostic"}),
        (
            LesionPipeline,
            PipelineOptions("m.tflite", max_lesions=2),
            {"crop_margin", "max_lesions", "min_confidence", "cam", "refer_threshold", "unsure_confidence",
             "unsure_evidence", "context"},
        ),
    ],
)  # fmt: skip
def test_create_passes_each_option_its_constructor_takes_by_name_and_no_other(task, options, passed):
    kwargs = keyword_options(task, options)
    assert set(kwargs) == passed
    assert all(kwargs[name] is getattr(options, name) for name in passed)


def test_keyword_options_skips_a_field_the_constructor_takes_only_by_position():
    def build(model_path: str, *, delegate: str = "cpu") -> None: ...

    assert keyword_options(build, DetectorOptions("m.tflite", delegate="auto")) == {"delegate": "auto"}
