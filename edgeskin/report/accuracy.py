"""Accuracy of the INT8 edge models against their float baselines, on the same validation images.

``python -m edgeskin.report.accuracy [--what classifier,detector] [--keras-backend tensorflow] [--out FILE]``

Classifier: the validation split of the classifier's training run (``--classifier-split``, never trained on).
Float baseline: the Keras model it was exported from (``--float-classifier``) on the pixels the
INT8 model sees (same resize and preprocessing profile), on the GPU when Keras' backend has one, else the CPU
(the result says which). INT8: :class:`~edgeskin.tasks.Classifier` on the decoded image, as deployed
(calibration temperature applied) and uncalibrated (temperature 1, like the float model). Metrics: balanced
accuracy, one-vs-rest AUC and malignant sensitivity/specificity at the spec's triage threshold
(:func:`edgeskin.evaluation.classify_report`). ResNet50 and EfficientNetB0 float classifiers get a row each:
scored when a trained ``.keras`` for them exists under ``--trained-dir``, otherwise the row says why not; a GPU
run's stored float results (``--gpu-baseline``) are scored on the same images.

Detector: the held-out PH2 half (``--detector-split``). Float baseline: ultralytics
``YOLO(best.pt).predict`` (PyTorch); INT8: :class:`~edgeskin.tasks.Detector`; plus the classical localiser.
Metrics: IoU of the top box with the expert mask's box (:func:`edgeskin.evaluation.detection_report`) and the
float-vs-INT8 agreement of the top boxes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgeskin.labels import DX_CLASSES
from edgeskin.report.common import (
    Missing,
    ReportInputs,
    add_input_arguments,
    detector_baseline,
    display_path,
    emit_json,
    ham_validation,
    keras_baseline,
    model_input_pixels,
    models,
    ph2_validation,
    ultralytics_imgsz,
)

OTHER_BACKBONES = {"resnet50": "ResNet50", "efficientnetb0": "EfficientNetB0"}


def gpu_baseline_rows(val, threshold: float | None, path: Path | None) -> dict[str, Any]:
    """Float classifiers trained and scored on a GPU machine (:mod:`benchmarks.float_baseline`).

    That machine is not here when the report runs, so its stored probabilities are scored again here with
    the same metrics and triage threshold as the INT8 rows, on the same images (matched by image id;
    a run whose images differ from this split is refused). Its latency is the GPU's, as stored.
    """
    from edgeskin.evaluation import classify_report

    if path is None:
        return {"missing": "no GPU float-baseline file given (--gpu-baseline; made by training/gpu_run.sh)"}
    if not path.is_file():
        return {"missing": f"no GPU float-baseline file at {display_path(path)} (made by training/gpu_run.sh)"}
    data = json.loads(path.read_text())
    position = {image_id: i for i, image_id in enumerate(val.image_ids)}
    rows: dict[str, Any] = {}
    for name, run in data.get("runs", {}).items():
        if "missing" in run:
            rows[name] = {"missing": run["missing"]}
            continue
        ids = run["image_ids"]
        if sorted(ids) != sorted(val.image_ids):
            rows[name] = {"missing": f"scored on {len(ids)} images that are not this validation split"}
            continue
        stored = np.asarray(run["probs"], np.float64)
        probs = np.zeros((len(ids), len(DX_CLASSES)))
        probs[[position[i] for i in ids]] = _reorder(stored, _training_order(stored))
        rows[name] = {
            **_summary(classify_report(val.labels, probs, malignant_threshold=threshold)),
            **{
                k: run.get(k)
                for k in ("backbone", "alpha", "input_size", "weights", "epochs", "device", "size_mb", "model_sha256")
            },
            "keras_backend": run.get("keras_backend"),
            "latency": run.get("latency"),
            "note": run.get("note"),
            "_probs": probs,
        }
    return {
        "file": display_path(path),
        "date": data.get("date"),
        "made_by": data.get("made_by"),
        "rows": rows,
    }


def _reorder(probs: np.ndarray, labels: tuple[str, ...]) -> np.ndarray:
    """The 7-dx view in :data:`edgeskin.labels.DX_CLASSES` order (ak + scc = akiec for an 8-dx model)."""
    from edgeskin.labels import to_dx7

    return to_dx7(probs, labels).astype(np.float64)


def _training_order(probs: np.ndarray) -> tuple[str, ...]:
    """The output order of a Keras classifier trained here: the 8 ISIC 2019 dx or the 7 HAM10000 dx."""
    from edgeskin.labels import DX8_CLASSES, DX_CLASSES

    return DX8_CLASSES if probs.shape[1] == len(DX8_CLASSES) else DX_CLASSES


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    dx, malignant = report["dx"], report["malignant"]
    return {
        "n": report["n"],
        "balanced_accuracy": dx["balanced_accuracy"],
        "accuracy": dx["accuracy"],
        "macro_f1": dx["macro_f1"],
        "auc": dx["auc"],
        "malignant_sensitivity": malignant["sensitivity"],
        "malignant_specificity": malignant["specificity"],
        "malignant_auc": malignant["auc"],
        "malignant_rule": malignant["rule"],
        "malignant_counts": malignant["counts"],
    }


def _find_other_backbone(backbone: str, folder: Path | None) -> Path | None:
    """A trained ``.keras`` of ``backbone`` under ``folder`` (its run's config.json names the backbone)."""
    for config in sorted(folder.glob("**/config.json")) if folder is not None else ():
        try:
            if json.loads(config.read_text()).get("backbone") != backbone:
                continue
        except (OSError, ValueError, AttributeError):
            continue
        for name in ("model.keras", "best.keras"):
            if (config.parent / name).is_file():
                return config.parent / name
    return None


def _not_trained_reason(backbone: str, given: ReportInputs) -> str:
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    weights = {
        "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "efficientnetb0": "efficientnetb0_notop.h5",
    }[backbone]
    gpu = given.gpu_baseline
    on_gpu = gpu is not None and gpu.is_file() and backbone in json.loads(gpu.read_text()).get("runs", {})
    where = f"under {display_path(given.trained_dir)}" if given.trained_dir else "(no --trained-dir given)"
    parts = [
        f"scored on a GPU only (trained from scratch there: see the GPU rows); no {OTHER_BACKBONES[backbone]} .keras here"
        if on_gpu
        else f"not trained: no trained {OTHER_BACKBONES[backbone]} .keras {where}"
    ]
    if not (keras_home / weights).is_file():
        parts.append(f"no ImageNet weights offline ({weights} is not in {keras_home}, and there is no network)")
    if on_gpu:
        parts.append(f"its .keras (up to 95 MB) stayed on the GPU machine; its stored results: {gpu.name}")
    else:
        parts.append("training one from scratch on this 2-core CPU-only machine was out of reach in the session")
    return "; ".join(parts)


def _keras_predict(model_path: Path, pixels: np.ndarray, backend: str) -> tuple[np.ndarray, str]:
    from edgeskin.report.common import keras_backend_modules, keras_device, require_extra

    require_extra(keras_backend_modules())
    import keras

    net = keras.models.load_model(model_path, compile=False)
    probs = np.asarray(net.predict(pixels.astype(np.float32), batch_size=32, verbose=0), np.float64)
    return probs, keras_device(backend)


def classifier_accuracy(
    given: ReportInputs, limit: int | None = None, keras_model: Path | None = None
) -> dict[str, Any]:
    """Float Keras vs INT8 TFLite on the classifier's validation split (see the module docstring)."""
    from edgeskin.evaluation import classify_report
    from edgeskin.image import read_image
    from edgeskin.tasks.classifier import Classifier, softmax

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    int8_path = models()[0]
    val = ham_validation(given, limit)
    out: dict[str, Any] = {
        "images": len(val.paths),
        "split": "the training run's split.json 'val': HAM10000 and, for a multi-source run, ISIC 2017; whole images, 7-dx view",
    }
    with Classifier.from_model(int8_path, threads=2) as classifier:
        spec = classifier.spec
        threshold = spec.malignant_threshold
        deployed, uncalibrated = [], []
        for path in val.paths:
            image = read_image(path)
            deployed.append(classifier.classify(image).probabilities)
            logits = classifier.model.run(classifier.preprocess(image))[spec.outputs["probabilities"]].reshape(-1)
            uncalibrated.append(softmax(logits) if spec.outputs_are == "logits" else logits)
        labels = classifier.labels
    int8_deployed = _reorder(np.asarray(deployed, np.float64), labels)
    int8_plain = _reorder(np.asarray(uncalibrated, np.float64), labels)
    out["triage_threshold"] = threshold
    out["threshold_note"] = (
        "the spec's triage threshold, fitted by the export on the INT8 calibrated probabilities of this same "
        "validation split (min sensitivity 0.85); applied unchanged to every row"
    )
    rows: dict[str, Any] = {
        "int8_tflite": {
            **_summary(classify_report(val.labels, int8_deployed, malignant_threshold=threshold)),
            "model": int8_path.name,
            "size_mb": round(int8_path.stat().st_size / 1e6, 3),
            "device": "CPU (TFLite interpreter, 2 threads)",
            "note": f"as deployed: calibration temperature {spec.temperature:g}",
        },
        "int8_tflite_uncalibrated": {
            **_summary(classify_report(val.labels, int8_plain, malignant_threshold=threshold)),
            "model": int8_path.name,
            "device": "CPU (TFLite interpreter, 2 threads)",
            "note": "temperature 1 (like the float model)",
        },
    }
    try:
        keras_model = keras_model or keras_baseline(given, int8_path)
        size = int(spec.input.size[0])
        pixels = model_input_pixels(val.paths, size, spec.preprocessing_profile())
        float_probs, device = _keras_predict(keras_model, pixels, backend)
        float_probs = _reorder(float_probs, _training_order(float_probs))
        # The Keras model's output order is the training order (the INT8 spec's labels come from it).
        rows["float_keras"] = {
            **_summary(classify_report(val.labels, float_probs, malignant_threshold=threshold)),
            "model": display_path(keras_model),
            "size_mb": round(keras_model.stat().st_size / 1e6, 3),
            "device": device,
            "keras_backend": backend,
            "note": "float32 Keras, temperature 1",
        }
        agree = float((float_probs.argmax(1) == int8_deployed.argmax(1)).mean())
        out["int8_vs_float"] = {
            "top1_agreement": round(agree, 4),
            "mean_abs_probability_difference": round(float(np.abs(float_probs - int8_plain).mean()), 5),
            "balanced_accuracy_ratio_int8_over_float": round(
                rows["int8_tflite"]["balanced_accuracy"] / rows["float_keras"]["balanced_accuracy"], 4
            ),
            "auc_ratio_int8_over_float": round(rows["int8_tflite"]["auc"] / rows["float_keras"]["auc"], 4),
        }
    except Missing as exc:
        rows["float_keras"] = {"missing": str(exc)}
    for backbone, title in OTHER_BACKBONES.items():
        found = _find_other_backbone(backbone, given.trained_dir)
        if found is None:
            rows[f"float_{backbone}"] = {"missing": _not_trained_reason(backbone, given), "title": title}
            continue
        config = json.loads((found.parent / "config.json").read_text())
        size = int(config.get("input_size", 224))
        pixels = model_input_pixels(val.paths, size, config.get("profile") or spec.preprocessing_profile())
        probs, device = _keras_predict(found, pixels, backend)
        probs = _reorder(probs, _training_order(probs))
        rows[f"float_{backbone}"] = {
            **_summary(classify_report(val.labels, probs, malignant_threshold=threshold)),
            "model": display_path(found),
            "size_mb": round(found.stat().st_size / 1e6, 3),
            "device": device,
            "title": title,
            "note": "float32 Keras; evaluated on the same split only if its run used this split",
        }
    gpu = gpu_baseline_rows(val, threshold, given.gpu_baseline)
    # The GPU row of the very float model the shipped INT8 one came from, if it is there (by SHA-256).
    source_sha = None
    try:
        from edgeskin.runtime.spec import sha256_file

        source_sha = sha256_file(keras_baseline(given, int8_path))
    except Missing:
        pass
    shipped = next(
        (row for row in gpu.get("rows", {}).values() if source_sha and row.get("model_sha256") == source_sha), {}
    )
    if "_probs" in shipped:
        gpu_probs = shipped["_probs"]
        gpu["int8_vs_gpu_float"] = {
            "top1_agreement": round(float((gpu_probs.argmax(1) == int8_plain.argmax(1)).mean()), 4),
            "float_row": next(name for name, row in gpu["rows"].items() if row is shipped),
            "balanced_accuracy_delta_points": round(
                100 * (rows["int8_tflite"]["balanced_accuracy"] - shipped["balanced_accuracy"]), 2
            ),
            "auc_delta": round(rows["int8_tflite"]["auc"] - shipped["auc"], 4),
        }
    for row in gpu.get("rows", {}).values():
        row.pop("_probs", None)
    out["gpu_float"] = gpu
    out["rows"] = rows
    out["labels"] = list(DX_CLASSES)
    return out


def detector_accuracy(given: ReportInputs, limit: int | None = None, weights: Path | None = None) -> dict[str, Any]:
    """Float ultralytics vs INT8 Detector (and the classical localiser) on the held-out PH2 images."""
    from edgeskin.core.boxes import pair_iou
    from edgeskin.evaluation import detection_report
    from edgeskin.image import read_image
    from edgeskin.report.peers import _top_box
    from edgeskin.tasks.detector import ClassicalDetector, Detector

    int8_path = models()[1]
    frames = ph2_validation(given, limit)
    images = [read_image(f.path) for f in frames]
    truth = [f.gt_box for f in frames]
    split = display_path(given.need("detector_split", "the detector's PH2 split"))
    out: dict[str, Any] = {"images": len(frames), "split": f"{split} 'val' (PH2)"}
    rows: dict[str, Any] = {}
    predictions: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    with Detector.from_model(int8_path, threads=2) as detector:
        preds = []
        for image in images:
            d = detector.detect(image)
            preds.append((d.xyxy, d.confidence))
        predictions["int8_tflite"] = preds
        conf, iou, imgsz = detector.confidence_threshold, detector.iou_threshold, ultralytics_imgsz(detector.input_size)
    rows["int8_tflite"] = {
        **detection_report(truth, preds),
        "model": int8_path.name,
        "size_mb": round(int8_path.stat().st_size / 1e6, 3),
        "device": "CPU (TFLite interpreter, 2 threads)",
    }
    classical = ClassicalDetector()
    preds = []
    for image in images:
        d = classical.detect(image)
        preds.append((d.xyxy, d.confidence))
    rows["classical"] = {**detection_report(truth, preds), "model": "ClassicalDetector (no model)", "device": "CPU"}
    try:
        weights = weights or detector_baseline(given, int8_path)
        from edgeskin.report.common import set_offline_ultralytics

        set_offline_ultralytics(given)
        import torch
        from ultralytics import YOLO

        yolo = YOLO(str(weights), task="detect")
        device = "cuda:0" if torch.cuda.is_available() else "cpu"
        preds = []
        for image in images:
            result = yolo.predict(
                np.ascontiguousarray(image[..., ::-1]), imgsz=imgsz, conf=conf, iou=iou, device=device, verbose=False
            )[0]
            preds.append((result.boxes.xyxy.cpu().numpy(), result.boxes.conf.cpu().numpy()))
        predictions["float_pytorch"] = preds
        rows["float_pytorch"] = {
            **detection_report(truth, preds),
            "model": display_path(weights),
            "size_mb": round(Path(weights).stat().st_size / 1e6, 3),
            "device": f"GPU ({torch.cuda.get_device_name(0)})" if device != "cpu" else "CPU (no GPU available)",
            "note": f"ultralytics YOLO(best.pt).predict, imgsz {imgsz}, conf {conf}, iou {iou} (its own letterbox and NMS)",
        }
        pair = [
            pair_iou(_top_box(*a), _top_box(*b))
            for a, b in zip(predictions["float_pytorch"], predictions["int8_tflite"], strict=True)
        ]
        out["int8_vs_float"] = {
            "mean_top_box_iou_float_vs_int8": round(float(np.mean(pair)), 4),
            "share_top_boxes_iou_ge_0.9": round(float(np.mean(np.asarray(pair) >= 0.9)), 4),
            "mean_iou_ratio_int8_over_float": (
                round(rows["int8_tflite"]["mean_iou"] / rows["float_pytorch"]["mean_iou"], 4)
                if rows["float_pytorch"]["mean_iou"]
                else None
            ),
        }
    except Missing as exc:
        rows["float_pytorch"] = {"missing": str(exc)}
    for row in rows.values():
        row.pop("definitions", None)
    out["rows"] = rows
    out["definitions"] = (
        "mean/median IoU of each image's top-scoring box with the tight box of the expert mask; no box = IoU 0"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", default="classifier,detector", help="comma-separated: classifier, detector")
    parser.add_argument("--limit", type=int, help="at most this many images per task (default: all)")
    parser.add_argument(
        "--keras-backend",
        choices=("tensorflow", "torch", "jax"),
        help="Keras backend for the float classifier (set before Keras is imported)",
    )
    parser.add_argument("--out", help="write the JSON here instead of stdout")
    add_input_arguments(parser)
    args = parser.parse_args(argv)
    if args.keras_backend:
        os.environ["KERAS_BACKEND"] = args.keras_backend
    given = ReportInputs.from_args(args)
    result: dict[str, Any] = {}
    for what in args.what.split(","):
        try:
            result[what] = {"classifier": classifier_accuracy, "detector": detector_accuracy}[what](given, args.limit)
        except Missing as exc:
            result[what] = {"missing": str(exc)}
    return emit_json(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
