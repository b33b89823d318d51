"""Classifier: the panda on Google's real models, edgeskin-style specs, and the tensor contract with fakes."""

from __future__ import annotations

import numpy as np
import pytest

from edgeskin.errors import ConfigError, ImageError, ModelError
from edgeskin.runtime.interpreter import TensorInfo
from edgeskin.runtime.spec import ModelSpec, read_labels, sha256_file
from edgeskin.tasks.classifier import Classifier, ClassifierOptions, softmax

GOOGLE_MODELS = ("mobilenet_v2_1.0_224_quant.tflite", "tf2_mobilenet_v2_1.0_224_ptq.tflite")


@pytest.fixture(params=GOOGLE_MODELS)
def google_model(request, shared_file):
    return shared_file(f"weights/tflite/{request.param}")


@pytest.fixture
def imagenet_labels(shared_file):
    return shared_file("weights/tflite/imagenet_labels.txt")


@pytest.fixture
def panda(shared_file):
    from edgeskin.image import read_image

    return read_image(shared_file("data/non_lesion/panda.jpg"))


# -- real models --------------------------------------------------------------------------------------------


@pytest.mark.shared
def test_panda_is_a_giant_panda_on_both_google_models(google_model, imagenet_labels, panda):
    with Classifier.from_model(google_model, imagenet_labels, threads=1) as classifier:
        result = classifier.classify(panda)
        timings = classifier.last_timings_ms
    assert result.label.split(",")[0] == "giant panda"
    top = result.top_k(3)
    assert top[0][1] > 0.5
    assert abs(float(result.probabilities.sum()) - 1.0) < 1e-5
    assert set(timings) == {"preprocess_ms", "invoke_ms", "postprocess_ms"}
    assert all(v >= 0 for v in timings.values()) and timings["invoke_ms"] > 0


@pytest.mark.shared
def test_an_edgeskin_style_spec_on_the_same_model_gives_the_same_answer(tmp_path, shared_file, imagenet_labels, panda):
    import shutil

    model = shutil.copy(shared_file(f"weights/tflite/{GOOGLE_MODELS[0]}"), tmp_path / "mnv2.tflite")
    spec = ModelSpec.from_dict(
        {
            "name": "mnv2",
            "task": "classification",
            "sha256": sha256_file(model),
            "input": {"size": [224, 224], "mean": 127.5, "std": 127.5},
            "labels": list(read_labels(imagenet_labels)),
            "outputs": {"probabilities": "MobilenetV2/Predictions/Softmax"},
        }
    )
    spec.save(tmp_path / "mnv2.json")
    with Classifier.from_model(model) as with_spec, Classifier.from_model(model, imagenet_labels) as third_party:
        np.testing.assert_array_equal(
            with_spec.classify(panda).probabilities, third_party.classify(panda).probabilities
        )


@pytest.mark.shared
def test_mean_and_std_overrides_reach_the_model(google_model, imagenet_labels, panda):
    from edgeskin.core.geometry import resize_to_input

    with Classifier.from_model(google_model, imagenet_labels, mean=0.0, std=255.0) as classifier:
        assert classifier.spec.input.std == (255.0,) * 3
        fed = classifier.model.input.dequantize(classifier.preprocess(panda))[0]
        info = classifier.model.input
    resized, _ = resize_to_input(panda, (224, 224), "stretch")
    highest = (255 - info.zero_point) * info.scale  # uint8 with zero point 128 reaches 127/128, not 1
    expected = np.minimum(resized / 255.0, highest)  # [0, 1], not the default [-1, 1]
    np.testing.assert_allclose(fed, expected, atol=info.scale / 2 + 1e-6)


@pytest.mark.shared
def test_a_detection_spec_is_refused_by_the_classifier(tmp_path, shared_file):
    import shutil

    model = shutil.copy(shared_file(f"weights/tflite/{GOOGLE_MODELS[0]}"), tmp_path / "det.tflite")
    detection = {
        "name": "det", "task": "detection", "input": {"size": [224, 224]}, "labels": ["lesion"],
        "outputs": {"predictions": "x"}, "layout": "yolo", "boxes": "xywh_normalized",
    }  # fmt: skip
    ModelSpec.from_dict(detection).save(tmp_path / "det.json")
    with pytest.raises(ModelError, match="this is a detection model .*; classification was asked"):
        Classifier.from_model(model)


