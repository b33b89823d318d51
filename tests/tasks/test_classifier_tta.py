"""Test-time augmentation: the views, their inverses, the averaged decision and its exact CAM."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgeskin.core.views import VIEWS, align_features, apply_view, check_views
from edgeskin.errors import ConfigError, SpecError
from edgeskin.runtime.interpreter import TensorInfo
from edgeskin.runtime.spec import ModelSpec
from edgeskin.tasks.classifier import Classifier, softmax

SQUARE = arrays(np.float32, st.tuples(st.integers(1, 6), st.just(0), st.just(3)).map(lambda s: (s[0], s[0], 3)))


@given(SQUARE)
def test_every_view_is_undone_by_its_inverse(a):
    a = np.arange(a.size, dtype=np.float32).reshape(a.shape)
    for view in VIEWS:
        np.testing.assert_array_equal(align_features(view, apply_view(view, a[None])[0]), a)


def test_the_eight_views_are_the_eight_distinct_symmetries_of_the_square():
    a = np.arange(5 * 5 * 2).reshape(5, 5, 2)
    assert len({apply_view(v, a[None]).tobytes() for v in VIEWS}) == 8
    np.testing.assert_array_equal(apply_view("rot90", a[None])[0], np.rot90(a))
    np.testing.assert_array_equal(apply_view("hflip", a[None])[0], a[:, ::-1])


@pytest.mark.parametrize(
    ("views", "size", "message"),
    [
        ("hflip", None, "expected a list of names"),
        (["hflip", "spin"], None, "unknown test-time augmentation view"),
        (["hflip", "hflip"], None, "each view at most once"),
        (["rot90"], (4, 6), "need a square input"),
    ],
)
def test_bad_view_lists_are_refused(views, size, message):
    with pytest.raises(ConfigError, match=message):
        check_views(views, size)


def _spec(**changes) -> ModelSpec:
    data = {
        "name": "fake",
        "task": "classification",
        "input": {"size": [4, 4]},
        "labels": ["a", "b", "c"],
        "outputs": {"probabilities": "logits", "features": "features"},
        "outputs_are": "logits",
    }
    data.update(changes)
    return ModelSpec.from_dict(data)


def test_the_spec_carries_its_views_and_refuses_bad_ones():
    spec = _spec(tta=["identity", "hflip"])
    assert spec.tta == ("identity", "hflip")
    assert ModelSpec.from_dict(spec.to_dict()).tta == spec.tta
    assert "tta" not in _spec().to_dict()
    with pytest.raises(SpecError, match="tta: .*square"):
        _spec(input={"size": [4, 6]}, tta=["rot90"])
    with pytest.raises(SpecError, match="tta: .*string"):
        _spec(tta="hflip")


class CornerModel:
    """Features = the input itself; logits = the top-left feature vector (so they depend on orientation)."""

    delegate = "cpu"

    def __init__(self):
        self.input = TensorInfo("image", (1, 4, 4, 3), np.dtype(np.float32), 0.0, 0, 0)
        self.inputs = (self.input,)
        self.fed: list[np.ndarray] = []
        self.invoke_ms = 0.0

    def run(self, x, outputs=None, raw=False):
        x = np.asarray(x, np.float32)
        self.fed.append(x)
        self.invoke_ms = 1.0
        out = {"logits": x[:, 0, 0, :] / 100.0, "features": x.copy()}
        return {name: out[name] for name in (outputs or out)}

    def output(self, name):
        shape = (1, 3) if name == "logits" else (1, 4, 4, 3)
        return TensorInfo(name, shape, np.dtype(np.float32), 0.0, 0, 0)

    def close(self):
        pass


IMAGE = (np.arange(4 * 4 * 3).reshape(4, 4, 3) * 5).astype(np.uint8)


@pytest.mark.parametrize("views", [("identity", "hflip", "vflip", "rot180"), VIEWS, ("rot90",)])
def test_logits_are_averaged_over_exactly_the_views_and_features_are_aligned_back(views):
    model = CornerModel()
    classifier = Classifier(model, _spec(), tta=views)
    result, features = classifier.classify_with_features(IMAGE)
    x = IMAGE.astype(np.float32)[None]
    assert len(model.fed) == len(views)
    for fed, view in zip(model.fed, views, strict=True):
        np.testing.assert_array_equal(fed, apply_view(view, x))
    expected = np.mean([apply_view(v, x)[0, 0, 0] / 100.0 for v in views], axis=0)
    np.testing.assert_allclose(result.probabilities, softmax(expected), rtol=1e-6)
    np.testing.assert_allclose(features, x[0], rtol=1e-6)  # every view turned back to the original
    assert classifier.last_timings_ms["invoke_ms"] == pytest.approx(len(views))


def test_the_spec_views_are_the_default_and_an_empty_override_means_one_view():
    model = CornerModel()
    assert Classifier(model, _spec(tta=["identity", "rot180"])).views == ("identity", "rot180")
    assert Classifier(model, _spec(tta=["identity", "rot180"]), tta=()).views == ("identity",)
    assert Classifier(model, _spec()).views == ("identity",)
    with pytest.raises(ConfigError, match="unknown"):
        Classifier(model, _spec(), tta=["sideways"])


@pytest.fixture
def ham_image(shared_file):
    from edgeskin.image import read_image

    return read_image(shared_file("data/ham10000/images/ISIC_0024306.jpg"))


@pytest.mark.shared
def test_the_shipped_classifier_cam_explains_the_averaged_decision_exactly(ham_image):
    """GAP of the averaged aligned INT8 feature map through the Dense head gives the averaged logits."""
    from edgeskin.models import default_classifier_path

    views = ("identity", "hflip", "vflip", "rot180", "rot90")
    with Classifier.from_model(default_classifier_path(), threads=2, tta=views) as classifier:
        assert classifier.views == views
        result, features = classifier.classify_with_features(ham_image)
        weights, bias = classifier.spec.cam_arrays()
        logits = features.mean(axis=(0, 1)) @ weights + bias
        singles = []
        x = classifier.preprocess(ham_image)
        for view in classifier.views:
            out = classifier.model.run(apply_view(view, x))
            singles.append(out[classifier.spec.outputs["probabilities"]].reshape(-1))
    mean_logits = np.mean(singles, axis=0)
    expected = softmax(mean_logits, classifier.spec.temperature)
    if "top_label" in classifier.spec.calibration:
        from edgeskin.calibration import apply_top_label

        expected = apply_top_label(expected, classifier.spec.calibration["top_label"])
    np.testing.assert_allclose(result.probabilities, expected, rtol=1e-5, atol=1e-7)
    # Only the INT8 rounding of the feature map and of the logits separate the two (a few hundredths).
    assert np.abs(logits - mean_logits).max() < 0.1
    assert logits.argmax() == mean_logits.argmax()


def test_the_pipeline_hands_its_views_to_the_classifier():
    from edgeskin.tasks.pipeline import LesionPipeline

    with LesionPipeline.from_defaults(detector=None, tta=(), threads=1) as pipeline:
        assert pipeline.classifier.views == ("identity",)
    with LesionPipeline.from_defaults(detector=None, tta=["identity", "rot180"], threads=1) as pipeline:
        assert pipeline.classifier.views == ("identity", "rot180")


def test_the_classifier_applies_the_spec_top_label_map_after_the_temperature():
    from edgeskin.calibration import apply_top_label

    mapping = {"x": [0.0, 1.0], "y": [0.55, 0.6]}
    plain = Classifier(CornerModel(), _spec(calibration={"temperature": 0.5})).classify(IMAGE)
    mapped = Classifier(CornerModel(), _spec(calibration={"temperature": 0.5, "top_label": mapping})).classify(IMAGE)
    np.testing.assert_allclose(mapped.probabilities, apply_top_label(plain.probabilities, mapping), rtol=1e-6)
    assert mapped.label == plain.label
    # The map acts in proportion to the lead over the runner-up, in full from TOP_LABEL_FULL_LEAD on.
    from edgeskin.calibration import TOP_LABEL_FULL_LEAD

    c, r = np.sort(plain.probabilities.astype(np.float64))[::-1][:2]
    target = max(0.55 + 0.05 * c, 0.5 * (r / (1 - c + r) + c))
    expected = c + min(1.0, (c - r) / TOP_LABEL_FULL_LEAD) * (target - c)
    assert mapped.probabilities.max() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.float32, np.int64])
@pytest.mark.parametrize("shape", [(1, 5, 5, 3), (1, 4, 4, 1), (1, 3, 3, 4)])
def test_the_fast_opencv_views_equal_the_plain_array_views(dtype, shape):
    from edgeskin.core.views import _VIEWS

    a = (np.random.default_rng(0).random(shape) * 100).astype(dtype)
    for view in VIEWS:
        expected = np.ascontiguousarray(_VIEWS[view][0](a[0])[None])
        got = apply_view(view, a)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
