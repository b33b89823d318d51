"""Fixtures of the runtime tests: the real Google MobileNet models, fake interpreters, a tiny TF model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgeskin.runtime import interpreter as interp

GOOGLE_MODELS = ("mobilenet_v2_1.0_224_quant.tflite", "tf2_mobilenet_v2_1.0_224_ptq.tflite")
QUANT_MODEL = GOOGLE_MODELS[0]
QUANT_OUTPUT = "MobilenetV2/Predictions/Softmax"


@pytest.fixture(params=GOOGLE_MODELS)
def google_model(request, shared_file) -> Path:
    """Each real Google MobileNet v2 uint8 classifier in ../shared (1001 ImageNet classes)."""
    return shared_file(f"weights/tflite/{request.param}")


@pytest.fixture
def quant_model(shared_file) -> Path:
    return shared_file(f"weights/tflite/{QUANT_MODEL}")


@pytest.fixture
def imagenet_labels(shared_file) -> Path:
    return shared_file("weights/tflite/imagenet_labels.txt")


@pytest.fixture
def panda_path(shared_file) -> Path:
    return shared_file("data/non_lesion/panda.jpg")


@pytest.fixture
def model_copy(quant_model, tmp_path) -> Path:
    """A copy of the uint8 MobileNet in a temporary folder, so a spec can be written beside it."""
    return Path(shutil.copy(quant_model, tmp_path / "mnv2.tflite"))


@pytest.fixture
def quant_spec_dict(imagenet_labels, quant_model) -> dict:
    """An edgeskin-style spec of the uint8 MobileNet (as convert/ would write for one of ours)."""
    from edgeskin.runtime.spec import read_labels, sha256_file

    return {
        "format_version": 1,
        "name": "mobilenet-v2-quant",
        "task": "classification",
        "model_file": "mnv2.tflite",
        "sha256": sha256_file(quant_model),
        "input": {
            "size": [224, 224],
            "color_order": "RGB",
            "resize": "stretch",
            "mean": [127.5] * 3,
            "std": [127.5] * 3,
        },
        "labels": list(read_labels(imagenet_labels)),
        "outputs": {"probabilities": QUANT_OUTPUT},
    }


@pytest.fixture(autouse=True)
def _fresh_interpreter_state():
    """Each test sees a fresh interpreter choice and a not-yet-logged 'auto' fallback."""
    interp.interpreter_backend.cache_clear()
    interp._reset_auto_fallback_warning()
    yield
    interp.interpreter_backend.cache_clear()
    interp._reset_auto_fallback_warning()
