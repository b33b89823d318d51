"""ModelSpec validation and (de)serialisation, labels files, and load_model's checks against real models."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from edgeskin.errors import ChecksumMismatchError, ModelError, SpecError
from edgeskin.runtime.spec import (
    ModelSpec,
    load_model,
    load_spec,
    load_third_party_classifier,
    read_labels,
    sha256_file,
    spec_path_for,
)

VALID = {
    "format_version": 1,
    "name": "edgeskin-mnv2-cls",
    "task": "classification",
    "model_file": "edgeskin-mnv2-cls.tflite",
    "sha256": "0" * 64,
    "input": {"size": [224, 224], "color_order": "RGB", "resize": "stretch", "mean": [0, 0, 0], "std": [1, 1, 1]},
    "preprocessing": {"name": "colour", "steps": [{"op": "shades_of_gray", "power": 6}]},
    "labels": ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"],
    "outputs": {"probabilities": "probs", "features": "features"},
    "cam": {"weights": [[0.1] * 7, [0.2] * 7], "bias": [0.0] * 7},
    "calibration": {"temperature": 1.3},
    "triage": {"malignant_threshold": 0.3},
    "metrics": {"balanced_accuracy": 0.8},
    "provenance": {"data": "HAM10000"},
    "notes": "a free field, kept on save",
}

DETECTION = {
    "name": "edgeskin-yolo-det",
    "task": "detection",
    "input": {"size": [320, 320], "resize": "letterbox"},
    "labels": ["lesion"],
    "outputs": {"predictions": "output_0"},
    "layout": "yolo",
    "boxes": "xywh_normalized",
    "thresholds": {"confidence": 0.25, "iou": 0.45},
}


def _with(base: dict, path: str, value) -> dict:
    """A deep copy of ``base`` with the dotted ``path`` set to ``value`` (or deleted when value is ...)."""
    data = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


def test_valid_spec_round_trips_through_json(tmp_path):
    spec = ModelSpec.from_dict(VALID)
    assert spec.input.size == (224, 224) and spec.input.height == 224
    assert spec.temperature == 1.3 and spec.malignant_threshold == 0.3
    assert spec.extras == {"notes": "a free field, kept on save"}
    weights, bias = spec.cam_arrays()
    assert weights.shape == (2, 7) and bias.shape == (7,)
    assert spec.preprocessing_profile().name == "colour"
    path = spec.save(tmp_path / "m.json")
    again = load_spec(path)
    assert again == spec
    assert json.loads(path.read_text())["notes"] == "a free field, kept on save"


def test_detection_spec_and_defaults():
    spec = ModelSpec.from_dict(DETECTION)
    assert spec.input.resize == "letterbox" and spec.input.mean == (0.0, 0.0, 0.0) and spec.input.std == (1.0, 1.0, 1.0)
    assert spec.outputs_are == "probabilities" and spec.temperature == 1.0 and spec.sha256 is None
    assert ModelSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "base, path, value, message",
    [
        (VALID, "name", ..., "missing field.*name"),
        (VALID, "outputs", ..., "missing field.*outputs"),
        (VALID, "task", "segmentation", "task: expected one of 'classification', 'detection', got 'segmentation'"),
        (VALID, "input.size", ..., r"input.size is missing: expected \[height, width\]"),
        (VALID, "input.size", [224], r"input.size: expected \[height, width\]"),
        (VALID, "input.size", [224, -1], r"input.size: expected \[height, width\]"),
        (VALID, "input.color_order", "RGBA", "input.color_order"),
        (VALID, "input.resize", "crop", "input.resize: expected one of 'stretch', 'letterbox'"),
        (VALID, "input.std", [1, 0, 1], "input.std: expected non-zero"),
        (VALID, "input.mean", [1, 2], "input.mean: expected 1 or 3 numbers"),
        (VALID, "input.mean", "zero", "input.mean: expected numbers"),
        (VALID, "input.gamma", 2.2, "input: unknown field"),
        (VALID, "labels", [], "labels: a classification spec needs its class names"),
        (VALID, "labels", "akiec bcc", "labels: expected a list of strings"),
        (VALID, "outputs", {"features": "features"}, "needs the 'probabilities' role"),
        (VALID, "outputs_are", "scores", "outputs_are: expected one of 'probabilities', 'logits'"),
        (VALID, "sha256", "abc", "sha256: expected 64 lowercase hex digits"),
        (VALID, "calibration", {"temperature": 0}, "calibration.temperature: expected a positive number"),
        (VALID, "triage", {"malignant_threshold": 1.5}, r"triage.malignant_threshold: expected a number in \[0, 1\]"),
        (VALID, "cam", {"weights": [[0.1] * 6]}, r"cam.weights: expected a \(C_features, 7\) nested list"),
        (VALID, "cam", {"bias": [0.0] * 7}, "cam.weights is missing"),
        (VALID, "preprocessing", {"name": "x", "steps": [{"op": "sharpen"}]}, "preprocessing: .*sharpen"),
        (VALID, "preprocessing", "vivid", "preprocessing: .*vivid"),
        (VALID, "format_version", 2, "format_version: this edgeskin reads version 1, got 2"),
        (DETECTION, "layout", ..., "layout: expected one of 'yolo'"),
        (DETECTION, "boxes", "xyxy", "boxes: expected one of 'xywh_normalized', 'xywh_pixels'"),
        (DETECTION, "outputs", {"probabilities": "p"}, "needs the 'predictions' role"),
    ],
)
def test_invalid_specs_say_which_field_and_why(base, path, value, message):
    with pytest.raises(SpecError, match=message):
        ModelSpec.from_dict(_with(base, path, value))


@pytest.mark.parametrize(
    "text, message",
    [("{not json", "not valid JSON"), ("[1, 2]", "must be a JSON object"), ('{"name": "x"}', "missing field")],
)
def test_load_spec_names_the_file(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(SpecError, match=message) as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_spec_path_is_the_stem_json_beside_the_model():
    assert spec_path_for("models/edgeskin-mnv2-cls.tflite") == Path("models/edgeskin-mnv2-cls.json")
    assert spec_path_for("/a/b/c_edgetpu.tflite") == Path("/a/b/c_edgetpu.json")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a\nb\nc\n", ("a", "b", "c")),
        ("a\r\nb\r\n\n\n", ("a", "b")),
        ("0 background\n1 tench, Tinca tinca\n2 goldfish\n", ("background", "tench, Tinca tinca", "goldfish")),
        ("0: cat\n1: dog\n", ("cat", "dog")),
        ("3 bears\n101 dalmatians\n", ("3 bears", "101 dalmatians")),  # numbers that are not indices stay
    ],
)
def test_read_labels(tmp_path, text, expected):
    path = tmp_path / "labels.txt"
    path.write_bytes(text.encode())
    assert read_labels(path) == expected


def test_read_labels_errors(tmp_path):
    with pytest.raises(SpecError, match="labels file not found"):
        read_labels(tmp_path / "none.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(SpecError, match="is empty"):
        read_labels(tmp_path / "empty.txt")


def test_sha256_file(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_file(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# -- load_model against the real uint8 MobileNet ---------------------------------------------------------


@pytest.mark.shared
def test_load_model_finds_the_spec_beside_the_model(model_copy, quant_spec_dict):
    ModelSpec.from_dict(quant_spec_dict).save(spec_path_for(model_copy))
    model, spec = load_model(model_copy, expected_task="classification")
    with model:
        assert spec.name == "mobilenet-v2-quant" and len(spec.labels) == 1001
        assert model.input.shape == (1, 224, 224, 3)


@pytest.mark.shared
def test_missing_spec_points_to_the_third_party_route(model_copy):
    with pytest.raises(SpecError, match=r"no model spec beside .*mnv2.tflite \(expected mnv2.json\).*--labels"):
        load_model(model_copy)


@pytest.mark.shared
@pytest.mark.parametrize(
    "path, value, error, message",
    [
        ("sha256", "f" * 64, ChecksumMismatchError, "SHA-256 [0-9a-f]{64} does not match the spec's f{64}"),
        ("input.size", [192, 192], SpecError, r"spec says input size \[192, 192\].*model's input tensor is \[1, 224, 224, 3\]"),
        ("outputs", {"probabilities": "probs"}, SpecError, r"'probabilities' output 'probs' is not an output of the model; its outputs are \['MobilenetV2/Predictions/Softmax'\]"),
        ("labels", ["cat"] * 1000, SpecError, "1000 labels but the model's output .* has 1001 values.*'background' first line"),
        ("labels", ["cat"] * 7, SpecError, "7 labels but the model's output .* has 1001 values"),
    ],
    ids=["checksum-mismatch", "wrong-input-size", "unknown-output", "labels-off-by-one", "labels-count"],
)  # fmt: skip
def test_load_model_refuses_a_model_that_disagrees_with_its_spec(
    model_copy, quant_spec_dict, path, value, error, message
):
    spec = ModelSpec.from_dict(_with(quant_spec_dict, path, value))
    with pytest.raises(error, match=message) as info:
        load_model(model_copy, spec, expected_task="classification")
    assert str(model_copy) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.shared
def test_checksum_mismatch_names_both_digests(model_copy, quant_spec_dict):
    spec = ModelSpec.from_dict(_with(quant_spec_dict, "sha256", "e" * 64))
    with pytest.raises(ChecksumMismatchError) as info:
        load_model(model_copy, spec)
    assert sha256_file(model_copy) in str(info.value) and "e" * 64 in str(info.value)
    assert isinstance(info.value, ModelError)


@pytest.mark.shared
def test_a_detector_passed_as_classifier_is_refused_before_it_runs(model_copy):
    spec = ModelSpec.from_dict(_with(DETECTION, "sha256", sha256_file(model_copy)))
    with pytest.raises(ModelError, match="this is a detection model .*; classification was asked"):
        load_model(model_copy, spec, expected_task="classification")


@pytest.mark.shared
def test_a_real_detection_spec_is_checked_against_the_tensors(model_copy):
    spec = ModelSpec.from_dict(
        _with(_with(DETECTION, "input.size", [224, 224]), "outputs", {"predictions": "MobilenetV2/Predictions/Softmax"})
    )
    with pytest.raises(SpecError, match=r"YOLO predictions must be \[1, 4 \+ n_classes, N\]"):
        load_model(model_copy, spec, expected_task="detection")


@pytest.mark.shared
@pytest.mark.parametrize("make", ["jpeg", "truncated"])
def test_bad_files_fail_before_the_spec_is_consulted(tmp_path, panda_path, quant_model, quant_spec_dict, make):
    path = tmp_path / "model.tflite"
    if make == "jpeg":
        shutil.copy(panda_path, path)
    else:
        path.write_bytes(quant_model.read_bytes()[:1_000_000])
    spec = ModelSpec.from_dict(_with(quant_spec_dict, "sha256", None))  # no checksum: the file itself must fail
    with pytest.raises(ModelError, match="not a TFLite flatbuffer" if make == "jpeg" else "truncated or corrupt"):
        load_model(path, spec)


# -- third-party models ---------------------------------------------------------------------------------------


@pytest.mark.shared
def test_third_party_spec_is_inferred_from_the_tensors(google_model, imagenet_labels):
    spec = ModelSpec.for_third_party_classifier(google_model, imagenet_labels)
    assert spec.task == "classification" and spec.input.size == (224, 224)
    assert spec.input.mean == (127.5,) * 3 and spec.input.std == (127.5,) * 3
    assert spec.sha256 == sha256_file(google_model)
    assert spec.outputs_are == "probabilities"  # the graphs end in a uint8 softmax
    assert len(spec.labels) == 1001 and spec.labels[0] == "background"
    assert spec.name == google_model.stem


@pytest.mark.shared
def test_third_party_keywords_reach_the_spec_through_both_entry_points(quant_model, imagenet_labels):
    given = dict(name="mine", resize="letterbox", color_order="BGR", outputs_are="logits", output=None)
    model, loaded = load_third_party_classifier(quant_model, imagenet_labels, **given)
    model.close()
    built = ModelSpec.for_third_party_classifier(quant_model, imagenet_labels, **given)
    for spec in (loaded, built):
        assert (spec.name, spec.input.resize, spec.input.color_order, spec.outputs_are) == (
            "mine",
            "letterbox",
            "BGR",
            "logits",
        )
    with pytest.raises(TypeError, match="colour_order"):
        ModelSpec.for_third_party_classifier(quant_model, imagenet_labels, colour_order="BGR")


@pytest.mark.shared
def test_third_party_label_count_must_match_the_output(tmp_path, quant_model, imagenet_labels):
    short = tmp_path / "labels.txt"
    short.write_text("\n".join(read_labels(imagenet_labels)[1:]))  # the 1000 labels without "background"
    with pytest.raises(SpecError, match="1000 labels but the model's output .* has 1001 values.*background"):
        load_third_party_classifier(quant_model, short)


@pytest.mark.shared
def test_third_party_model_must_take_an_image(monkeypatch, quant_model, imagenet_labels):
    from edgeskin.runtime.interpreter import TensorInfo, TFLiteModel

    real_input = TFLiteModel.input
    monkeypatch.setattr(
        TFLiteModel, "input", property(lambda self: TensorInfo("x", (1, 10), real_input.fget(self).dtype, 1.0, 0, 0))
    )
    with pytest.raises(SpecError, match=r"expected an image input tensor \[1, height, width, 3\], got \[1, 10\]"):
        load_third_party_classifier(quant_model, imagenet_labels)
