"""Bad arrays into the Python API: the pipeline validates every frame (typed ImageError with a clear message,
or a correct conversion where the array is a legitimate image); the Classifier and Detector tasks accept RGB
uint8 (H, W, 3) only and refuse anything else with an ImageError naming the shape and dtype."""

from __future__ import annotations

import numpy as np
import pytest

from edgeskin.errors import ImageError, ImageTooLargeError, ImageTooSmallError
from edgeskin.labels import DX_CLASSES
from edgeskin.results import Classification
from edgeskin.tasks.detector import ClassicalDetector
from edgeskin.tasks.pipeline import NO_LESION_FOUND, LesionPipeline

RNG = np.random.default_rng(11)
SKIN = np.full((64, 80, 3), (225, 190, 170), np.uint8)

# case id → (array, error type, message fragment)
REFUSED = {
    "NaN float32": (np.full((40, 40, 3), np.nan, np.float32), ImageError, "NaN or infinity"),
    "one NaN pixel": (np.where(np.arange(40 * 40 * 3).reshape(40, 40, 3) == 77, np.nan, 0.5), ImageError, "NaN"),
    "+inf float64": (np.full((40, 40, 3), np.inf), ImageError, "NaN or infinity"),
    "-inf float32": (np.full((40, 40, 3), -np.inf, np.float32), ImageError, "NaN or infinity"),
    "negative floats": (np.full((40, 40, 3), -0.5, np.float32), ImageError, r"in \[0, 1\] or \[0, 255\]"),
    "floats above 255": (np.full((40, 40, 3), 300.0), ImageError, r"got values in \[300, 300\]"),
    "int32 above 255": (np.full((40, 40, 3), 256, np.int32), ImageError, r"int32 pixels in \[0, 255\]"),
    "negative int16": (np.full((40, 40, 3), -1, np.int16), ImageError, r"int16 pixels in \[0, 255\]"),
    "bool dtype": (np.zeros((40, 40, 3), bool), ImageError, "got bool"),
    "complex dtype": (np.zeros((40, 40, 3), np.complex64), ImageError, "got complex64"),
    "object dtype": (np.zeros((40, 40, 3), object), ImageError, "got object"),
    "string dtype": (np.full((40, 40, 3), "a"), ImageError, "got <U1"),
    "2 channels": (np.zeros((40, 40, 2), np.uint8), ImageError, "expected 1, 3 or 4 channels"),
    "5 channels": (np.zeros((40, 40, 5), np.uint8), ImageError, r"got 5 in shape \(40, 40, 5\)"),
    "channels first (3, H, W)": (np.zeros((3, 40, 40), np.uint8), ImageError, "got 40 in shape"),
    "1-D": (np.zeros(4800, np.uint8), ImageError, r"expected an \(H, W\) or \(H, W, C\) image array"),
    "4-D batch": (np.zeros((1, 40, 40, 3), np.uint8), ImageError, r"got shape \(1, 40, 40, 3\)"),
    "0-D scalar": (np.array(7, np.uint8), ImageError, r"got shape \(\)"),
    "empty (0, 0, 3)": (np.zeros((0, 0, 3), np.uint8), ImageError, "non-empty"),
    "empty (0, 40, 3)": (np.zeros((0, 40, 3), np.uint8), ImageError, "non-empty"),
    "empty 1-D": (np.array([], np.uint8), ImageError, "got shape"),
    "too small 10x10": (np.zeros((10, 10, 3), np.uint8), ImageTooSmallError, "at least 32x32"),
    "too small 1x1 gray": (np.zeros((1, 1), np.uint8), ImageTooSmallError, "1x1 pixels"),
    "too large 8000x8000": (
        np.broadcast_to(np.uint8(128), (8000, 8000, 3)),
        ImageTooLargeError,
        "8000x8000 = 64,000,000 pixels",
    ),
    "None": (None, ImageError, "expected a numpy array, got NoneType"),
    "nested list": ([[1, 2], [3, 4]], ImageError, "got list"),
    "bytes": (b"\xff\xd8\xff", ImageError, "got bytes"),
}

# case id → (array, the RGB uint8 frame the pipeline must see)
LEGITIMATE = {
    "gray (H, W)": (np.full((40, 48), 77, np.uint8), np.full((40, 48, 3), 77, np.uint8)),
    "gray (H, W, 1)": (np.full((40, 48, 1), 77, np.uint8), np.full((40, 48, 3), 77, np.uint8)),
    "RGBA": (np.dstack([SKIN, np.zeros(SKIN.shape[:2], np.uint8)]), SKIN),
    "uint16": (SKIN.astype(np.uint16) * 257, SKIN),
    "float32 in [0, 1]": (SKIN.astype(np.float32) / 255.0, SKIN),
    "float64 in [0, 255]": (SKIN.astype(np.float64), SKIN),
    "int64 in [0, 255]": (SKIN.astype(np.int64), SKIN),
    "non-contiguous view": (np.repeat(SKIN, 2, axis=1)[:, ::2], SKIN),
    "Fortran order": (np.asfortranarray(SKIN), SKIN),
    "read-only": (np.frombuffer(SKIN.tobytes(), np.uint8).reshape(SKIN.shape), SKIN),
}


class RecordingClassifier:
    """Classifier look-alike that records the crops it is given."""

    labels = DX_CLASSES
    spec = None

    def __init__(self):
        self.seen: list[np.ndarray] = []

    def classify(self, image):
        self.seen.append(image)
        return Classification(np.full(7, 1 / 7, np.float32), self.labels)

    def close(self):
        pass


