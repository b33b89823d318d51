"""Export the lesion detector so that the whole graph can map to the Edge TPU: box decoding outside the model.

:mod:`convert.export_detector` now writes this form by default (``--decode outside``, the shipped detector) with
:func:`dfl_head_module` from here; this script uses that module's ONNX export and INT8 predictor, and remains as
the side-by-side check: it reports the Edge TPU mapping of this form next to an in-graph export
(``--compare``). With the decoding in the graph, the DFL ``SOFTMAX`` over a ``[1, 4, N, 16]`` tensor is not
1-D, so the Edge TPU compiler stops mapping there. Here the head ends before the decoding: two int8 outputs,

* ``box_logits`` ``[1, 64, N]``: the raw DFL logits (4 sides x 16 bins per anchor),
* ``scores`` ``[1, nc, N]``: the class scores (sigmoid, in the graph: ``LOGISTIC`` maps),

each with its own quantization scale (one shared scale would crush the scores), and
:func:`edgeskin.core.dfl.dfl_to_predictions` decodes them in numpy (spec ``layout: "yolo_dfl"``).

``python -m convert.export_detector_edgetpu --weights best.pt --out DIR`` writes the ONNX and INT8 TFLite
files, the Edge TPU report of both exports and the INT8-vs-float box agreement on the PH2 validation half.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import types
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from convert.ship import refuse_shipped_out

LOG = logging.getLogger("edgeskin.export_detector_edgetpu")
INPUT_NAME = "images"
OUTPUT_NAMES = ("box_logits", "scores")


def dfl_head_module(model):
    """A torch DetectionModel → module: float NCHW pixels [0, 255] → (DFL logits ``[1, 64, N]``, scores)."""
    import torch
    from ultralytics.nn.modules import Detect

    model = model.float().eval()
    for parameter in model.parameters():
        parameter.requires_grad = False
    for module in model.modules():
        if isinstance(module, Detect):
            module.export = True
            module.dynamic = False
            module._inference = types.MethodType(lambda self, x: (x["boxes"], x["scores"].sigmoid()), module)

    class PixelInput(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, images: torch.Tensor):
            logits, scores = self.inner(images * (1.0 / 255.0))
            return logits, scores

    return PixelInput(model).eval()


def load_detection_model(weights: str | Path):
    from ultralytics import YOLO

    return YOLO(str(weights), task="detect").model.float().eval().fuse()


def main(argv: Sequence[str] | None = None) -> int:
    from convert.export_detector import parse_imgsz

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", required=True, help="the detector dataset (calibration images)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--imgsz", type=parse_imgsz, default="320", help="input SIDE or HEIGHTxWIDTH (multiples of 32)")
    parser.add_argument("--calibration", type=int, default=200)
    parser.add_argument("--reuse-tflite", action="store_true", help="reuse OUT/tflite from a previous run")
    parser.add_argument("--compare", help="the in-graph-decoding INT8 .tflite to report next to this one")
    args = parser.parse_args(argv)
    refuse_shipped_out(parser, args.out)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from convert.edgetpu_report import edgetpu_report
    from convert.export_detector import convert_tflite, export_onnx, representative_images, tflite_predictor
    from edgeskin.core.dfl import detector_output_roles
    from edgeskin.runtime.interpreter import TFLiteModel
    from training.train_detector import apply_offline_settings, evaluate_detector, ph2_validation_items

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    apply_offline_settings(out / "yolo_config")
    started = time.time()
    module = dfl_head_module(load_detection_model(args.weights))
    onnx_path = export_onnx(module, out / "edgeskin-yolov5n-det-dfl.onnx", args.imgsz, OUTPUT_NAMES)
    calibration = representative_images(Path(args.dataset), args.imgsz, args.calibration)
    reused = sorted((out / "tflite" / "saved_model").glob("*_full_integer_quant.tflite"))
    tflite = reused[0] if args.reuse_tflite and reused else convert_tflite(onnx_path, calibration, out / "tflite")
    from training.detector_masks import MaskDatasetConfig

    items = ph2_validation_items(Path(args.dataset), MaskDatasetConfig())
    with TFLiteModel.from_file(tflite) as probe:  # the converter renames the outputs: roles from their shapes
        roles = detector_output_roles(probe.outputs)
    decode, model = tflite_predictor(tflite, args.imgsz, *roles)  # boxes scoring >= 0.25, as the export evaluates
    invoke: list[float] = []

    def predict(image_rgb: np.ndarray):
        found = decode(image_rgb)
        invoke.append(model.invoke_ms)
        return found

    result = {
        "tflite": str(tflite),
        "int8_dfl_outside": {k: v for k, v in evaluate_detector(predict, items).items()},
        "invoke_ms_p50": round(float(np.median(invoke)), 3),
        "edgetpu": _mapping(edgetpu_report(tflite)),
        "seconds": round(time.time() - started, 1),
    }
    if args.compare:
        result["edgetpu_in_graph_decoding"] = _mapping(edgetpu_report(args.compare))
    (out / "edgetpu_export.json").write_text(json.dumps(result, indent=1))
    shown = {k: v for k, v in result["int8_dfl_outside"].items() if k != "per_image"}
    print(json.dumps({**result, "int8_dfl_outside": shown}, indent=1)[:4000])
    return 0


def _mapping(report: dict) -> dict:
    keys = ("operators", "predicted_mapped", "first_unmapped", "float_tensors", "verdict", "summary")
    return {k: report[k] for k in keys if k in report} or {k: v for k, v in report.items() if k != "tensors"}


if __name__ == "__main__":
    from convert.script import run_script

    run_script(main, "python -m convert.export_detector_edgetpu")