# -- options ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"spec": "m.json", "labels": "labels.txt"}, "either a model spec or a labels file"),
        ({"mean": 127.5}, "mean/std are for third-party models"),
        ({"std": [1, 1, 1]}, "mean/std are for third-party models"),
        ({"delegate": "gpu"}, "delegate must be one of cpu, edgetpu, auto"),
    ],
)
def test_wrong_option_combinations_fail_when_built(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ClassifierOptions("m.tflite", **kwargs)


# -- the tensor contract, with a fake model ----------------------------------------------------------------------


class FakeModel:
    """A TFLiteModel look-alike returning fixed outputs and recording what it was fed."""

    delegate = "cpu"

    def __init__(self, input_info: TensorInfo, outputs: dict[str, np.ndarray]):
        self.input = input_info
        self.inputs = (input_info,)
        self._outputs = outputs
        self.fed: list[np.ndarray] = []
        self.invoke_ms = 0.0
        self.closed = False

    def run(self, x, outputs=None, raw=False):
        self.fed.append(np.asarray(x))
        self.invoke_ms = 1.5
        names = list(self._outputs) if outputs is None else list(outputs)
        return {name: self._outputs[name].copy() for name in names}

    def output(self, name):
        value = self._outputs[name]
        return TensorInfo(name, value.shape, np.dtype(np.float32), 0.0, 0, 0)

    def close(self):
        self.closed = True


INT8_INPUT = TensorInfo("image", (1, 4, 4, 3), np.dtype(np.int8), 1.0, -128, 0, scales=(1.0,), zero_points=(-128,))
UINT8_INPUT = TensorInfo(
    "input", (1, 4, 4, 3), np.dtype(np.uint8), 1 / 128, 128, 0, scales=(1 / 128,), zero_points=(128,)
)
FLOAT_INPUT = TensorInfo("input", (1, 4, 4, 3), np.dtype(np.float32), 0.0, 0, 0)


def _spec(**changes) -> ModelSpec:
    data = {
        "name": "fake",
        "task": "classification",
        "input": {"size": [4, 4]},
        "labels": ["a", "b", "c"],
        "outputs": {"probabilities": "probs"},
    }
    data.update(changes)
    return ModelSpec.from_dict(data)


def _classifier(spec=None, input_info=INT8_INPUT, probs=(0.2, 0.3, 0.5), features=None) -> Classifier:
    outputs = {"probs": np.array([probs], np.float32)}
    if features is not None:
        outputs["features"] = features
    return Classifier(FakeModel(input_info, outputs), spec or _spec())


IMAGE = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3) * 5


def test_probabilities_are_used_as_they_are_and_renormalised():
    result = _classifier(probs=(0.25, 0.25, 0.49609375)).classify(IMAGE)  # a quantized softmax sums to ~1
    np.testing.assert_allclose(result.probabilities, np.array([0.25, 0.25, 0.49609375]) / 0.99609375, rtol=1e-6)
    assert result.label == "c" and result.top_k(2) == [
        ("c", pytest.approx(0.498, abs=1e-3)),
        ("a", pytest.approx(0.251, abs=1e-3)),
    ]


def test_logits_go_through_a_softmax():
    logits = (1.0, 2.0, 3.0)
    result = _classifier(_spec(outputs_are="logits"), probs=logits).classify(IMAGE)
    np.testing.assert_allclose(result.probabilities, softmax(np.array(logits)), rtol=1e-6)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_calibration_temperature_is_applied(temperature):
    p = np.array([0.2, 0.3, 0.5])
    calibrated = _classifier(_spec(calibration={"temperature": temperature}), probs=tuple(p)).classify(IMAGE)
    expected = np.exp(np.log(p) / temperature)
    np.testing.assert_allclose(calibrated.probabilities, expected / expected.sum(), rtol=1e-5)
    logits = np.array([1.0, 2.0, 3.0])
    scaled = _classifier(_spec(outputs_are="logits", calibration={"temperature": temperature}), probs=tuple(logits))
    np.testing.assert_allclose(scaled.classify(IMAGE).probabilities, softmax(logits / temperature), rtol=1e-5)


def test_logits_declared_as_probabilities_are_flagged_once(caplog):
    classifier = _classifier(probs=(-2.0, 1.0, 3.0))
    for _ in range(2):
        classifier.classify(IMAGE)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and '"outputs_are": "logits"' in warnings[0]


def test_all_zero_probabilities_become_uniform_rather_than_nan():
    result = _classifier(probs=(0.0, 0.0, 0.0)).classify(IMAGE)
    np.testing.assert_allclose(result.probabilities, [1 / 3] * 3)


