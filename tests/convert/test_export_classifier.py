"""The classifier export path on a tiny real Keras model: two named INT8 outputs the runtime can load."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the export needs TensorFlow (the [train] extra)")

pytestmark = [pytest.mark.train, pytest.mark.shared]


SIZE = 64


@pytest.fixture(scope="module")
def exported(tmp_path_factory, shared_dir):
    """ImageNet-initialised MobileNetV2 0.35 (so its features and logits carry signal) on real HAM10000 images."""
    import keras

    from convert.export_classifier import convert_int8, deployable, save_signature_model
    from edgeskin.core.geometry import resize_to_input
    from edgeskin.image import read_image
    from training.classifier_model import MOBILENETV2_WEIGHTS, build_classifier

    keras.utils.set_random_seed(0)  # the Dense head is randomly initialised
    weights = shared_dir / "weights" / "keras" / MOBILENETV2_WEIGHTS[0.35]
    model = build_classifier(alpha=0.35, input_size=SIZE, weights=str(weights), dropout=0.0)
    images = sorted((shared_dir / "data" / "ham10000" / "images").glob("ISIC_*.jpg"))[:24]
    representative = np.stack([resize_to_input(read_image(p), (SIZE, SIZE), "stretch")[0] for p in images]).astype(
        np.float32
    )
    folder = tmp_path_factory.mktemp("export")
    deploy = deployable(model)
    save_signature_model(deploy, SIZE, str(folder / "saved"))
    path = folder / "tiny.tflite"
    path.write_bytes(convert_int8(str(folder / "saved"), representative))
    return model, deploy, path, representative


def test_the_int8_model_has_integer_io_and_the_two_named_outputs(exported):
    from edgeskin.runtime.interpreter import TFLiteModel

    _, _, path, _ = exported
    with TFLiteModel.from_file(path) as tflite:
        assert tflite.input.dtype == np.int8
        names = {info.name: info for info in tflite.outputs}
        assert set(names) == {"logits", "features"}
        assert all(info.dtype == np.int8 for info in names.values())
        assert tuple(names["logits"].shape) == (1, 7)
        assert tuple(names["features"].shape)[-1] == 1280


def test_the_runtime_classifier_follows_the_float_model(exported, tmp_path):
    """Through the edgeskin spec + Classifier, INT8 logits track the Keras logits of the same pixels."""
    from edgeskin.labels import DX_CLASSES
    from edgeskin.runtime.spec import ModelSpec, sha256_file
    from edgeskin.tasks.classifier import Classifier

    model, deploy, path, representative = exported
    kernel, bias = model.get_layer("logits").get_weights()
    spec = ModelSpec.from_dict({
        "name": "tiny", "task": "classification", "model_file": path.name, "sha256": sha256_file(path),
        "input": {"size": [SIZE, SIZE], "color_order": "RGB", "resize": "stretch", "mean": [0, 0, 0], "std": [1, 1, 1]},
        "preprocessing": {"name": "none", "steps": []}, "labels": list(DX_CLASSES),
        "outputs": {"probabilities": "logits", "features": "features"}, "outputs_are": "logits",
        "cam": {"weights": kernel.tolist(), "bias": bias.tolist()},
    })  # fmt: skip
    spec.save(path.with_suffix(".json"))
    expected = np.asarray(deploy.predict(representative, verbose=0)["logits"])
    with Classifier.from_model(path) as classifier:
        assert classifier.model.input.scale == pytest.approx(1.0, abs=1e-4)  # scaling lives in the graph
        got = np.stack(
            [classifier.model.run(classifier.preprocess(x.astype(np.uint8)))["logits"][0] for x in representative]
        )
    # The INT8 logits follow the float ones image by image: strongly correlated, and much closer to their
    # own image's float logits than to another image's (a wrong input scale or order fails both).
    correlation = np.corrcoef(got.ravel(), expected.ravel())[0, 1]
    own = np.abs(got - expected).mean()
    other = np.abs(got - np.roll(expected, 1, axis=0)).mean()
    assert correlation >= 0.9, correlation
    assert own < 0.5 * other, (own, other)
