"""Small fakes of TFLite interpreters for the runtime tests (no model file is parsed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def fake_tflite_file(path: Path) -> Path:
    """A file that passes the 'TFL3' identifier check (for fake interpreters that never parse it)."""
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    return path


def tensor_details(name, index, shape, dtype, scale=0.0, zero_point=0, scales=None, zero_points=None, axis=0):
    scales = [scale] if scales is None and scale else (scales or [])
    zero_points = [zero_point] if zero_points is None and scale else (zero_points or [])
    return {
        "name": name,
        "index": index,
        "shape": np.array(shape, dtype=np.int32),
        "dtype": dtype,
        "quantization": (scale, zero_point),
        "quantization_parameters": {
            "scales": np.array(scales, dtype=np.float32),
            "zero_points": np.array(zero_points, dtype=np.int32),
            "quantized_dimension": axis,
        },
    }


class FakeInterpreter:
    """An ``Interpreter`` look-alike: one input, outputs computed by ``compute(input) -> list of arrays``.

    With ``signature_outputs`` it also offers a signature runner whose outputs carry those names.
    """

    def __init__(self, inputs, outputs, compute, signature_inputs=None, signature_outputs=None, **kwargs):
        self._inputs, self._outputs, self._compute = inputs, outputs, compute
        self._signature_inputs, self._signature_outputs = signature_inputs, signature_outputs
        self._tensors: dict[int, np.ndarray] = {}
        self.kwargs = kwargs
        self.invocations = 0

    def allocate_tensors(self):
        pass

    def get_input_details(self):
        return self._inputs

    def get_output_details(self):
        return self._outputs

    def set_tensor(self, index, value):
        self._tensors[index] = np.array(value)

    def invoke(self):
        self.invocations += 1
        results = self._compute(self._tensors[self._inputs[0]["index"]])
        for details, value in zip(self._outputs, results, strict=True):
            self._tensors[details["index"]] = np.asarray(value, dtype=details["dtype"])

    def get_tensor(self, index):
        return self._tensors[index].copy()

    def get_signature_list(self):
        if self._signature_outputs is None:
            return {}
        return {"serving_default": {"inputs": list(self._signature_inputs), "outputs": list(self._signature_outputs)}}

    def get_signature_runner(self, key):
        assert key == "serving_default"
        return FakeSignatureRunner(self)

    def _get_ops_details(self):
        return [{"op_name": "CONV_2D"}, {"op_name": "DELEGATE"}, {"op_name": "CONV_2D"}, {"op_name": "SOFTMAX"}]


class FakeSignatureRunner:
    def __init__(self, interpreter: FakeInterpreter):
        self.interpreter = interpreter
        self.calls: list[dict] = []

    def get_input_details(self):
        return dict(zip(self.interpreter._signature_inputs, self.interpreter._inputs, strict=True))

    def get_output_details(self):
        return dict(zip(self.interpreter._signature_outputs, self.interpreter._outputs, strict=True))

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        (name,) = self.interpreter._signature_inputs
        self.interpreter.set_tensor(self.interpreter._inputs[0]["index"], kwargs[name])
        self.interpreter.invoke()
        return {
            name: self.interpreter.get_tensor(details["index"])
            for name, details in zip(self.interpreter._signature_outputs, self.interpreter._outputs, strict=True)
        }
