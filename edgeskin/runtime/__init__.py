"""The only part of edgeskin that touches a TFLite interpreter: interpreters, delegates, quantization,
and model specs."""

from __future__ import annotations

from edgeskin.runtime.interpreter import (
    DELEGATES,
    InterpreterBackend,
    TensorInfo,
    TFLiteModel,
    check_model_file,
    dequantize,
    interpreter_backend,
    make_interpreter,
    quantize,
)
from edgeskin.runtime.spec import (
    InputSpec,
    ModelSpec,
    load_model,
    load_spec,
    load_third_party_classifier,
    read_labels,
    sha256_file,
    spec_path_for,
)

__all__ = [
    "DELEGATES",
    "InputSpec",
    "InterpreterBackend",
    "ModelSpec",
    "TFLiteModel",
    "TensorInfo",
    "check_model_file",
    "dequantize",
    "interpreter_backend",
    "load_model",
    "load_spec",
    "load_third_party_classifier",
    "make_interpreter",
    "quantize",
    "read_labels",
    "sha256_file",
    "spec_path_for",
]
