"""A real int8 model with a signature def and two named outputs, built with TensorFlow for the test.

Marked ``train``: it needs the [train] extra (TensorFlow) only to build the model; running it uses the
light runtime like everything else.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeskin.errors import SpecError
from edgeskin.runtime.interpreter import TFLiteModel
from edgeskin.runtime.spec import ModelSpec, load_model, sha256_file

pytestmark = pytest.mark.train

RNG = np.random.default_rng(0)
CONV = RNG.normal(0, 0.5, (3, 3, 3, 8)).astype(np.float32)
DENSE = RNG.normal(0, 0.5, (8, 3)).astype(np.float32)


def _reference(x: np.ndarray) -> dict[str, np.ndarray]:
    tf = pytest.importorskip("tensorflow")
    features = tf.nn.relu(tf.nn.conv2d(x, CONV, 2, "SAME"))
    probs = tf.nn.softmax(tf.matmul(tf.reduce_mean(features, axis=[1, 2]), DENSE))
    return {"features": features.numpy(), "probs": probs.numpy()}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """[1, 32, 32, 3] int8 → {"features": [1, 16, 16, 8], "probs": [1, 3]}, full-integer quantized."""
    tf = pytest.importorskip("tensorflow", reason="needs the [train] extra (TensorFlow) to build the test model")
    folder = tmp_path_factory.mktemp("tiny")

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32, name="image")])
    def serve(image):
        features = tf.nn.relu(tf.nn.conv2d(image, CONV, 2, "SAME"))
        logits = tf.matmul(tf.reduce_mean(features, axis=[1, 2]), DENSE)
        return {"probs": tf.nn.softmax(logits), "features": features}

    module = tf.Module()
    module.serve = serve
    tf.saved_model.save(module, str(folder / "saved"), signatures={"serving_default": serve.get_concrete_function()})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder / "saved"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(1)
    converter.representative_dataset = lambda: (
        [rng.uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)] for _ in range(16)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    path = folder / "tiny.tflite"
    path.write_bytes(converter.convert())
    return path


def _spec(path, **changes) -> ModelSpec:
    data = {
        "name": "tiny",
        "task": "classification",
        "model_file": path.name,
        "sha256": sha256_file(path),
        "input": {"size": [32, 32], "mean": 127.5, "std": 127.5},
        "labels": ["a", "b", "c"],
        "outputs": {"probabilities": "probs", "features": "features"},
        "cam": {"weights": DENSE.tolist(), "bias": [0.0, 0.0, 0.0]},
    }
    data.update(changes)
    return ModelSpec.from_dict(data)


def test_named_outputs_come_from_the_signature_and_match_tensorflow(tiny_model):
    x = np.random.default_rng(2).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    with TFLiteModel.from_file(tiny_model) as model:
        assert model.signature_key == "serving_default"
        assert [i.name for i in model.inputs] == ["image"]
        assert sorted(model.output_names) == ["features", "probs"]
        assert all(o.dtype == np.int8 for o in model.outputs)
        out = model.run(x)
    expected = _reference(x)
    assert out["features"].shape == (1, 16, 16, 8) and out["probs"].shape == (1, 3)
    features_step = model.output("features").scale
    np.testing.assert_allclose(out["features"], expected["features"], atol=3 * features_step + 0.02)
    np.testing.assert_allclose(out["probs"], expected["probs"], atol=0.03)


def test_classifier_returns_the_feature_map_of_a_spec_with_features(tiny_model):
    from edgeskin.tasks.classifier import Classifier, ClassifierOptions

    image = np.random.default_rng(3).integers(0, 256, (50, 40, 3)).astype(np.uint8)
    with Classifier.create(ClassifierOptions(tiny_model, spec=_spec(tiny_model))) as classifier:
        result, features = classifier.classify_with_features(image)
    assert result.labels == ("a", "b", "c") and abs(float(result.probabilities.sum()) - 1) < 1e-5
    assert features.shape == (16, 16, 8) and features.dtype == np.float32


def test_a_spec_must_use_signature_names_not_tensor_names(tiny_model):
    spec = _spec(tiny_model, outputs={"probabilities": "PartitionedCall:1"})
    with pytest.raises(
        SpecError, match=r"'PartitionedCall:1' is not an output of the model; its outputs are \['features', 'probs'\]"
    ):
        load_model(tiny_model, spec)


def test_cam_weights_must_match_the_feature_channels(tiny_model):
    spec = _spec(tiny_model, cam={"weights": [[0.0, 0.0, 0.0]] * 5})
    with pytest.raises(SpecError, match="cam.weights has 5 rows but the feature map has 8 channels"):
        load_model(tiny_model, spec)
