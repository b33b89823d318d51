"""Edge TPU compatibility report for any ``.tflite`` file (no compiler needed).

``python -m convert.edgetpu_report MODEL.tflite [--json OUT]`` lists, from the interpreter's own view of
the graph:

* every operator with its count and whether the Edge TPU supports it (the operator table of the Coral
  documentation, "TensorFlow models on the Edge TPU" → supported operations, compiler 16 / runtime 14),
  with the documented limitations,
* whether every operator works on 8-bit quantized tensors (the Edge TPU runs nothing in float), the dtype
  and quantization of the model's inputs and outputs, and all float tensors,
* tensors with more than three dimensions larger than 1 (only the three innermost may be > 1), dynamic
  shapes (not supported), the largest activation and the parameter bytes (the Edge TPU caches about
  8 MB of parameters on chip; more streams from the host and is slower),
* where the compiler would first stop mapping: it maps the graph from the input up to the first
  unsupported operator and leaves everything after it on the CPU.

This is a static prediction. The authority is the compiler itself, which is not available here (x86-64
Debian/Ubuntu only, from Coral's apt repository ``packages.cloud.google.com/apt coral-edgetpu-stable``,
package ``edgetpu-compiler``). On a machine that has it::

    edgetpu_compiler -s -o OUT_DIR MODEL.tflite

``-s`` prints the per-operator mapping table ("Mapped to Edge TPU" or the reason it is not) and writes
``OUT_DIR/MODEL_edgetpu.tflite`` plus ``MODEL_edgetpu.log``. Run the compiled file with the runtime's
``delegate="edgetpu"`` (libedgetpu); its spec is the same JSON with the new file's SHA-256.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# Operators the Edge TPU supports, with the documented limitations (empty string: none documented).
EDGETPU_OPS: dict[str, str] = {
    "ADD": "",
    "AVERAGE_POOL_2D": "no fused activation",
    "CONCATENATION": "no fused activation; a constant input must be all zeros and the only other input",
    "CONV_2D": "",
    "DEPTHWISE_CONV_2D": "dilated conv only with runtime >= 14",
    "EXPAND_DIMS": "",
    "FULLY_CONNECTED": "default weight format only; output 1-D",
    "L2_NORMALIZATION": "",
    "LOGISTIC": "",
    "LSTM": "unidirectional only",
    "MAXIMUM": "",
    "MAX_POOL_2D": "no fused activation",
    "MEAN": "no reduction along the batch dimension; reductions along z only with small sizes",
    "MINIMUM": "",
    "MUL": "",
    "PACK": "no packing along the batch dimension",
    "PAD": "no padding along the batch dimension",
    "PRELU": "alpha must be constant",
    "QUANTIZE": "",
    "REDUCE_MAX": "no reduction along the batch dimension",
    "REDUCE_MIN": "no reduction along the batch dimension",
    "RELU": "",
    "RELU6": "",
    "RELU_N1_TO_1": "",
    "RESHAPE": "certain reshapes may not be mapped for large tensors",
    "RESIZE_BILINEAR": "input/output 3-D; may stay on the CPU to avoid precision loss",
    "RESIZE_NEAREST_NEIGHBOR": "input/output 3-D",
    "RSQRT": "",
    "SLICE": "",
    "SOFTMAX": "1-D input of at most 16,000 elements",
    "SPACE_TO_DEPTH": "",
    "SPLIT": "no splitting along the batch dimension",
    "SQUARED_DIFFERENCE": "",
    "SQUEEZE": "",
    "STRIDED_SLICE": "",
    "SUB": "",
    "SUM": "no reduction along the batch dimension",
    "TANH": "",
    "TRANSPOSE": "",
    "TRANSPOSE_CONV": "",
}
# Operators that are expected at the graph's edges and fine to leave on the CPU.
EDGE_OK = {"QUANTIZE", "DEQUANTIZE"}
PARAMETER_CACHE_BYTES = 8 * 1024 * 1024


def _interpreter(path: Path):
    """The runtime's interpreter without the default delegate, so the original operators are listed (XNNPACK would
    fold them into DELEGATE nodes)."""
    from edgeskin.runtime.interpreter import make_interpreter

    return make_interpreter(path, default_delegates=False)


def _quant(details: dict) -> dict:
    params = details.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), np.float64).reshape(-1)
    zero_points = np.asarray(params.get("zero_points", []), np.int64).reshape(-1)
    if scales.size == 0:
        return {"quantized": False}
    if scales.size == 1:
        return {"quantized": True, "scale": float(scales[0]), "zero_point": int(zero_points[0])}
    return {"quantized": True, "per_axis": int(scales.size), "axis": int(params.get("quantized_dimension", 0))}


def _shape_limitation(op: str, input_shapes: list) -> str:
    """A documented shape limitation this op instance breaks ("" when none), so it would stay on the CPU."""
    if op == "SOFTMAX" and input_shapes:
        shape = np.asarray(input_shapes[0])
        if int(np.sum(shape > 1)) > 1 or int(np.prod(shape)) > 16000:
            return f"softmax over a {shape.tolist()} tensor: the Edge TPU maps only 1-D inputs of <= 16,000 elements"
    return ""


def edgetpu_report(model_path: str | Path) -> dict:
    """Static Edge TPU compatibility report of a ``.tflite`` file (see the module docstring)."""
    path = Path(model_path)
    interpreter = _interpreter(path)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]
    counts = Counter(op["op_name"] for op in ops)

    def dtype_name(index: int) -> str:
        return np.dtype(tensors[index]["dtype"]).name

    produced = {i for op in ops for i in op["outputs"]}
    graph_inputs = {d["index"] for d in interpreter.get_input_details()}
    constant_indices = {
        i for op in ops for i in op["inputs"] if i >= 0 and i in tensors and i not in produced and i not in graph_inputs
    }
    op_rows, first_unsupported, float_ops = [], None, []
    for position, op in enumerate(ops):
        name = op["op_name"]
        inputs = [i for i in op["inputs"] if i >= 0 and i in tensors]
        outputs = [i for i in op["outputs"] if i >= 0 and i in tensors]
        activation_types = {dtype_name(i) for i in outputs}
        is_float = bool(activation_types & {"float32", "float16"})
        if is_float and name not in EDGE_OK:
            float_ops.append(f"{position}:{name}")
        supported = name in EDGETPU_OPS and not is_float
        shape_note = _shape_limitation(name, [tensors[i]["shape"] for i in inputs if i not in constant_indices])
        if shape_note:
            supported = False
        if not supported and name not in EDGE_OK and first_unsupported is None:
            first_unsupported = position
        big_dims = [
            tensors[i]["shape"].tolist()
            for i in inputs + outputs
            if i not in constant_indices and int(np.sum(np.asarray(tensors[i]["shape"])[:-3] > 1)) > 0
        ]
        op_rows.append(
            {
                "index": position,
                "op": name,
                "supported": supported or name in EDGE_OK,
                "limitation": shape_note
                or EDGETPU_OPS.get(name, "not supported by the Edge TPU" if name not in EDGE_OK else ""),
                "output_dtypes": sorted(activation_types),
                "output_shapes": [tensors[i]["shape"].tolist() for i in outputs],
                "more_than_3_nontrivial_dims": big_dims,
            }
        )

    def io(details: list[dict]) -> list[dict]:
        return [
            {"name": d["name"], "shape": d["shape"].tolist(), "dtype": np.dtype(d["dtype"]).name, **_quant(d)}
            for d in details
        ]

    inputs, outputs = io(interpreter.get_input_details()), io(interpreter.get_output_details())
    parameter_bytes = int(
        sum(np.prod(tensors[i]["shape"]) * np.dtype(tensors[i]["dtype"]).itemsize for i in constant_indices)
    )
    activations = [t for i, t in tensors.items() if i not in constant_indices]
    largest = max(activations, key=lambda t: int(np.prod(t["shape"])), default=None)
    float_tensors = sorted({t["name"] for t in activations if np.dtype(t["dtype"]).kind == "f"})
    dynamic = [t["name"] for t in tensors.values() if -1 in np.asarray(t.get("shape_signature", t["shape"])).tolist()]
    io_integer = all(d["dtype"] in ("int8", "uint8") for d in inputs + outputs)
    unsupported = sorted({row["op"] for row in op_rows if not row["supported"]})
    mapped = first_unsupported if first_unsupported is not None else len(ops)
    summary = {
        "model": path.name,
        "ops": len(ops),
        "op_types": len(counts),
        "unsupported_op_types": unsupported,
        "float_ops": float_ops,
        "integer_io": io_integer,
        "full_int8": io_integer and not float_ops,
        "dynamic_tensors": dynamic,
        "ops_before_first_unsupported": mapped,
        "predicted_edgetpu_share": round(mapped / max(1, len(ops)), 4),
        "parameter_bytes": parameter_bytes,
        "parameters_fit_on_chip_cache": parameter_bytes <= PARAMETER_CACHE_BYTES,
        "largest_activation": None
        if largest is None
        else {"name": largest["name"], "shape": largest["shape"].tolist(), "dtype": np.dtype(largest["dtype"]).name},
        "tensors_with_more_than_3_nontrivial_dims": sum(bool(r["more_than_3_nontrivial_dims"]) for r in op_rows),
        "compile_command": f"edgetpu_compiler -s -o OUT_DIR {path.name}",
    }
    return {
        "summary": summary,
        "inputs": inputs,
        "outputs": outputs,
        "op_counts": dict(counts.most_common()),
        "float_tensors": float_tensors,
        "ops": op_rows,
    }


def format_report(report: dict) -> str:
    """Human-readable summary of :func:`edgetpu_report`."""
    s = report["summary"]
    lines = [f"Edge TPU report for {s['model']}: {s['ops']} ops, {s['op_types']} op types"]
    for d in report["inputs"] + report["outputs"]:
        quant = f"scale={d['scale']:.6g} zero_point={d['zero_point']}" if d.get("scale") else str(d.get("quantized"))
        lines.append(f"  io {d['name']}: {d['shape']} {d['dtype']} {quant}")
    for name, count in report["op_counts"].items():
        rows = [r for r in report["ops"] if r["op"] == name]
        broken = [r for r in rows if not r["supported"]]
        if name in EDGE_OK and name not in EDGETPU_OPS:
            status = "cpu (graph edge)"
        elif name not in EDGETPU_OPS:
            status = "NOT SUPPORTED"
        elif broken:
            status = f"LIMITED ({len(broken)} of {count} break a limitation)"
        else:
            status = "ok"
        note = broken[0]["limitation"] if broken else EDGETPU_OPS.get(name, "")
        lines.append(f"  {name:<24} x{count:<4} {status}{' - ' + note if note else ''}")
    lines.append(
        f"  full int8: {s['full_int8']}; float ops: {s['float_ops'] or 'none'}; dynamic tensors: "
        f"{s['dynamic_tensors'] or 'none'}"
    )
    lines.append(
        f"  predicted on Edge TPU: {s['ops_before_first_unsupported']}/{s['ops']} ops before the first "
        f"unsupported one; unsupported types: {s['unsupported_op_types'] or 'none'}"
    )
    lines.append(
        f"  parameters {s['parameter_bytes'] / 1e6:.2f} MB (on-chip cache ~8 MB: "
        f"{'fits' if s['parameters_fit_on_chip_cache'] else 'streams'}); largest activation "
        f"{s['largest_activation']}"
    )
    lines.append(f"  ops touching tensors with >3 non-trivial dims: {s['tensors_with_more_than_3_nontrivial_dims']}")
    lines.append(f"  compile with: {s['compile_command']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help=".tflite file")
    parser.add_argument("--json", help="write the full report here")
    args = parser.parse_args(argv)
    report = edgetpu_report(args.model)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    from convert.script import run_script

    run_script(main, "python -m convert.edgetpu_report")
