"""LesionPipeline: structure, timings, no-lesion message, max_lesions, refer flag, CAM; with fakes, tiny real
INT8 models, and (once they land) the shipped models."""

from __future__ import annotations

import numpy as np
import pytest

from edgeskin.core.boxes import box_iou, mask_to_box
from edgeskin.errors import ConfigError, ImageTooSmallError, NoDefaultModelError
from edgeskin.labels import DX_CLASSES, GROUPS
from edgeskin.results import Classification, Detections, PipelineResult
from edgeskin.runtime.spec import ModelSpec
from edgeskin.tasks.cam import CamExplainer
from edgeskin.tasks.pipeline import (
    NO_LESION_FOUND,
    TIMING_STAGES,
    LesionPipeline,
    PipelineOptions,
    refer_decision,
)

RNG = np.random.default_rng(5)
WEIGHTS = RNG.normal(0, 1, (8, 7)).astype(np.float32)
FEATURES = RNG.normal(0, 1, (3, 3, 8)).astype(np.float32)
#                   akiec bcc   bkl   df    mel   nv    vasc
PROBS = np.array([0.05, 0.05, 0.10, 0.02, 0.20, 0.55, 0.03], np.float32)  # malignant 0.30, top nv


def _spec(threshold: float | None = 0.25, cam: bool = True) -> ModelSpec:
    data = {
        "name": "fake-cls",
        "task": "classification",
        "input": {"size": [16, 16]},
        "labels": list(DX_CLASSES),
        "outputs": {"probabilities": "probs", "features": "features"} if cam else {"probabilities": "probs"},
    }
    if cam:
        data["cam"] = {"weights": WEIGHTS.tolist()}
    if threshold is not None:
        data["triage"] = {"malignant_threshold": threshold}
    return ModelSpec.from_dict(data)


class FakeClassifier:
    """Classifier look-alike: fixed probabilities (or one set per call), records the crops it saw."""

    def __init__(self, spec: ModelSpec | None = None, probs=PROBS):
        self.spec = spec or _spec()
        self.labels = self.spec.labels
        self._probs = [np.asarray(p, np.float32) for p in (probs if np.ndim(probs) == 2 else [probs])]
        self.crops: list[np.ndarray] = []
        self.with_features = 0
        self.closed = False

    def classify(self, image):
        self.crops.append(image)
        return Classification(self._probs[(len(self.crops) - 1) % len(self._probs)], self.labels)

    def classify_with_features(self, image):
        self.with_features += 1
        return self.classify(image), FEATURES

    def close(self):
        self.closed = True


class FakeDetector:
    def __init__(self, boxes=(), scores=()):
        self.detections = Detections(np.asarray(boxes, np.float32).reshape(-1, 4), scores, np.zeros(len(scores)))
        self.frames: list[np.ndarray] = []
        self.closed = False

    def detect(self, frame):
        self.frames.append(frame)
        return self.detections

    def close(self):
        self.closed = True


FRAME = np.full((240, 320, 3), 180, np.uint8)
BOXES = [[40, 40, 100, 120], [200, 60, 260, 100], [10, 150, 60, 200], [150, 150, 170, 170], [280, 10, 300, 30]]
SCORES = [0.6, 0.9, 0.3, 0.8, 0.5]


def test_a_lesion_carries_box_probabilities_groups_malignant_refer_and_cam():
    classifier = FakeClassifier()
    pipeline = LesionPipeline(classifier, FakeDetector(BOXES[:1], [0.7]))
    result = pipeline(FRAME, source="frame-1")
    assert isinstance(result, PipelineResult) and result.found and result.source == "frame-1"
    assert result.image_size == (320, 240) and result.messages == ()
    (lesion,) = result.lesions
    np.testing.assert_array_equal(lesion.box, BOXES[0])
    assert lesion.score == pytest.approx(0.7)
    assert lesion.label == "nv" and lesion.dx.labels == DX_CLASSES
    np.testing.assert_allclose(lesion.group.probabilities, [0.20, 0.05, 0.05, 0.70], atol=1e-6)
    assert lesion.group.labels == GROUPS and lesion.group.label == "Benign"
    assert lesion.malignant == pytest.approx(0.30) and lesion.refer  # 0.30 >= 0.25
    # The classifier saw exactly the crop window, which holds the box.
    x0, y0, x1, y1 = lesion.crop_box
    assert classifier.crops[0].shape == (y1 - y0, x1 - x0, 3)
    assert x0 <= 40 and y0 <= 40 and x1 >= 100 and y1 >= 120
    np.testing.assert_allclose(lesion.cam, CamExplainer(WEIGHTS).explain(FEATURES, DX_CLASSES.index("nv")))
    assert lesion.to_dict()["refer"] is True


