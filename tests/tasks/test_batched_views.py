"""Batched test-time views: one invoke per frame gives what one invoke per view gives.

The PH2 check runs the shipped models (whatever ``edgeskin/models`` holds now) on the detector's 50 PH2
validation images, once with every view of every lesion in one batch and once with one invoke per view.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from edgeskin.core.views import VIEWS, align_features, align_stacked, apply_view, view_into
from edgeskin.errors import ConfigError, ModelError
from edgeskin.image import read_image
from edgeskin.models import default_classifier_path, default_detector_path
from edgeskin.runtime.interpreter import TensorInfo, TFLiteModel
from edgeskin.tasks.classifier import Classifier, ClassifierOptions
from edgeskin.tasks.detector import Detector, DetectorOptions
from edgeskin.tasks.pipeline import LesionPipeline

REPO_ROOT = Path(__file__).resolve().parents[2]
PH2_SPLIT = REPO_ROOT / "training" / "runs" / "detector" / "ph2_split.json"


@pytest.fixture(scope="module")
def shipped_classifier_path() -> Path:
    try:
        return default_classifier_path()
    except Exception as exc:  # noqa: BLE001 - NoDefaultModelError: nothing shipped in this checkout
        pytest.skip(f"no shipped classifier ({exc})")


def _classifier(path: Path, **options) -> Classifier:
    return Classifier.create(ClassifierOptions(path, num_threads=2, **options))


# -- views on stacks and into slots ----------------------------------------------------------------------


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.float32])
def test_view_into_writes_what_apply_view_returns(view: str, dtype) -> None:
    image = np.random.default_rng(0).integers(-100, 100, (6, 6, 3)).astype(dtype)
    out = np.zeros_like(image)
    view_into(view, image, out)
    np.testing.assert_array_equal(out, apply_view(view, image[None])[0])


@pytest.mark.parametrize("view", VIEWS)
def test_align_stacked_aligns_each_map_of_a_stack(view: str) -> None:
    maps = np.random.default_rng(1).integers(-9, 9, (3, 5, 5, 4))
    stacked = align_stacked(view, maps)
    for i in range(3):
        np.testing.assert_array_equal(stacked[i], align_features(view, maps[i]))


def test_dequantize_mean_equals_the_mean_of_the_dequantized_terms() -> None:
    info = TensorInfo("x", (1, 3), np.dtype(np.int8), 0.05, -7, 0, scales=(0.05,), zero_points=(-7,))
    terms = np.random.default_rng(2).integers(-128, 128, (4, 3)).astype(np.int8)
    expected = np.mean([info.dequantize(t) for t in terms], axis=0)
    got = info.dequantize_mean(terms.sum(axis=0, dtype=np.int32), 4)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        info.dequantize_mean(terms.sum(axis=0, dtype=np.int32), 4, dtype=np.float32), expected, atol=1e-5
    )


# -- the runtime's batched siblings ----------------------------------------------------------------------


def test_a_batched_sibling_is_opened_once_per_size_and_closed_with_its_model(shipped_classifier_path: Path) -> None:
    model = TFLiteModel.from_file(shipped_classifier_path, num_threads=1)
    assert model.batch_size == 1 and model.batched(1) is model
    four = model.batched(4)
    assert four is model.batched(4)
    assert four.batch_size == 4 and all(out.shape[0] == 4 for out in four.outputs)
    with pytest.raises(ConfigError):
        model.batched(0)
    for size in range(2, 2 + TFLiteModel.MAX_BATCHED + 1):  # beyond the cap the oldest sibling is closed
        model.batched(size)
    assert len(model._batched) == TFLiteModel.MAX_BATCHED
    with pytest.raises(ModelError, match="closed"):
        four.interpreter  # noqa: B018
    model.close()
    assert not model._batched


def test_another_input_shape_runs_the_same_weights_at_that_size(shipped_classifier_path: Path) -> None:
    """with_input_shape: the pooled classifier at a larger square input; its feature grid grows, its logits do not."""
    model = TFLiteModel.from_file(shipped_classifier_path, num_threads=1)
    height = model.input.shape[1]
    bigger = model.with_input_shape((2, height + 32, height + 32, 3))
    try:
        assert bigger.input.shape == (2, height + 32, height + 32, 3)
        logits, features = bigger.output("logits"), bigger.output("features")
        assert logits.shape == (2, model.output("logits").shape[1])
        assert features.shape[0] == 2 and features.shape[1] == model.output("features").shape[1] + 1
        x = np.random.default_rng(0).integers(0, 256, bigger.input.shape).astype(np.float32)
        out = bigger.run(x)
        assert out["logits"].shape == logits.shape and not np.array_equal(out["logits"][0], out["logits"][1])
        assert not model._batched  # not cached: the caller closes it
    finally:
        bigger.close()
        model.close()
    with pytest.raises(ModelError, match="cannot be resized"):
        TFLiteModel.from_file(shipped_classifier_path, num_threads=1).with_input_shape((1, 7))


# -- the classifier ------------------------------------------------------------------------------------


def test_every_view_of_every_image_goes_into_one_invoke(shipped_classifier_path: Path) -> None:
    batched, looped = _classifier(shipped_classifier_path), _classifier(shipped_classifier_path, batch=False)
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (90 + 20 * i, 120, 3), dtype=np.uint8) for i in range(3)]
    with batched, looped:
        views = len(batched.views)
        results = batched.classify_many(images, want_features=True)
        assert batched.last_invoke_batches == (3 * views,)
        expected = looped.classify_many(images, want_features=True)
        assert looped.last_invoke_batches == (1,) * (3 * views)
        for (dx, features), (dx_loop, features_loop) in zip(results, expected, strict=True):
            np.testing.assert_allclose(dx.probabilities, dx_loop.probabilities, rtol=0, atol=1e-6)
            np.testing.assert_array_equal(features, features_loop)
        one, one_features = batched.classify_with_features(images[1])
        assert batched.last_invoke_batches == (views,)
        np.testing.assert_array_equal(one.probabilities, results[1][0].probabilities)
        np.testing.assert_array_equal(one_features, results[1][1])
        assert set(batched.last_timings_ms) == {"preprocess_ms", "invoke_ms", "postprocess_ms"}


def test_images_beyond_the_batch_size_go_into_further_invokes(shipped_classifier_path: Path) -> None:
    images = [np.full((64, 64, 3), 40 * i, np.uint8) for i in range(5)]
    with _classifier(shipped_classifier_path) as classifier:
        classifier.batch_size = 2
        views = len(classifier.views)
        assert len(classifier.classify_many(images)) == 5
        assert classifier.last_invoke_batches == (2 * views, 2 * views, views)


def test_a_model_whose_batch_cannot_grow_falls_back_to_one_invoke_per_view_and_says_so_once(
    shipped_classifier_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    image = np.random.default_rng(4).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    with _classifier(shipped_classifier_path) as fixed, _classifier(shipped_classifier_path, batch=False) as looped:

        def refuse(batch: int) -> TFLiteModel:
            raise ModelError(f"third-party.tflite: its input batch dimension cannot be resized to {batch}")

        fixed.model.batched = refuse  # type: ignore[method-assign]
        with caplog.at_level(logging.WARNING, logger="edgeskin.tasks.classifier"):
            first = fixed.classify(image)
            second = fixed.classify(image)
        assert fixed.last_invoke_batches == (1,) * len(fixed.views)
        warnings = [r for r in caplog.records if "one invoke" in r.getMessage()]
        assert len(warnings) == 1 and "cannot be resized" in warnings[0].getMessage()
        expected = looped.classify(image)
        np.testing.assert_array_equal(first.probabilities, expected.probabilities)
        np.testing.assert_array_equal(second.probabilities, expected.probabilities)


# -- the PH2 check: the shipped pipeline, batched against the per-view loop ------------------------------------


def _reference(
    classifier: Classifier, explainer, crop: np.ndarray, class_index: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and CAM the plain way: one invoke per view, each output dequantized, maps aligned one by
    one, then averaged (independent of the runtime's summed-as-stored reduction). The CAM explains
    ``class_index`` (None: the top class)."""
    from edgeskin.calibration import apply_top_label

    x = classifier.preprocess(crop)
    names = [classifier.spec.outputs["probabilities"], classifier.spec.outputs["features"]]
    logits, maps = [], []
    for view in classifier.views:
        out = classifier.model.run(apply_view(view, x), outputs=names)
        logits.append(out[names[0]].reshape(-1).astype(np.float64))
        maps.append(align_features(view, out[names[1]][0]).astype(np.float64))
    probabilities = classifier._probabilities(np.mean(logits, axis=0))
    if classifier._top_label is not None:
        probabilities = apply_top_label(probabilities, classifier._top_label)
    if class_index is None:
        class_index = int(np.argmax(probabilities))
    cam = explainer.explain(np.mean(maps, axis=0).astype(np.float32), class_index)
    return probabilities, cam