@pytest.mark.parametrize(
    "input_info, spec_input, expected",
    [
        # edgeskin models: mean 0, std 1, int8 scale 1 zero point -128 → q = pixel - 128 (the integer fast path)
        (INT8_INPUT, {"size": [4, 4]}, IMAGE.astype(np.int16) - 128),
        # third-party uint8: (pixel - 127.5) / 127.5 quantized with scale 1/128, zero point 128
        (UINT8_INPUT, {"size": [4, 4], "mean": 127.5, "std": 127.5}, np.clip(np.floor((IMAGE - 127.5) / 127.5 * 128 + 0.5) + 128, 0, 255)),
        (FLOAT_INPUT, {"size": [4, 4], "mean": [10, 20, 30], "std": [2, 4, 8]}, (IMAGE - np.array([10, 20, 30])) / np.array([2, 4, 8])),
        (INT8_INPUT, {"size": [4, 4], "color_order": "BGR"}, IMAGE[..., ::-1].astype(np.int16) - 128),
    ],
    ids=["int8-shift", "uint8-third-party", "float", "bgr"],
)  # fmt: skip
def test_the_input_is_normalised_then_quantized_with_the_tensor_parameters(input_info, spec_input, expected):
    classifier = _classifier(_spec(input=spec_input), input_info=input_info)
    classifier.classify(IMAGE)
    fed = classifier.model.fed[0]
    assert fed.dtype == input_info.dtype and fed.shape == (1, 4, 4, 3)
    np.testing.assert_allclose(fed[0].astype(np.float64), expected, atol=1e-5)


def test_the_integer_fast_path_equals_the_general_path():
    classifier = _classifier()
    assert classifier._encoder.integer_shift == -128
    image = np.random.default_rng(0).integers(0, 256, (4, 4, 3)).astype(np.uint8)
    fast = classifier.preprocess(image)
    classifier._encoder.integer_shift = None
    np.testing.assert_array_equal(classifier.preprocess(image), fast)


def test_the_image_is_resized_to_the_spec_size():
    classifier = _classifier()
    classifier.classify(np.full((480, 640, 3), 200, np.uint8))
    assert classifier.model.fed[0].shape == (1, 4, 4, 3) and (classifier.model.fed[0] == 72).all()


def test_the_spec_preprocessing_profile_is_applied(monkeypatch):
    from edgeskin.core import preprocess

    calls = []
    spec = _spec(preprocessing={"name": "colour", "steps": [{"op": "shades_of_gray", "power": 6}]})
    original = preprocess.PreprocessingProfile.apply
    monkeypatch.setattr(
        preprocess.PreprocessingProfile, "apply", lambda self, image: calls.append(image.shape) or original(self, image)
    )
    _classifier(spec).classify(np.full((40, 30, 3), 90, np.uint8))
    assert calls == [(4, 4, 3)]  # on the model-input-sized image


def test_features_are_returned_when_the_spec_names_them():
    features = np.random.default_rng(0).normal(size=(1, 2, 2, 5)).astype(np.float32)
    spec = _spec(outputs={"probabilities": "probs", "features": "features"})
    result, got = _classifier(spec, features=features).classify_with_features(IMAGE)
    assert got.shape == (2, 2, 5)
    np.testing.assert_array_equal(got, features[0])
    assert _classifier().classify_with_features(IMAGE)[1] is None


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((4, 4), np.uint8),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((4, 4, 3), np.float32),
        np.zeros((0, 4, 3), np.uint8),
        [[0, 0, 0]],
    ],
    ids=["gray", "rgba", "float", "empty", "list"],
)
def test_images_that_are_not_rgb_uint8_are_refused(image):
    with pytest.raises(ImageError, match="RGB uint8|non-empty"):
        _classifier().classify(image)


def test_timings_add_up_and_close_releases_the_model():
    with _classifier() as classifier:
        classifier.classify(IMAGE)
        assert classifier.last_timings_ms["invoke_ms"] == 1.5
    assert classifier.model.closed


def test_a_detection_spec_cannot_make_a_classifier():
    detection = ModelSpec.from_dict(
        {"name": "d", "task": "detection", "input": {"size": [4, 4]}, "labels": ["lesion"],
         "outputs": {"predictions": "p"}, "layout": "yolo", "boxes": "xywh_pixels"}
    )  # fmt: skip
    with pytest.raises(ConfigError, match="needs a classification spec"):
        Classifier(FakeModel(INT8_INPUT, {}), detection)
