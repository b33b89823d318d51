"""Export the trained YOLOv5n lesion detector to ONNX and full-INT8 TFLite, check it, and write its spec.

``python -m convert.export_detector --help``. Steps:

1. Wrap ``best.pt`` for export: the input is float RGB pixels in [0, 255], NCHW ``[1, 3, S, S]``, and the
   ``/255`` is folded into the graph (spec mean 0, std 1, so int8 input = pixel - 128).
   ``--decode outside`` (the default, spec ``layout: "yolo_dfl"``): the head ends before the box decoding,
   with two int8 outputs, the raw DFL logits ``[1, 64, N]`` and the lesion score ``[1, 1, N]`` (sigmoid),
   each with its own scale; the runtime decodes the candidates' boxes in float (:mod:`edgeskin.core.dfl`).
   An int8 box output would round every box side to 1/255 of the input; the logits keep that precision
   out of the box, and the graph has no DFL ``SOFTMAX``, so all of it maps to the Edge TPU.
   ``--decode graph`` (``layout: "yolo"``): the head decodes boxes normalised by the input size
   (ultralytics' TFLite decode); one output ``predictions`` ``[1, 5, N]`` = ``cx, cy, w, h`` (0..1 of the
   letterboxed input) and the score. N = (H/8)(W/8) + (H/16)(W/16) + (H/32)(W/32) for an H x W
   input (``--imgsz``: the config's square side, or e.g. ``288x384`` for 4:3 frames).
2. ONNX export (opset 17, onnxslim) and an onnxruntime check against PyTorch.
3. onnx2tf → TFLite full integer quantization (int8 input and output, per-channel weights), calibrated
   on letterboxed real training images (PH2 training half, derived-box HAM10000 images, composites).
   Nothing is downloaded: onnx2tf's sample-data file is written locally from the same real images.
4. Float (PyTorch, same pre/post-processing) vs INT8 (through ``edgeskin.runtime.TFLiteModel``) vs the
   classical baseline on the held-out PH2 images; box agreement float vs INT8.
5. Spec JSON (``docs/ARCHITECTURE.md``) and the Edge TPU report, all in ``--out`` (default ``WORK/export``,
   never the shipped ``edgeskin/models``); ``--ship`` then replaces the shipped detector with the exported
   ``.tflite`` and spec and says what it replaced (:mod:`convert.ship`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert.ship import refuse_shipped_out, ship
from edgeskin.core.boxes import nms, xywh_to_xyxy
from edgeskin.core.geometry import letterbox

REPO_ROOT = Path(__file__).resolve().parents[1]

LOG = logging.getLogger("edgeskin.export_detector")
WORK = REPO_ROOT / "artifacts" / "detector"
MODEL_NAME = "edgeskin-yolov5n-det"
INPUT_NAME = "images"
OUTPUT_NAME = "predictions"
CONFIDENCE = 0.25
# A box below this score is a candidate, not a reported lesion. 0.60 is the 5th percentile of the INT8
# detector's top scores on the 50 PH2 *training* lesions (about 95% recall there); chosen without the
# PH2 validation images or the non-lesion photos. Measured trade-off: docs/robustness.md.
PRESENCE = 0.60
IOU = 0.45
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"


# ------------------------------------------------------------------------------------------- export
def build_export_module(weights: str | Path):
    """``best.pt`` → torch module: float NCHW pixels [0, 255] → ``[1, 4 + nc, N]`` (normalised xywh, scores)."""
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.modules import Detect
    from ultralytics.utils.export.tensorflow import tf_wrapper

    model = YOLO(str(weights), task="detect").model
    for parameter in model.parameters():
        parameter.requires_grad = False
    model = model.float().eval().fuse()
    for module in model.modules():
        if isinstance(module, Detect):
            module.dynamic = False
            module.export = True
            module.format = "tflite"
    model = tf_wrapper(model)

    class PixelInput(torch.nn.Module):
        """Folds the [0, 255] → [0, 1] scaling into the graph and clamps the output to [0, 1]."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            # Clamping to [0, 1] costs nothing for boxes inside the input and gives the int8 output
            # its finest scale (1/255): an untrained corner of the range would otherwise coarsen it.
            return torch.clamp(self.inner(images * (1.0 / 255.0)), 0.0, 1.0)

    return PixelInput(model).eval()