@pytest.mark.shared
def test_batched_views_and_the_per_view_loop_agree_on_the_ph2_validation_images(
    shared_file, shipped_classifier_path: Path
) -> None:
    images_dir = shared_file("data/ph2/images")
    names = json.loads(PH2_SPLIT.read_text())["val"]
    assert len(names) == 50

    def pipeline(batch: bool) -> LesionPipeline:
        classifier = _classifier(shipped_classifier_path, batch=batch)
        detector = Detector.create(DetectorOptions(default_detector_path(), num_threads=2, max_det=3))
        return LesionPipeline(
            classifier, detector, context=None
        )  # the crops' views alone (the context view: its own tests)

    compared = 0
    with pipeline(True) as batched, pipeline(False) as looped:
        assert len(batched.classifier.views) > 1, "the shipped classifier is expected to use test-time views"
        for name in names:
            path = images_dir / (name if Path(name).suffix else f"{name}.jpg")
            frame = read_image(path)
            got, expected = batched(frame), looped(frame)
            assert len(got.lesions) == len(expected.lesions), name
            if got.lesions:
                lesions = len(got.lesions)
                assert batched.classifier.last_invoke_batches == (lesions * len(batched.classifier.views),), name
            for lesion, reference in zip(got.lesions, expected.lesions, strict=True):
                np.testing.assert_array_equal(lesion.box, reference.box, err_msg=name)
                np.testing.assert_array_equal(lesion.crop_box, reference.crop_box, err_msg=name)
                np.testing.assert_allclose(
                    lesion.dx.probabilities, reference.dx.probabilities, rtol=0, atol=1e-6, err_msg=name
                )
                assert lesion.refer == reference.refer, name
                np.testing.assert_allclose(lesion.cam, reference.cam, rtol=0, atol=1e-6, err_msg=name)
                x0, y0, x1, y1 = (int(v) for v in lesion.crop_box)
                # Two classes can tie exactly (equal summed INT8 logits, e.g. IMD171's bkl and mel at 0.405): the
                # runtime explains the first; the reference's float sums may break the tie the other way. The
                # runtime's class must be a top class of the reference, and its CAM that class's map.
                top = int(np.argmax(lesion.dx.probabilities))
                probabilities, cam = _reference(looped.classifier, looped.explainer, frame[y0:y1, x0:x1], top)
                np.testing.assert_allclose(lesion.dx.probabilities, probabilities, rtol=0, atol=1e-6, err_msg=name)
                assert probabilities[top] >= probabilities.max() - 1e-6, name
                np.testing.assert_allclose(lesion.cam, cam, rtol=0, atol=1e-5, err_msg=name)
                compared += 1
    assert compared >= 40  # the detector reports a lesion on nearly every PH2 image