@pytest.fixture(params=["whole frame", "classical"])
def fake_pipeline(request):
    """A pipeline on a recording classifier (no model file needed) and no detector or the classical one."""
    detector = None if request.param == "whole frame" else ClassicalDetector()
    return LesionPipeline(RecordingClassifier(), detector, cam=False)


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_the_pipeline_refuses_bad_arrays_with_a_typed_error(fake_pipeline, case):
    array, error, match = REFUSED[case]
    with pytest.raises(error, match=match) as info:
        fake_pipeline(array)
    message = str(info.value)
    assert "\n" not in message and len(message) < 200
    assert fake_pipeline.classifier.seen == []  # refused before anything ran


@pytest.mark.parametrize("case", LEGITIMATE, ids=list(LEGITIMATE))
def test_the_pipeline_converts_legitimate_arrays(case):
    array, expected = LEGITIMATE[case]
    pipeline = LesionPipeline(RecordingClassifier(), None, cam=False)
    result = pipeline(array)
    (crop,) = pipeline.classifier.seen
    assert crop.dtype == np.uint8 and crop.shape == expected.shape and crop.flags.c_contiguous
    np.testing.assert_array_equal(crop, expected)
    assert result.image_size == (expected.shape[1], expected.shape[0]) and len(result.lesions) == 1


def test_the_input_array_is_not_modified():
    frame = RNG.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    copy = frame.copy()
    LesionPipeline(RecordingClassifier(), ClassicalDetector(), cam=False)(frame)
    np.testing.assert_array_equal(frame, copy)


def test_a_uniform_frame_has_no_lesion_with_the_classical_detector():
    result = LesionPipeline(RecordingClassifier(), ClassicalDetector(), cam=False)(np.full((64, 64, 3), 200, np.uint8))
    assert result.lesions == () and result.messages == (NO_LESION_FOUND,)


# -- the tasks themselves: RGB uint8 (H, W, 3) only --------------------------------------------------------------

TASK_REFUSED = {
    "gray (H, W)": np.zeros((40, 40), np.uint8),
    "RGBA": np.zeros((40, 40, 4), np.uint8),
    "uint16": np.zeros((40, 40, 3), np.uint16),
    "float32": np.zeros((40, 40, 3), np.float32),
    "NaN float32": np.full((40, 40, 3), np.nan, np.float32),
    "4-D batch": np.zeros((1, 40, 40, 3), np.uint8),
    "empty (0, 40, 3)": np.zeros((0, 40, 3), np.uint8),
    "list": [[0, 0, 0]],
}


def task_error_matches(error: ImageError) -> bool:
    message = str(error)
    return message.startswith("expected") and ("RGB uint8" in message or "non-empty" in message)


@pytest.mark.parametrize("case", TASK_REFUSED, ids=list(TASK_REFUSED))
def test_the_classical_detector_refuses_non_rgb_uint8(case):
    with pytest.raises(ImageError) as info:
        ClassicalDetector().detect(TASK_REFUSED[case])
    assert task_error_matches(info.value)


def test_the_classical_detector_refuses_a_tiny_frame_with_a_typed_error():
    with pytest.raises(ImageError):
        ClassicalDetector().detect(np.zeros((4, 4, 3), np.uint8))


@pytest.mark.train
@pytest.mark.parametrize("case", TASK_REFUSED, ids=list(TASK_REFUSED))
def test_the_model_tasks_refuse_non_rgb_uint8(tiny_task_models, case):
    classifier, detector = tiny_task_models
    for task in (classifier.classify, classifier.classify_with_features, detector.detect):
        with pytest.raises(ImageError) as info:
            task(TASK_REFUSED[case])
        assert task_error_matches(info.value)


@pytest.mark.train
def test_the_model_tasks_take_odd_but_valid_rgb_uint8(tiny_task_models):
    """Views, Fortran order, read-only memory and frames much smaller or larger than the model input."""
    classifier, detector = tiny_task_models
    for frame in (
        np.repeat(SKIN, 2, axis=1)[:, ::2],
        np.asfortranarray(SKIN),
        np.frombuffer(SKIN.tobytes(), np.uint8).reshape(SKIN.shape),
        np.full((1, 1, 3), 200, np.uint8),
        np.full((3, 1000, 3), 200, np.uint8),
        RNG.integers(0, 256, (1200, 1600, 3), dtype=np.uint8),
    ):
        probabilities = classifier.classify(frame).probabilities
        assert np.isfinite(probabilities).all() and abs(float(probabilities.sum()) - 1) < 1e-3
        detections = detector.detect(frame)
        assert np.isfinite(detections.xyxy).all()


@pytest.mark.train
def test_the_real_pipeline_refuses_and_converts_like_the_fake_one(tiny_models_dir, monkeypatch):
    monkeypatch.setenv("EDGESKIN_MODELS_DIR", str(tiny_models_dir))
    with LesionPipeline.from_defaults(threads=1) as pipeline:
        for array, error, match in REFUSED.values():
            with pytest.raises(error, match=match):
                pipeline(array)
        for case, (array, _) in LEGITIMATE.items():
            result = pipeline(array)
            assert result.image_size == (array.shape[1], array.shape[0]), case


@pytest.fixture(scope="module")
def tiny_task_models(tiny_models_dir):
    from edgeskin.models import CLASSIFIER_NAME, DETECTOR_NAME
    from edgeskin.tasks.classifier import Classifier
    from edgeskin.tasks.detector import Detector

    with (
        Classifier.from_model(tiny_models_dir / f"{CLASSIFIER_NAME}.tflite", threads=1) as classifier,
        Detector.from_model(tiny_models_dir / f"{DETECTOR_NAME}.tflite", threads=1) as detector,
    ):
        yield classifier, detector
