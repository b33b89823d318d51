"""The only part of edgeskin that touches a TFLite interpreter: interpreters, delegates, quantization,
and model specs. Names are imported on first use."""

from __future__ import annotations

from edgeskin._lazy import lazy_exports

# module (relative to this package) -> the public names it defines
_EXPORTS: dict[str, tuple[str, ...]] = {
    "interpreter": (
        "DELEGATES",
        "InterpreterBackend",
        "TensorInfo",
        "TFLiteModel",
        "check_model_file",
        "dequantize",
        "interpreter_backend",
        "make_interpreter",
        "quantize",
    ),
    "spec": (
        "InputSpec",
        "ModelSpec",
        "load_model",
        "load_spec",
        "load_third_party_classifier",
        "read_labels",
        "sha256_file",
        "spec_path_for",
    ),
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
