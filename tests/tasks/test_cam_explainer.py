"""CamExplainer: equal to a direct numpy CAM, resized maps, spec checks, and the real feature map of an INT8 model."""

from __future__ import annotations

import numpy as np
import pytest

from edgeskin.errors import ConfigError
from edgeskin.labels import DX_CLASSES
from edgeskin.runtime.spec import ModelSpec
from edgeskin.tasks.cam import CamExplainer

RNG = np.random.default_rng(3)
FEATURES = RNG.normal(0, 1, (6, 6, 16)).astype(np.float32)
WEIGHTS = RNG.normal(0, 1, (16, 7)).astype(np.float32)
BIAS = RNG.normal(0, 3, 7).astype(np.float32)


def _direct(features: np.ndarray, weights: np.ndarray, k: int, bias: float = 0.0) -> np.ndarray:
    """CAM written out by hand: sum over channels, + bias, ReLU, min-max to [0, 1]."""
    h, w, c = features.shape
    cam = np.zeros((h, w), np.float64)
    for channel in range(c):
        cam += features[:, :, channel].astype(np.float64) * float(weights[channel, k])
    cam = np.maximum(cam + bias, 0.0)
    return (cam - cam.min()) / (cam.max() - cam.min()) if cam.max() > cam.min() else np.zeros_like(cam)


@pytest.mark.parametrize("k", range(7))
def test_the_map_equals_a_direct_numpy_cam(k):
    explainer = CamExplainer(WEIGHTS, BIAS)
    cam = explainer.explain(FEATURES, k)
    assert cam.shape == (6, 6) and cam.dtype == np.float32
    np.testing.assert_allclose(cam, _direct(FEATURES, WEIGHTS, k), atol=1e-5)
    assert cam.min() == 0.0 and cam.max() == pytest.approx(1.0)


def test_the_bias_is_used_only_when_asked():
    k = int(np.argmax(np.abs(BIAS)))
    with_bias = CamExplainer(WEIGHTS, BIAS, include_bias=True).explain(FEATURES[np.newaxis], k)
    np.testing.assert_allclose(with_bias, _direct(FEATURES, WEIGHTS, k, float(BIAS[k])), atol=1e-5)
    assert not np.allclose(with_bias, CamExplainer(WEIGHTS, BIAS).explain(FEATURES, k))


def test_different_classes_give_different_maps():
    explainer = CamExplainer(WEIGHTS)
    assert not np.allclose(explainer.explain(FEATURES, 0), explainer.explain(FEATURES, 1))


def test_explain_to_size_resizes_within_zero_and_one():
    explainer = CamExplainer(WEIGHTS)
    big = explainer.explain_to_size(FEATURES, 2, (120, 90))
    assert big.shape == (120, 90) and big.min() >= 0.0 and big.max() <= 1.0
    assert np.corrcoef(big[10::20, 7::15].ravel(), explainer.explain(FEATURES, 2).ravel())[0, 1] > 0.9


def test_it_is_built_from_a_spec_with_cam_weights():
    spec = ModelSpec.from_dict(
        {"name": "c", "task": "classification", "input": {"size": [8, 8]}, "labels": list(DX_CLASSES),
         "outputs": {"probabilities": "probs", "features": "features"},
         "cam": {"weights": WEIGHTS.tolist(), "bias": BIAS.tolist()}}
    )  # fmt: skip
    explainer = CamExplainer.from_spec(spec)
    np.testing.assert_array_equal(explainer.weights, WEIGHTS)
    np.testing.assert_array_equal(explainer.bias, BIAS)
    assert explainer.num_classes == 7 and explainer.num_channels == 16


def test_a_spec_without_cam_weights_is_refused():
    spec = ModelSpec.from_dict(
        {
            "name": "c",
            "task": "classification",
            "input": {"size": [8, 8]},
            "labels": ["a", "b"],
            "outputs": {"probabilities": "probs"},
        }
    )
    with pytest.raises(ConfigError, match="cannot explain"):
        CamExplainer.from_spec(spec)


@pytest.mark.parametrize(
    "features, k, message",
    [
        (np.zeros((6, 6, 15), np.float32), 0, "weights"),
        (FEATURES, 7, "class_index"),
        (np.zeros((36, 16), np.float32), 0, "features"),
    ],
    ids=["channels", "class", "rank"],
)
def test_mismatched_inputs_are_refused(features, k, message):
    with pytest.raises(ValueError, match=message):
        CamExplainer(WEIGHTS).explain(features, k)


def test_malformed_weights_are_refused():
    with pytest.raises(ConfigError, match="weights"):
        CamExplainer(np.zeros(7))
    with pytest.raises(ConfigError, match="bias"):
        CamExplainer(WEIGHTS, np.zeros(6))


@pytest.mark.train
def test_the_map_of_a_real_int8_classifier_matches_its_dequantized_features():
    from tiny_models import DENSE, tiny_classifier

    from edgeskin.tasks.classifier import Classifier

    frame = np.random.default_rng(0).integers(0, 256, (48, 48, 3)).astype(np.uint8)
    with Classifier.from_model(tiny_classifier(), threads=1) as classifier:
        result, features = classifier.classify_with_features(frame)
        explainer = CamExplainer.from_classifier(classifier)
    assert features.shape == (4, 4, 8)
    k = int(np.argmax(result.probabilities))
    np.testing.assert_allclose(explainer.explain(features, k), _direct(features, DENSE, k), atol=1e-5)