def test_timings_cover_every_stage():
    result = LesionPipeline(FakeClassifier(), FakeDetector(BOXES, SCORES))(FRAME)
    assert tuple(result.timings_ms) == TIMING_STAGES
    assert all(v >= 0 for v in result.timings_ms.values())
    parts = sum(v for k, v in result.timings_ms.items() if k != "total")
    assert result.timings_ms["total"] >= parts - 1e-6


def test_no_box_means_no_lesion_and_says_so():
    classifier = FakeClassifier()
    result = LesionPipeline(classifier, FakeDetector())(FRAME)
    assert result.lesions == () and not result.found
    assert result.messages == (NO_LESION_FOUND,) == ("no lesion found",)
    assert classifier.crops == []  # no diagnosis at all
    assert tuple(result.timings_ms) == TIMING_STAGES


@pytest.mark.parametrize("max_lesions, expected", [(3, [0.9, 0.8, 0.6]), (1, [0.9]), (10, [0.9, 0.8, 0.6, 0.5, 0.3])])
def test_at_most_max_lesions_are_analysed_best_first(max_lesions, expected):
    classifier = FakeClassifier()
    result = LesionPipeline(classifier, FakeDetector(BOXES, SCORES), max_lesions=max_lesions)(FRAME)
    assert [lesion.score for lesion in result.lesions] == pytest.approx(expected)
    assert len(classifier.crops) == len(expected)


def test_the_default_is_three_lesions_and_min_confidence_filters():
    assert PipelineOptions("m.tflite").max_lesions == 3
    result = LesionPipeline(FakeClassifier(), FakeDetector(BOXES, SCORES), min_confidence=0.55)(FRAME)
    assert [lesion.score for lesion in result.lesions] == pytest.approx([0.9, 0.8, 0.6])
    none_left = LesionPipeline(FakeClassifier(), FakeDetector(BOXES, SCORES), min_confidence=0.95)(FRAME)
    assert none_left.messages == (NO_LESION_FOUND,)


@pytest.mark.parametrize(
    "probs, spec_threshold, override, refer",
    [
        (PROBS, 0.25, None, True),  # malignant 0.30 >= 0.25 (spec)
        (PROBS, 0.35, None, False),  # 0.30 < 0.35
        (PROBS, 0.35, 0.30, True),  # the override wins; the boundary counts as refer
        (PROBS, None, None, False),  # no threshold: top group Benign (0.70)
        ([0.1, 0.1, 0.05, 0.05, 0.4, 0.25, 0.05], None, None, True),  # no threshold: top group Melanoma
    ],
    ids=["spec-refer", "spec-no", "override", "argmax-benign", "argmax-melanoma"],
)
def test_the_refer_flag(probs, spec_threshold, override, refer):
    pipeline = LesionPipeline(
        FakeClassifier(_spec(spec_threshold), probs), FakeDetector(BOXES[:1], [0.9]), refer_threshold=override
    )
    (lesion,) = pipeline(FRAME).lesions
    assert lesion.refer is refer
    assert (
        bool(refer_decision(np.asarray(probs), DX_CLASSES, override if override is not None else spec_threshold))
        is refer
    )


def test_the_cam_can_be_turned_off_and_is_off_without_spec_weights():
    classifier = FakeClassifier()
    (lesion,) = LesionPipeline(classifier, FakeDetector(BOXES[:1], [0.9]), cam=False)(FRAME).lesions
    assert lesion.cam is None and classifier.with_features == 0
    no_weights = FakeClassifier(_spec(cam=False))
    (lesion,) = LesionPipeline(no_weights, FakeDetector(BOXES[:1], [0.9]))(FRAME).lesions
    assert lesion.cam is None


def test_without_a_detector_the_whole_frame_is_one_lesion():
    classifier = FakeClassifier()
    (lesion,) = LesionPipeline(classifier, None)(FRAME).lesions
    np.testing.assert_array_equal(lesion.box, [0, 0, 320, 240])
    np.testing.assert_array_equal(lesion.crop_box, [0, 0, 320, 240])
    assert lesion.score == 1.0 and classifier.crops[0].shape == FRAME.shape


def test_frames_are_validated_first():
    detector = FakeDetector(BOXES[:1], [0.9])
    LesionPipeline(FakeClassifier(), detector)(np.full((240, 320), 90, np.uint8))  # grey: converted to RGB
    assert detector.frames[0].shape == (240, 320, 3)
    with pytest.raises(ImageTooSmallError, match="at least 32x32"):
        LesionPipeline(FakeClassifier(), detector)(np.zeros((10, 10, 3), np.uint8))


def test_a_degenerate_box_is_skipped_not_fatal():
    result = LesionPipeline(FakeClassifier(), FakeDetector([[400, 10, 500, 50], BOXES[0]], [0.9, 0.8]))(FRAME)
    assert [lesion.score for lesion in result.lesions] == pytest.approx([0.8])


