"""The only part of edgeskin that touches a TFLite interpreter: interpreters, delegates, quantization,
and model specs. Names are imported on first use."""

from __future__ import annotations

from edgeskin._lazy import lazy_exports

# public name -> module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    "DELEGATES": "interpreter",
    "InterpreterBackend": "interpreter",
    "TensorInfo": "interpreter",
    "TFLiteModel": "interpreter",
    "check_model_file": "interpreter",
    "dequantize": "interpreter",
    "interpreter_backend": "interpreter",
    "make_interpreter": "interpreter",
    "quantize": "interpreter",
    "InputSpec": "spec",
    "ModelSpec": "spec",
    "load_model": "spec",
    "load_spec": "spec",
    "load_third_party_classifier": "spec",
    "read_labels": "spec",
    "sha256_file": "spec",
    "spec_path_for": "spec",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
