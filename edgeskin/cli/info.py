"""``edgeskin info MODEL``: tensors, quantization, spec and operations of a ``.tflite`` model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

NAME = "info"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="show a model's tensors, quantization, spec and operations",
        description="Show a .tflite model's input/output tensors (shape, dtype, scale, zero point), its spec "
        "when there is one (<model>.json beside it, or --spec), whether the file matches the spec's "
        "SHA-256, and its operations with counts.",
    )
    parser.add_argument("model", metavar="MODEL", help=".tflite model file")
    parser.add_argument("--spec", help="model spec JSON (default: <model>.json beside the model)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--delegate", choices=("cpu", "edgetpu", "auto"), default="cpu", help="default: cpu")
    return parser


def _tensor_dict(info: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "tensor_name": info.tensor_name,
        "index": info.index,
        "shape": list(info.shape),
        "dtype": info.dtype.name,
        "quantized": info.is_quantized,
        "scale": info.scale if len(info.scales) <= 1 else list(info.scales),
        "zero_point": info.zero_point if len(info.zero_points) <= 1 else list(info.zero_points),
        **({"quantized_dimension": info.quantized_dimension} if len(info.scales) > 1 else {}),
    }


def _spec_report(model_path: Path, spec_arg: str | None, sha256: str) -> dict[str, Any] | None:
    from edgeskin.errors import SpecError
    from edgeskin.runtime.spec import load_spec, spec_path_for

    spec_path = Path(spec_arg) if spec_arg else spec_path_for(model_path)
    if not spec_arg and not spec_path.exists():
        return None
    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        return {"path": str(spec_path), "error": " ".join(str(exc).split())}
    checksum = "not recorded" if spec.sha256 is None else ("ok" if spec.sha256 == sha256 else "MISMATCH")
    summary = spec.to_dict()
    if spec.cam is not None:  # the Dense kernel is thousands of numbers: summarise it
        weights, _ = spec.cam_arrays()
        summary["cam"] = {"weights_shape": list(weights.shape)}
    return {"path": str(spec_path), "checksum": checksum, "spec": summary}


def run(args: argparse.Namespace) -> int:
    from edgeskin.runtime.interpreter import TFLiteModel, interpreter_backend
    from edgeskin.runtime.spec import sha256_file

    path = Path(args.model)
    with TFLiteModel.from_file(path, delegate=args.delegate) as model:
        sha256 = sha256_file(path)
        report = {
            "model": str(path),
            "size_bytes": path.stat().st_size,
            "sha256": sha256,
            "interpreter": interpreter_backend().name,
            "delegate": model.delegate,
            "signature": model.signature_key,
            "inputs": [_tensor_dict(t) for t in model.inputs],
            "outputs": [_tensor_dict(t) for t in model.outputs],
            "ops": model.op_counts(),
            "spec": _spec_report(path, args.spec, sha256),
        }
        described_inputs = [t.describe() for t in model.inputs]
        described_outputs = [t.describe() for t in model.outputs]
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"model:       {path} ({report['size_bytes'] / 1e6:.2f} MB)")
    print(f"sha256:      {sha256}")
    print(f"interpreter: {report['interpreter']} (delegate {report['delegate']})")
    if report["signature"]:
        print(f"signature:   {report['signature']}")
    print("inputs:")
    for line in described_inputs:
        print(f"  {line}")
    print("outputs:")
    for line in described_outputs:
        print(f"  {line}")
    ops = report["ops"]
    print(f"ops ({sum(ops.values())}):")
    for name, count in ops.items():
        print(f"  {count:4d}  {name}")
    spec = report["spec"]
    if spec is None:
        print("spec:        none (a third-party model: classify it with --labels and --mean/--std)")
    elif "error" in spec:
        print(f"spec:        {spec['path']}: INVALID: {spec['error']}")
    else:
        body = spec["spec"]
        print(f"spec:        {spec['path']} (checksum {spec['checksum']})")
        print(f"  name {body['name']}, task {body['task']}, input {body['input']}")
        labels = body.get("labels", [])
        shown = ", ".join(labels[:10]) + (f", ... ({len(labels)} in all)" if len(labels) > 10 else "")
        print(f"  labels: {shown}")
        print(f"  outputs: {body['outputs']} ({body.get('outputs_are', 'probabilities')})")
        if body.get("preprocessing"):
            print(f"  preprocessing: {body['preprocessing']}")
        for key in ("calibration", "triage", "thresholds"):
            if body.get(key):
                print(f"  {key}: {body[key]}")
    return 0
