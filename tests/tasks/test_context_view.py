"""The context view (issue 29 part 3): its trigger, its combination, one extra invoke only when triggered, JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgeskin.core.context import ContextRule, combine_views, context_measures
from edgeskin.errors import ConfigError
from edgeskin.labels import DX_CLASSES
from edgeskin.tasks.pipeline import DEFAULT_CONTEXT, LesionPipeline, PipelineOptions
from tests.tasks.test_pipeline import PROBS, FakeClassifier, FakeDetector

MEL = DX_CLASSES.index("mel")
CONTEXT_PROBS = np.array([0.02, 0.03, 0.05, 0.05, 0.60, 0.20, 0.05], np.float32)


# -- the measures and the trigger ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("box", "crop_box", "frame_size", "input_size", "upsampling", "area"),
    [
        ([10, 10, 50, 50], [0, 0, 64, 64], (256, 256), (192, 192), 3.0, 1600 / 65536),
        ([0, 0, 256, 256], [0, 0, 256, 256], (256, 256), (192, 192), 0.75, 1.0),
        ([-20, -20, 300, 300], [0, 0, 256, 256], (256, 256), (192, 192), 0.75, 1.0),  # clipped to the frame
        ([100, 50, 700, 550], [0, 0, 768, 576], (768, 576), (192, 192), 1 / 3, 600 * 500 / (768 * 576)),
        ([0, 0, 48, 24], [0, 0, 96, 48], (400, 300), (192, 192), 4.0, 48 * 24 / 120000),  # the shorter side counts
    ],
)
def test_the_measures(box, crop_box, frame_size, input_size, upsampling, area):
    got = context_measures(box, crop_box, frame_size, input_size)
    assert got == pytest.approx((upsampling, area))


@pytest.mark.parametrize(
    ("rule", "upsampling", "area", "fires"),
    [
        (ContextRule(upsampling=1.5), 1.49, 0.99, False),
        (ContextRule(upsampling=1.5), 1.51, 0.01, True),
        (ContextRule(upsampling=1.5), 1.5, 0.5, False),  # strictly over the limit
        (ContextRule(area=0.5), 3.0, 0.49, False),
        (ContextRule(area=0.5), 0.3, 0.51, True),
        (ContextRule(upsampling=2.0, area=0.7), 2.5, 0.1, True),
        (ContextRule(upsampling=2.0, area=0.7), 1.0, 0.8, True),
        (ContextRule(upsampling=2.0, area=0.7), 1.9, 0.69, False),
        (ContextRule(), 100.0, 1.0, False),  # both measures off: never
    ],
)
def test_the_trigger(rule, upsampling, area, fires):
    assert rule.triggers(upsampling, area) is fires


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"upsampling": -1.0}, "upsampling"),
        ({"area": math.nan}, "area"),
        ({"area": True}, "area"),
        ({"context": "box"}, "context"),
        ({"combination": "median"}, "combination"),
    ],
)
def test_a_wrong_rule_fails_when_built(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ContextRule(**kwargs)


def test_measures_refuse_an_empty_crop():
    with pytest.raises(ValueError, match="non-empty"):
        context_measures([0, 0, 1, 1], [5, 5, 5, 9], (10, 10), (192, 192))


# -- the combination -----------------------------------------------------------------------------------------
def test_the_combinations():
    p, q = PROBS.astype(np.float64), CONTEXT_PROBS.astype(np.float64)
    np.testing.assert_allclose(combine_views(p, q, "mean", MEL), (p + q) / 2, atol=1e-6)
    geometric = np.sqrt(p * q)
    np.testing.assert_allclose(combine_views(p, q, "logit", MEL), geometric / geometric.sum(), atol=1e-6)
    # The mean of two softmaxes' logits: softmax((a + b) / 2).
    a, b = np.log(p) + 3.0, np.log(q) - 1.0
    mean_logits = np.exp((a + b) / 2) / np.exp((a + b) / 2).sum()
    np.testing.assert_allclose(combine_views(p, q, "logit", MEL), mean_logits, atol=1e-6)
    np.testing.assert_allclose(combine_views(p, q, "max_mel", MEL), q, atol=1e-6)  # the context's mel is higher
    np.testing.assert_allclose(combine_views(q, p, "max_mel", MEL), q, atol=1e-6)
    zeros = np.array([0, 0, 0, 0, 1, 0, 0], np.float32)
    assert np.isfinite(combine_views(zeros, q, "logit", MEL)).all()
    with pytest.raises(ValueError, match="two"):
        combine_views(p, q[:3], "mean", MEL)


# -- in the pipeline -----------------------------------------------------------------------------------------
def _pipeline(box, rule, frame_side=256, **kwargs):
    classifier = FakeClassifier(probs=np.stack([PROBS, CONTEXT_PROBS]))
    pipeline = LesionPipeline(classifier, FakeDetector([box], [0.9]), cam=False, context=rule, **kwargs)
    return pipeline, classifier, np.full((frame_side, frame_side, 3), 120, np.uint8)


@pytest.mark.parametrize(
    ("box", "rule", "ran"),
    [
        ([100, 100, 120, 120], ContextRule(upsampling=0.1, combination="mean"), True),  # 16-px input: 0.6x crop
        ([100, 100, 120, 120], ContextRule(upsampling=1.0), False),
        ([10, 10, 250, 250], ContextRule(area=0.5), True),
        ([100, 100, 140, 140], ContextRule(area=0.5), False),
        ([10, 10, 250, 250], None, False),
    ],
)
def test_the_extra_view_runs_only_when_triggered(box, rule, ran):
    pipeline, classifier, frame = _pipeline(box, rule)
    result = pipeline(frame)
    (lesion,) = result.lesions
    assert lesion.context_view is ran
    assert len(classifier.crops) == (2 if ran else 1)  # the crop, and the context only when triggered
    if ran:
        assert classifier.crops[1].shape == frame.shape  # the frame context: the whole frame
        np.testing.assert_allclose(lesion.dx.probabilities, (PROBS + CONTEXT_PROBS) / 2, atol=1e-6)
    else:
        np.testing.assert_allclose(lesion.dx.probabilities, PROBS, atol=1e-6)


def test_the_grown_context_is_the_box_grown_by_its_size():
    rule = ContextRule(upsampling=0.1, context="grown", combination="max_mel")
    pipeline, classifier, frame = _pipeline([100, 100, 120, 120], rule)
    (lesion,) = pipeline(frame).lesions
    assert classifier.crops[1].shape[:2] == (60, 60)  # 20-px box + 20 px on each side
    np.testing.assert_allclose(lesion.dx.probabilities, CONTEXT_PROBS, atol=1e-6)
    assert lesion.malignant == pytest.approx(float(CONTEXT_PROBS[[0, 1, 4]].sum()), abs=1e-6)


def test_one_frame_context_serves_every_triggered_lesion():
    classifier = FakeClassifier(probs=np.stack([PROBS, PROBS, CONTEXT_PROBS]))
    detector = FakeDetector([[10, 10, 60, 60], [150, 150, 200, 200]], [0.9, 0.8])
    pipeline = LesionPipeline(classifier, detector, cam=False, context=ContextRule(upsampling=0.1))
    result = pipeline(np.full((256, 256, 3), 120, np.uint8))
    assert [lesion.context_view for lesion in result.lesions] == [True, True]
    assert len(classifier.crops) == 3  # two crops, one context
    for lesion in result.lesions:
        np.testing.assert_allclose(lesion.dx.probabilities, (PROBS + CONTEXT_PROBS) / 2, atol=1e-6)


def test_no_context_view_without_a_detector():
    classifier = FakeClassifier()
    pipeline = LesionPipeline(classifier, None, cam=False, context=ContextRule(upsampling=0.0, area=0.0))
    (lesion,) = pipeline(np.full((64, 64, 3), 120, np.uint8)).lesions
    assert not lesion.context_view and len(classifier.crops) == 1


def test_the_flag_round_trips_through_json():
    pipeline, _, frame = _pipeline([10, 10, 250, 250], ContextRule(area=0.5))
    data = json.loads(pipeline(frame).to_json())
    assert data["lesions"][0]["context_view"] is True
    pipeline, _, frame = _pipeline([100, 100, 140, 140], ContextRule(area=0.5))
    assert json.loads(pipeline(frame).to_json())["lesions"][0]["context_view"] is False


def test_options_carry_the_rule_and_refuse_anything_else(tmp_path):
    assert PipelineOptions(tmp_path / "c.tflite").context == DEFAULT_CONTEXT
    assert PipelineOptions(tmp_path / "c.tflite", context=None).context is None
    with pytest.raises(ConfigError, match="ContextRule"):
        PipelineOptions(tmp_path / "c.tflite", context={"upsampling": 1.5})


# -- with the shipped classifier: one single-view invoke --------------------------------------------------------
def test_the_context_is_one_single_view_invoke_with_the_shipped_classifier():
    from edgeskin.models import default_classifier_path
    from edgeskin.tasks.classifier import Classifier, ClassifierOptions

    try:
        path = default_classifier_path()
    except Exception as exc:  # noqa: BLE001 - NoDefaultModelError: nothing shipped in this checkout
        pytest.skip(f"no shipped classifier ({exc})")
    frame = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    small_box = [100, 100, 140, 140]  # crop 52 px -> 192 px: upsampled 3.7x
    with Classifier.create(ClassifierOptions(path, num_threads=1)) as classifier:
        views = len(classifier.views)
        for rule, batches in ((ContextRule(upsampling=2.0), (views, 1)), (ContextRule(upsampling=5.0), (views,))):
            pipeline = LesionPipeline(classifier, FakeDetector([small_box], [0.9]), cam=False, context=rule)
            (lesion,) = pipeline(frame).lesions
            assert classifier.last_invoke_batches == batches
            assert lesion.context_view is (len(batches) == 2)
            assert set(classifier.last_timings_ms) == {"preprocess_ms", "invoke_ms", "postprocess_ms"}
        crop = frame[lesion.crop_box[1] : lesion.crop_box[3], lesion.crop_box[0] : lesion.crop_box[2]]
        expected = combine_views(
            classifier.classify(crop).probabilities,
            classifier.classify_many([frame], views=("identity",))[0][0].probabilities,
            "mean",
            classifier.labels.index("mel"),
        )
        pipeline.context = ContextRule(upsampling=2.0)
        np.testing.assert_allclose(pipeline(frame).lesions[0].dx.probabilities, expected, atol=1e-6)


def test_without_the_input_size_only_the_area_triggers():
    assert math.isnan(context_measures([0, 0, 8, 8], [0, 0, 10, 10], (100, 100), None)[0])
    assert not ContextRule(upsampling=0.0).triggers(*context_measures([0, 0, 8, 8], [0, 0, 10, 10], (100, 100), None))
    assert ContextRule(area=0.5).triggers(*context_measures([0, 0, 90, 90], [0, 0, 100, 100], (100, 100), None))
