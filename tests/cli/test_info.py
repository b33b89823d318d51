"""``edgeskin info MODEL``: tensors, quantization, spec and ops of real models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgeskin.cli import main
from edgeskin.runtime.spec import ModelSpec, read_labels, sha256_file


@pytest.fixture
def quant_model(shared_file) -> Path:
    return shared_file("weights/tflite/mobilenet_v2_1.0_224_quant.tflite")


@pytest.mark.shared
def test_info_text_shows_tensors_quantization_and_ops(quant_model, capsys):
    assert main(["info", str(quant_model)]) == 0
    out = capsys.readouterr().out
    assert "input: [1, 224, 224, 3] uint8 scale=0.0078125 zero_point=128" in out
    assert "MobilenetV2/Predictions/Softmax: [1, 1001] uint8 scale=0.00390625 zero_point=0" in out
    assert "36  CONV_2D" in out and "17  DEPTHWISE_CONV_2D" in out and "DELEGATE" not in out
    assert sha256_file(quant_model) in out
    assert "spec:        none" in out


@pytest.mark.shared
def test_info_json_with_a_spec_beside_the_model(tmp_path, quant_model, shared_file, capsys):
    model = Path(shutil.copy(quant_model, tmp_path / "mnv2.tflite"))
    spec = ModelSpec.from_dict(
        {
            "name": "mnv2",
            "task": "classification",
            "sha256": sha256_file(model),
            "input": {"size": [224, 224], "mean": 127.5, "std": 127.5},
            "labels": list(read_labels(shared_file("weights/tflite/imagenet_labels.txt"))),
            "outputs": {"probabilities": "MobilenetV2/Predictions/Softmax"},
        }
    )
    spec.save(tmp_path / "mnv2.json")
    assert main(["info", str(model), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (inp,) = report["inputs"]
    assert inp["shape"] == [1, 224, 224, 3] and inp["dtype"] == "uint8" and inp["zero_point"] == 128
    assert report["ops"]["CONV_2D"] == 36 and report["interpreter"] == "ai_edge_litert.interpreter"
    assert report["spec"]["checksum"] == "ok" and report["spec"]["spec"]["name"] == "mnv2"

    spec.with_updates(sha256="0" * 64).save(tmp_path / "mnv2.json")
    assert main(["info", str(model)]) == 0
    assert "(checksum MISMATCH)" in capsys.readouterr().out

    (tmp_path / "mnv2.json").write_text("{broken")
    assert main(["info", str(model)]) == 0
    assert "INVALID: " in capsys.readouterr().out


@pytest.mark.shared
def test_info_on_a_file_that_is_not_a_model_is_one_line(shared_file, capsys):
    assert main(["info", str(shared_file("data/non_lesion/panda.jpg"))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeskin: error: ") and "not a TFLite flatbuffer" in err and err.count("\n") == 1