@pytest.mark.parametrize(
    "labels",
    [
        ("cat", "dog"),
        ("akiec", "bcc", "bkl", "df", "mel", "nv"),
        ("ak", "scc", "akiec", "bcc", "bkl", "df", "mel", "nv"),
    ],
)
def test_a_classifier_that_is_not_a_dx_model_is_refused(labels):
    other = FakeClassifier()
    other.labels = labels
    with pytest.raises(ConfigError, match="8 ISIC 2019 diagnoses"):
        LesionPipeline(other, None)


def test_closing_the_pipeline_closes_both_models():
    classifier, detector = FakeClassifier(), FakeDetector()
    with LesionPipeline(classifier, detector):
        pass
    assert classifier.closed and detector.closed


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_lesions": 0}, "max_lesions"),
        ({"crop_margin": -0.1}, "crop_margin"),
        ({"min_confidence": 2.0}, "min_confidence"),
        ({"refer_threshold": -1.0}, "refer_threshold"),
        ({"delegate": "tpu"}, "delegate"),
        ({"detector": "classical", "detector_spec": "d.json"}, "detector_spec"),
    ],
)
def test_wrong_options_fail_when_built(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PipelineOptions("m.tflite", **kwargs)


def test_from_defaults_says_when_no_default_model_is_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESKIN_MODELS_DIR", str(tmp_path))
    with pytest.raises(NoDefaultModelError, match="^no default model is installed: the classifier edgeskin-mnv2-cls"):
        LesionPipeline.from_defaults()
    with pytest.raises(ConfigError, match="unknown pipeline option"):
        LesionPipeline.from_defaults(classifier_path="x.tflite", detector=None, colour="red")


# -- tiny real INT8 models ----------------------------------------------------------------------------------


@pytest.mark.train
def test_the_pipeline_runs_real_int8_models_end_to_end(monkeypatch, tmp_path):
    from tiny_models import TRIAGE_THRESHOLD, frame_with_dark_square, tiny_classifier, tiny_detector

    frame = frame_with_dark_square(64, 128, square=(64, 32, 96, 64))
    options = PipelineOptions(tiny_classifier(), detector=tiny_detector(), num_threads=1)
    with LesionPipeline.create(options) as pipeline:
        result = pipeline(frame)
    (lesion,) = result.lesions
    np.testing.assert_allclose(lesion.box, [56, 24, 104, 64], atol=1.0)
    assert lesion.cam is not None and lesion.cam.shape == (4, 4) and 0 <= lesion.cam.min() <= lesion.cam.max() <= 1
    assert pipeline.refer_threshold == TRIAGE_THRESHOLD
    assert lesion.refer is (lesion.malignant >= TRIAGE_THRESHOLD)
    assert float(lesion.dx.probabilities.sum()) == pytest.approx(1.0, abs=1e-5)
    # from_defaults with the models dir pointing at the tiny models: only the classifier default is needed.
    monkeypatch.setenv("EDGESKIN_MODELS_DIR", str(tmp_path))
    for suffix in (".tflite", ".json"):
        (tmp_path / f"edgeskin-mnv2-cls{suffix}").write_bytes(tiny_classifier().with_suffix(suffix).read_bytes())
    with LesionPipeline.from_defaults(detector="classical", threads=1) as pipeline:
        assert pipeline.detector.name == "classical"
        assert pipeline(frame).found


# -- the shipped models (skip until they are installed) ---------------------------------------------------------


@pytest.mark.shared
def test_the_shipped_models_find_the_ph2_lesion(shared_file):
    from tiny_models import shipped_model_paths

    from edgeskin.image import read_image

    shipped_model_paths()
    frame = read_image(shared_file("data/ph2/images/IMD002.jpg"))
    truth = mask_to_box(read_image(shared_file("data/ph2/masks/IMD002_segmentation.png"))[..., 0] > 127)
    with LesionPipeline.from_defaults(threads=2) as pipeline:
        result = pipeline(frame)
    assert result.found, result.messages
    assert box_iou(result.lesions[0].box[np.newaxis], truth[np.newaxis])[0, 0] > 0.5
    assert result.lesions[0].cam is not None


@pytest.mark.shared
def test_the_shipped_models_find_no_lesion_in_the_panda(shared_file):
    from tiny_models import shipped_model_paths

    from edgeskin.image import read_image

    shipped_model_paths()
    with LesionPipeline.from_defaults(threads=2) as pipeline:
        result = pipeline(read_image(shared_file("data/non_lesion/panda.jpg")))
    # No lesion and no diagnosis. The shipped detector's scores on the panda are all 0.00 (no box at 0.01): below
    # its unsure band (0.13 to the presence threshold 0.44), so "no lesion found".
    assert result.lesions == () and result.messages == (NO_LESION_FOUND,)
