"""The public names of :mod:`edgeskin.runtime`, by the submodule that defines them.

This module imports nothing, so the package can list its names without importing its submodules (it imports
each name on first use), and :mod:`edgeskin.runtime.spec` takes its ``__all__`` from here: one list to keep, not two.
"""

from __future__ import annotations

# module (relative to edgeskin.runtime) -> the public names it defines
EXPORTS: dict[str, tuple[str, ...]] = {
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