def input_hw(imgsz: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` of a detector input size given as one side (square) or ``(height, width)``.

    Both must be multiples of 32, the detector's largest stride.
    """
    hw = (int(imgsz), int(imgsz)) if np.ndim(imgsz) == 0 else tuple(int(v) for v in imgsz)
    if len(hw) != 2 or min(hw) < 32 or any(v % 32 for v in hw):
        raise ValueError(f"detector input size: expected a side or (height, width), multiples of 32, got {imgsz!r}")
    return hw


def parse_imgsz(text: str) -> tuple[int, int]:
    """``"320"`` → (320, 320); ``"288x384"`` (height x width) → (288, 384)."""
    try:
        sides = [int(v) for v in text.lower().split("x")]
        return input_hw(sides if len(sides) > 1 else sides[0])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SIDE or HEIGHTxWIDTH, multiples of 32 ({exc})") from None


def export_onnx(module, path: Path, imgsz: int | Sequence[int], output_names: Sequence[str] = (OUTPUT_NAME,)) -> Path:
    """Trace to ONNX (opset 17, static shape), simplify with onnxslim, check with onnx.checker."""
    import onnx
    import torch

    dummy = torch.zeros(1, 3, *input_hw(imgsz))
    torch.onnx.export(
        module,
        dummy,
        str(path),
        opset_version=17,
        input_names=[INPUT_NAME],
        output_names=list(output_names),
        dynamo=False,
    )
    model = onnx.load(str(path))
    try:
        import onnxslim

        model = onnxslim.slim(model)
    except ImportError:  # pragma: no cover - onnxslim is in the [train] extra
        LOG.warning("onnxslim not installed: ONNX left unsimplified")
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def letterboxed(image_rgb: np.ndarray, imgsz: int | Sequence[int]):
    """Model input (uint8 ``[H, W, 3]``, pad 114) and the transform back to frame pixels."""
    return letterbox(image_rgb, input_hw(imgsz), pad_value=114)


def representative_images(dataset_dir: Path, imgsz: int | Sequence[int], count: int, seed: int = 0) -> np.ndarray:
    """``(count, H, W, 3)`` float32 [0, 255] letterboxed RGB training images, a seeded sample per source."""
    from training.detector_data import read_rgb

    files = sorted((dataset_dir / "images" / "train").glob("*.jpg"))
    if not files:
        raise FileNotFoundError(f"no training images under {dataset_dir / 'images' / 'train'}")
    rng = np.random.default_rng(seed)
    groups: dict[str, list[Path]] = {}
    for file in files:
        groups.setdefault(file.name.split("_")[0], []).append(file)
    chosen: list[Path] = []
    per_group = max(1, count // len(groups))
    for name in sorted(groups):
        members = groups[name]
        chosen += [members[i] for i in rng.choice(len(members), min(per_group, len(members)), replace=False)]
    batch = [letterboxed(read_rgb(f), imgsz)[0] for f in chosen[:count]]
    return np.stack(batch).astype(np.float32)


def convert_tflite(onnx_path: Path, calibration: np.ndarray, out_dir: Path) -> Path:
    """onnx2tf full-integer quantization; returns the ``*_full_integer_quant.tflite`` path."""
    import onnx2tf

    out_dir.mkdir(parents=True, exist_ok=True)
    calib_file = out_dir / "calibration.npy"
    np.save(calib_file, calibration)
    # onnx2tf loads this file from the working directory (else downloads COCO samples): write it
    # from our own real images, in [0, 1] as onnx2tf expects.
    sample = np.stack([cv2_resize(img, 128) for img in calibration[:20]]) / 255.0
    previous = Path.cwd()
    os.chdir(out_dir)
    try:
        np.save(ONNX2TF_SAMPLE, sample.astype(np.float32))
        onnx2tf.convert(
            input_onnx_file_path=str(onnx_path),
            output_folder_path=str(out_dir / "saved_model"),
            output_integer_quantized_tflite=True,
            quant_type="per-channel",
            custom_input_op_name_np_data_path=[
                [INPUT_NAME, str(calib_file), np.zeros((1, 1, 1, 3), np.float32), np.ones((1, 1, 1, 3), np.float32)]
            ],
            input_quant_dtype="int8",
            output_quant_dtype="int8",
            not_use_onnxsim=True,
            output_signaturedefs=True,
            copy_onnx_input_output_names_to_tflite=True,
            verbosity="error",
        )
    finally:
        os.chdir(previous)
    found = sorted((out_dir / "saved_model").glob("*_full_integer_quant.tflite"))
    if not found:
        raise RuntimeError(f"onnx2tf wrote no *_full_integer_quant.tflite under {out_dir / 'saved_model'}")
    return found[0]


def cv2_resize(image: np.ndarray, side: int) -> np.ndarray:
    import cv2

    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------- inference
def decode_yolo(
    raw: np.ndarray,
    imgsz: int | Sequence[int],
    transform,
    boxes_normalized: bool = True,
    confidence: float = CONFIDENCE,
    iou: float = IOU,
) -> tuple[np.ndarray, np.ndarray]:
    """``[1, 4 + nc, N]`` (or ``[1, N, 4 + nc]``) → (xyxy frame boxes, scores) after threshold and NMS."""
    pred = np.asarray(raw, np.float32)[0]
    if pred.shape[0] > pred.shape[1]:
        pred = pred.T
    boxes_xywh, scores = pred[:4].T, pred[4:].max(axis=0)
    keep = scores >= confidence
    boxes_xywh, scores = boxes_xywh[keep], scores[keep]
    if boxes_normalized:
        height, width = input_hw(imgsz)
        boxes_xywh = boxes_xywh * np.array([width, height, width, height], np.float32)
    xyxy = xywh_to_xyxy(boxes_xywh)
    order = nms(xyxy, scores, iou)
    return transform.to_frame(xyxy[order]), scores[order]


def torch_predictor(module, imgsz: int | Sequence[int]):
    import torch

    imgsz = input_hw(imgsz)  # checked once, not per image

    def predict(image_rgb: np.ndarray):
        x, transform = letterboxed(image_rgb, imgsz)
        tensor = torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None]
        with torch.no_grad():
            raw = module(tensor).numpy()
        return decode_yolo(raw, imgsz, transform)

    return predict


def tflite_predictor(path: Path, imgsz: int | Sequence[int], output_name: str, scores_name: str | None = None):
    """``image -> (boxes, scores)`` of an exported TFLite file; with ``scores_name`` the model ends before the box
    decoding (``output_name`` holds the DFL logits) and :func:`edgeskin.core.dfl.dfl_to_predictions` decodes."""
    from edgeskin.core.dfl import dfl_to_predictions
    from edgeskin.runtime.interpreter import TFLiteModel

    model = TFLiteModel.from_file(path, num_threads=2)
    imgsz = input_hw(imgsz)  # checked once, not per image

    def predict(image_rgb: np.ndarray):
        x, transform = letterboxed(image_rgb, imgsz)
        outputs = model.run(x.astype(np.float32))  # quantized with the input tensor's own scale/zero point
        raw = outputs[output_name]
        if scores_name is not None:
            raw = dfl_to_predictions(raw, outputs[scores_name], imgsz)
        return decode_yolo(raw, imgsz, transform)

    return predict, model


def agreement(float_eval: dict, int8_eval: dict) -> dict:
    """Per-image agreement of the top boxes of two evaluations."""
    from edgeskin.core.boxes import pair_iou as box_iou_single

    pair_ious, deltas = [], []
    for image_id, f in float_eval["per_image"].items():
        q = int8_eval["per_image"][image_id]
        fb = None if f["box"] is None else np.array(f["box"], np.float32)
        qb = None if q["box"] is None else np.array(q["box"], np.float32)
        pair_ious.append(1.0 if fb is None and qb is None else box_iou_single(fb, qb))
        deltas.append(q["iou"] - f["iou"])
    pair = np.array(pair_ious)
    delta = np.array(deltas)
    return {
        "mean_iou_float_vs_int8_box": round(float(pair.mean()), 4),
        "min_iou_float_vs_int8_box": round(float(pair.min()), 4),
        "share_boxes_iou_ge_0.9": round(float((pair >= 0.9).mean()), 4),
        "mean_iou_delta_int8_minus_float": round(float(delta.mean()), 4),
        "max_abs_iou_delta": round(float(np.abs(delta).max()), 4),
    }


def _strip(evaluation: dict) -> dict:
    return {k: v for k, v in evaluation.items() if k != "per_image"}


# -------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The export's options, checked before any work (the output folder, the weights)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--work", default=str(WORK), help="detector work dir (dataset/, metrics.json, run/)")
    parser.add_argument("--weights", help="trained weights (default: WORK/run/weights/best.pt)")
    parser.add_argument("--config", default=str(REPO_ROOT / "training" / "configs" / "detector.yaml"))
    parser.add_argument(
        "--out", help="folder of your own for ONNX/TFLite/reports (default: WORK/export; not edgeskin/models)"
    )
    parser.add_argument(
        "--ship",
        action="store_true",
        help="then replace the shipped detector in edgeskin/models with the exported one (says what it replaced)",
    )
    parser.add_argument("--calibration", type=int, default=200, help="representative images for INT8")
    parser.add_argument(
        "--imgsz",
        type=parse_imgsz,
        help="model input SIDE or HEIGHTxWIDTH (multiples of 32), e.g. 288x384 for 4:3 frames; default: the "
        "training config's imgsz (square)",
    )
    parser.add_argument(
        "--decode",
        choices=("outside", "graph"),
        default="outside",
        help="'outside': the model ends with the DFL logits and scores and the runtime decodes the boxes in float "
        "(layout yolo_dfl: finer boxes than an int8 box output, and the whole graph maps to the Edge TPU); 'graph': "
        "boxes decoded in the model (layout yolo, one int8 output)",
    )
    parser.add_argument("--reuse-tflite", action="store_true", help="reuse OUT/tflite from a previous run")
    parser.add_argument(
        "--presence",
        type=float,
        default=PRESENCE,
        help="score a box needs for the pipeline to report a lesion (spec thresholds.presence)",
    )
    parser.add_argument(
        "--unsure",
        type=float,
        default=None,
        help="lower end of the unsure band (spec thresholds.unsure; also the confidence floor)",
    )
    parser.add_argument(
        "--presence-report",
        help="JSON of benchmarks/detector_presence.py on this model: its curve summary and rates go into the spec",
    )
    args = parser.parse_args(argv)
    args.weights = args.weights or str(Path(args.work) / "run" / "weights" / "best.pt")
    args.out = args.out or str(Path(args.work) / "export")
    refuse_shipped_out(parser, args.out)
    if not Path(args.weights).is_file():
        parser.error(f"--weights: expected the trained detector's best.pt, found no file at {args.weights}")
    return args


# -- the stages of one export, in order (one shared pre-flight, then one stage per format and check) -----------


@dataclass(frozen=True)
class Setup:
    """The pre-flight: folders, the training configuration and the model input size."""

    work: Path
    out: Path
    weights: Path
    data_config: Any
    train_options: dict
    imgsz: tuple[int, int]


def setup(args: argparse.Namespace) -> Setup:
    from training.train_detector import apply_offline_settings, load_data_config, load_train_config

    work, out = Path(args.work).resolve(), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    apply_offline_settings(work / "yolo_config")
    data_config, _ = load_data_config(args.config)
    train_options = load_train_config(args.config)
    imgsz = args.imgsz or input_hw(train_options["imgsz"])
    return Setup(work, out, Path(args.weights).resolve(), data_config, train_options, imgsz)


@dataclass(frozen=True)
class OnnxExport:
    """The ONNX stage: the float reference module, the ONNX file and its largest difference from PyTorch."""

    module: Any  # the float reference (decodes in the graph: in float both layouts give the same boxes)
    path: Path
    max_abs_diff: float


def onnx_stage(args: argparse.Namespace, run: Setup) -> OnnxExport:
    module = build_export_module(run.weights)
    if args.decode == "outside":
        from convert.export_detector_edgetpu import OUTPUT_NAMES, dfl_head_module, load_detection_model

        exported = dfl_head_module(load_detection_model(run.weights))
        onnx_path = export_onnx(exported, run.out / f"{MODEL_NAME}.onnx", run.imgsz, OUTPUT_NAMES)
    else:
        exported = module
        onnx_path = export_onnx(module, run.out / f"{MODEL_NAME}.onnx", run.imgsz)
    import onnxruntime
    import torch

    probe = np.random.default_rng(0).uniform(0, 255, (1, 3, *run.imgsz)).astype(np.float32)
    with torch.no_grad():
        reference = exported(torch.from_numpy(probe))
    reference = [t.numpy() for t in reference] if isinstance(reference, tuple) else [reference.numpy()]
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_outs = session.run(None, {INPUT_NAME: probe})
    max_diff = max(float(np.abs(o - r).max()) for o, r in zip(onnx_outs, reference, strict=True))
    LOG.info("ONNX vs PyTorch max abs diff %.2e (outputs %s)", max_diff, [o.shape for o in onnx_outs])
    return OnnxExport(module, onnx_path, max_diff)


@dataclass(frozen=True)
class TfliteExport:
    """The INT8 TFLite stage: onnx2tf's file, its copy under the shipped name, and the calibration set size."""

    built: Path  # onnx2tf's full-integer file (its float files lie beside it)
    path: Path
    calibration_images: int


def tflite_stage(args: argparse.Namespace, run: Setup, onnx: OnnxExport) -> TfliteExport:
    calibration = representative_images(run.work / "dataset", run.imgsz, args.calibration, seed=run.data_config.seed)
    reused = sorted((run.out / "tflite" / "saved_model").glob("*_full_integer_quant.tflite"))
    if args.reuse_tflite and reused:  # the conversion of this very ONNX file is already there
        built = reused[0]
    else:
        built = convert_tflite(onnx.path, calibration, run.out / "tflite")
    path = run.out / f"{MODEL_NAME}.tflite"
    shutil.copyfile(built, path)
    return TfliteExport(built, path, len(calibration))


@dataclass(frozen=True)
class Evaluation:
    """The checks: float vs INT8 vs the classical baseline on held-out PH2 images, composites and close-ups."""

    output_name: str
    scores_name: str | None
    tflite_model: Any  # the INT8 TFLiteModel (tensor records for the spec)
    items: list
    evaluations: dict
    agree: dict
    scenes: list
    composites: dict
    closeup_items: list
    closeups: dict


def evaluate_stage(args: argparse.Namespace, run: Setup, onnx: OnnxExport, tflite: TfliteExport) -> Evaluation:
    from edgeskin.core.dfl import detector_output_roles
    from edgeskin.runtime.interpreter import TFLiteModel
    from training.train_detector import (
        classical_predictor,
        evaluate_detector,
        ph2_validation_items,
        yolo_labelled_images,
    )

    items = ph2_validation_items(run.work / "dataset", run.data_config)
    with TFLiteModel.from_file(tflite.path) as probe_model:  # the converter's names for the ONNX outputs
        output_name, scores_name = detector_output_roles(probe_model.outputs)
    if (scores_name is None) != (args.decode == "graph"):
        raise RuntimeError(f"--decode {args.decode}: the converted model has outputs {output_name}, {scores_name}")
    int8_predict, tflite_model = tflite_predictor(tflite.path, run.imgsz, output_name, scores_name)
    LOG.info("TFLite model: %r", tflite_model)
    float_predict = torch_predictor(onnx.module, run.imgsz)
    evaluations = {
        "float": evaluate_detector(float_predict, items),
        "int8": evaluate_detector(int8_predict, items),
        "classical_baseline": evaluate_detector(classical_predictor, items),
    }
    agree = agreement(evaluations["float"], evaluations["int8"])
    # Float TFLite files onnx2tf writes beside the INT8 one (the same graph before quantization).
    for kind in ("float32", "float16"):
        found = sorted(tflite.built.parent.glob(f"*_{kind}.tflite"))
        if found:
            with TFLiteModel.from_file(found[0]) as probe_model:
                float_roles = detector_output_roles(probe_model.outputs)  # its own signature names
            float_tflite, _ = tflite_predictor(found[0], run.imgsz, *float_roles)
            evaluations[f"{kind}_tflite"] = evaluate_detector(float_tflite, items)
    # Small, off-centre lesions in skin scenes (kiosk-like): the internal validation composites, made from
    # lesions held out of training pasted on skin scenes.
    scenes = yolo_labelled_images(run.work / "dataset", "val", "comp_")
    composites = {
        "float": evaluate_detector(torch_predictor(onnx.module, run.imgsz), scenes),
        "int8": evaluate_detector(int8_predict, scenes),
        "classical_baseline": evaluate_detector(classical_predictor, scenes),
    }
    # Close-ups: the lesion fills most or all of the frame (mask recipe only).
    closeup_items = yolo_labelled_images(run.work / "dataset", "val", "close_")
    closeups = {}
    if closeup_items:
        closeups = {
            "float": evaluate_detector(torch_predictor(onnx.module, run.imgsz), closeup_items),
            "int8": evaluate_detector(int8_predict, closeup_items),
        }
    return Evaluation(
        output_name, scores_name, tflite_model, items, evaluations, agree, scenes, composites, closeup_items, closeups
    )


def _tensor_record(info) -> dict:
    return {
        "name": info.name,
        "shape": list(info.shape),
        "dtype": info.dtype.name,
        "scale": _scalar(info.scale),
        "zero_point": _scalar(info.zero_point),
    }


def spec_metrics(args: argparse.Namespace, onnx: OnnxExport, checks: Evaluation) -> dict:
    """The spec's ``metrics``: every evaluation without its per-image rows."""
    return {
        "evaluated_on": f"{len(checks.items)} held-out PH2 images (ph2_split.json 'val', never trained on); "
        "top-scoring box per image, no box = IoU 0",
        "float": _strip(checks.evaluations["float"]),
        "int8": _strip(checks.evaluations["int8"]),
        "classical_baseline": _strip(checks.evaluations["classical_baseline"]),
        "float_vs_int8": checks.agree,
        "onnx_vs_pytorch_max_abs_diff": onnx.max_abs_diff,
        "composite_scenes": {
            "evaluated_on": f"{len(checks.scenes)} validation composites: lesions held out of training pasted small "
            "and off-centre on skin scenes",
            **{name: _strip(ev) for name, ev in checks.composites.items()},
        },
        **(
            {
                "closeups": {
                    "evaluated_on": f"{len(checks.closeup_items)} validation close-ups of held-out images: the lesion "
                    "fills most or all of the frame",
                    **{name: _strip(ev) for name, ev in checks.closeups.items()},
                }
            }
            if checks.closeups
            else {}
        ),
        **({"presence": _presence_summary(args.presence_report)} if args.presence_report else {}),
    }


def spec_dict(args: argparse.Namespace, run: Setup, onnx: OnnxExport, tflite: TfliteExport, checks: Evaluation) -> dict:
    """The detector's spec (``docs/ARCHITECTURE.md``): input, outputs, thresholds, metrics and provenance."""
    from edgeskin.runtime.spec import sha256_file

    output_name, scores_name, model = checks.output_name, checks.scores_name, checks.tflite_model
    train_metrics = {}
    if (run.work / "metrics.json").is_file():
        train_metrics = json.loads((run.work / "metrics.json").read_text())
    manifest = json.loads((run.work / "dataset" / "manifest.json").read_text())
    return {
        "format_version": 1,
        "name": MODEL_NAME,
        "task": "detection",
        "model_file": tflite.path.name,
        "sha256": sha256_file(tflite.path),
        "input": {
            "size": list(run.imgsz),
            "color_order": "RGB",
            "resize": "letterbox",
            "mean": [0.0, 0.0, 0.0],
            "std": [1.0, 1.0, 1.0],
        },
        "preprocessing": {"name": "none", "steps": []},
        "labels": ["lesion"],
        "outputs": {"predictions": output_name, **({"scores": scores_name} if scores_name else {})},
        "layout": "yolo_dfl" if scores_name else "yolo",
        "boxes": "xywh_normalized",
        "thresholds": {
            "confidence": CONFIDENCE if args.unsure is None else min(CONFIDENCE, args.unsure),
            "iou": IOU,
            "presence": args.presence,
            **({"unsure": args.unsure} if args.unsure is not None else {}),
        },
        "metrics": spec_metrics(args, onnx, checks),
        "provenance": {
            "command": "python -m training.train_detector && python -m convert.export_detector",
            "config": run.train_options,
            "data": _data_record(run.work / "dataset", manifest),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "training_seconds": train_metrics.get("timings", {}).get("train_s"),
            "model": "ultralytics yolov5n.yaml (anchor-free v5u head), nc=1, trained from scratch",
            "tensors": {
                "input": _tensor_record(model.input),
                "output": _tensor_record(model.output(output_name)),
                **({"scores": _tensor_record(model.output(scores_name))} if scores_name else {}),
            },
            "box_decoding": "outside the model, in float (edgeskin.core.dfl)" if scores_name else "in the graph",
            "quantization": "post-training full integer (onnx2tf/TFLite converter), per-channel weights, "
            f"{tflite.calibration_images} representative training images",
        },
    }


def write_outputs(run: Setup, tflite: TfliteExport, checks: Evaluation, spec: dict) -> dict:
    """The spec (validated), the Edge TPU report and the evaluations, into ``--out``; returns the TPU report."""
    from convert.edgetpu_report import edgetpu_report
    from edgeskin.runtime.spec import ModelSpec

    report = edgetpu_report(tflite.path)
    (run.out / f"{MODEL_NAME}.edgetpu_report.json").write_text(json.dumps(report, indent=1))
    validated = ModelSpec.from_dict(spec)
    (run.out / f"{MODEL_NAME}.json").write_text(json.dumps(spec, indent=1) + "\n")
    validated.save(run.out / f"{MODEL_NAME}.validated.json")
    (run.out / "evaluation.json").write_text(
        json.dumps(
            {**checks.evaluations, "float_vs_int8": checks.agree, "composite_scenes": checks.composites}, indent=1
        )
    )
    return report


def print_summary(checks: Evaluation, spec: dict, report: dict, tflite: TfliteExport, seconds: float) -> None:
    for name, evaluation in checks.evaluations.items():
        print(f"{name}: {json.dumps(_strip(evaluation))}")
    print(f"float vs int8: {json.dumps(checks.agree)}")
    for name, evaluation in checks.composites.items():
        print(f"composites {name}: {json.dumps(_strip(evaluation))}")
    print(f"tensors: {json.dumps(spec['provenance']['tensors'])}")
    print(f"edge tpu: {json.dumps(report['summary'])}")
    print(f"export took {seconds:.0f} s; {tflite.path} ({tflite.path.stat().st_size / 1e6:.2f} MB)")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run = setup(args)
    started = time.time()
    onnx = onnx_stage(args, run)
    tflite = tflite_stage(args, run, onnx)
    checks = evaluate_stage(args, run, onnx, tflite)
    spec = spec_dict(args, run, onnx, tflite, checks)
    report = write_outputs(run, tflite, checks, spec)
    print_summary(checks, spec, report, tflite, time.time() - started)
    if args.ship:
        print("\n".join(ship([tflite.path])))
    return 0


def _data_record(dataset: Path, manifest: dict) -> dict:
    """What the training data was, for the spec's provenance (either data recipe)."""
    record = {"recipe": manifest.get("recipe", "classic"), "counts": manifest["counts"]}
    for key in ("ham_box_derivation", "labeller_quality_on_ph2_train", "heldout_sizes", "train_pool_sizes"):
        if key in manifest:
            record[key] = manifest[key]
    record["ph2_validation_ids"] = json.loads((dataset / "ph2_split.json").read_text())["val"]
    if record["recipe"] == "masks":
        record["sources"] = (
            "HAM10000 and ISIC 2017/2018 Task 1 images with their lesion masks (CC BY-NC 4.0), PH2 training half "
            "(expert masks, research use with citation); close-ups, composites on skin scenes and hard negatives "
            "made from them; held-out ids in training/runs/detector/isic_holdout.json"
        )
    else:
        record["sources"] = (
            "PH2 (expert masks, research use with citation); HAM10000 (CC BY-NC 4.0) with boxes derived by "
            "classical segmentation; composites of both on skin scenes"
        )
    return record


def _presence_summary(path: str | Path) -> dict:
    """The presence/unsure choice of benchmarks/detector_presence.py with both rates, per held-out set."""
    report = json.loads(Path(path).read_text())
    summary = {
        "chosen_by": "benchmarks/detector_presence.py: " + report["choice"]["rule"],
        "presence": report["reported_at"]["presence"],
        "unsure": report["reported_at"]["unsure"],
        "non_lesion_frames": report["breakdown"]["non_lesion"]["all"],
    }
    for name, block in report["breakdown"].items():
        if name != "non_lesion":
            summary[name] = block["all"]
    return summary


def _scalar(values) -> float | int | list:
    arr = np.asarray(values).reshape(-1)
    if arr.size == 1:
        return arr[0].item()
    return arr.tolist()


if __name__ == "__main__":
    from convert.script import run_script

    run_script(main, "python -m convert.export_detector")
