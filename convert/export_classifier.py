"""Convert a trained edgeskin classifier (Keras) to full-INT8 TFLite, check it, calibrate it, ship it.

Example (the shipped model)::

    python -m convert.export_classifier --run artifacts/classifier --out edgeskin/models

Steps:
1. Deployable graph with two named outputs: ``logits`` (1, 7) and ``features`` (1, h, w, C), the last
   feature map for the class activation map.
2. Post-training full-integer quantization (int8 input/output, int8 ops only) with a representative set
   of real training images passed through the runtime's own resize and preprocessing profile.
   ``--qat-epochs N`` also runs quantization-aware training (tensorflow-model-optimization on a tf_keras
   copy of the model) and reports PTQ against QAT.
3. Check INT8 against float on the validation split through the edgeskin runtime itself (max probability
   difference, top-1 agreement, balanced accuracy / AUC deltas).
4. Temperature scaling fitted on validation INT8 logits; ECE before and after (in-sample and 2-fold
   cross-fitted); malignant triage threshold at sensitivity ≥ 0.85 on validation.
5. Writes ``<name>.tflite``, its spec ``<name>.json`` (with SHA-256, CAM head weights, calibration, triage
   and metrics) and the float ONNX export (``--onnx-dir``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]

from edgeskin.calibration import (  # noqa: E402
    apply_top_label,
    expected_calibration_error,
    fit_temperature,
    fit_top_label,
    triage_threshold,
)
from edgeskin.core.preprocess import get_profile  # noqa: E402
from edgeskin.core.views import check_views  # noqa: E402
from edgeskin.datasets import apply_split, load_ham10000  # noqa: E402
from edgeskin.image import read_image  # noqa: E402
from edgeskin.labels import DX_CLASSES, MALIGNANT_DX, dx_index_to_group_index, to_groups  # noqa: E402
from edgeskin.runtime.spec import ModelSpec, sha256_file  # noqa: E402
from edgeskin.tasks.classifier import softmax  # noqa: E402  (the runtime's, so export and device agree)

log = logging.getLogger("export_classifier")


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

    group_probs = to_groups(probs)
    group_labels = dx_index_to_group_index(labels)
    malignant_idx = [DX_CLASSES.index(d) for d in MALIGNANT_DX]
    out = {}
    for view, y, p in (("dx", labels, probs), ("group", group_labels, group_probs)):
        pred = p.argmax(1)
        out[view] = {
            "accuracy": float((pred == y).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, average="macro")),
            "auc": float(roc_auc_score(y, p, multi_class="ovr", average="macro", labels=range(p.shape[1]))),
        }
    out["malignant_auc"] = float(roc_auc_score(np.isin(labels, malignant_idx), probs[:, malignant_idx].sum(1)))
    return out


def save_signature_model(deploy, size: int, directory: str) -> None:
    """SavedModel with one signature: ``image`` (1, S, S, 3) float → ``logits``, ``features``.

    Keras' ExportArchive tracks every variable the endpoint reads; a hand-made tf.Module leaves seed
    generator state behind as READ_VARIABLE ops that the INT8 calibrator cannot run.
    """
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(deploy)
    archive.add_endpoint(
        name="serving_default",
        fn=lambda image: deploy(image, training=False),
        input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="image")],
    )
    archive.write_out(directory, verbose=False)


def convert_int8(saved_model_dir: str, representative: np.ndarray) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None].astype(np.float32)] for x in representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def int8_logits_on_pixels(tflite: bytes, pixels: np.ndarray) -> np.ndarray:
    """Logits of an INT8 model on model-input pixels (float 0..255, quantized with the input's own scale)."""
    from edgeskin.runtime.interpreter import TFLiteModel

    with tempfile.NamedTemporaryFile(suffix=".tflite") as handle:
        handle.write(tflite)
        handle.flush()
        model = TFLiteModel.from_file(handle.name, num_threads=2)
        return np.array([model.run(x[None].astype(np.float32))["logits"].reshape(-1) for x in pixels])


def convert_with_bias_correction(deploy, model, size: int, representative: np.ndarray, correction: np.ndarray):
    """PTQ, then empirical bias correction of the last layer, then PTQ again.

    Quantization noise shifts the mean logit of some classes (measured here: akiec -0.23, bkl +0.15 on
    an alpha-1.0 model, enough to move several rare-class images). The shift is estimated on training
    images (``correction``: never the validation split) as mean(float logits - INT8 logits) and added to
    the float model's Dense bias before converting again (bias correction, Nagel et al., ICCV 2019,
    section 4.2, here applied to the output layer only). Returns the INT8 bytes and the shift applied.
    """
    with tempfile.TemporaryDirectory() as tmp:
        save_signature_model(deploy, size, tmp)
        first = convert_int8(tmp, representative)
    float_logits = np.asarray(deploy.predict(correction.astype(np.float32), batch_size=32, verbose=0)["logits"])
    shift = (float_logits - int8_logits_on_pixels(first, correction)).mean(axis=0)
    layer = model.get_layer("logits")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, bias + shift.astype(bias.dtype)])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            save_signature_model(deploy, size, tmp)
            return convert_int8(tmp, representative), shift
    finally:
        layer.set_weights([kernel, bias])  # the float model stays the trained one (ONNX, CAM of float)


def deployable(model):
    import keras

    return keras.Model(
        model.inputs,
        {"logits": model.get_layer("logits").output, "features": model.get_layer("features").output},
    )


def run_int8(
    model_path: Path, spec: ModelSpec, images: list[np.ndarray], views: tuple[str, ...] = ("identity",)
) -> tuple[np.ndarray, float]:
    """INT8 logits of raw images through the edgeskin runtime (resize + profile + quantize), per view.

    Returns ``(V, N, n_classes)`` logits, one slice per test-time view, and the median invoke time of
    one view in ms.
    """
    from edgeskin.core.views import apply_view
    from edgeskin.tasks.classifier import Classifier

    spec.save(model_path.with_suffix(".json"))
    classifier = Classifier.from_model(model_path, threads=2)
    logits = np.zeros((len(views), len(images), spec.num_classes))
    invoke = []
    for n, image in enumerate(images):
        x = classifier.preprocess(image)
        for v, view in enumerate(views):
            logits[v, n] = classifier.model.run(apply_view(view, x))["logits"].reshape(-1)
            invoke.append(classifier.model.invoke_ms)
    return logits, float(np.median(invoke))


def float_logits_per_view(deploy, pixels: np.ndarray, views: tuple[str, ...]) -> np.ndarray:
    """``(V, N, n_classes)`` float logits of model-input pixels under each test-time view."""
    from edgeskin.core.views import apply_view

    out = []
    for view in views:
        batch = np.stack([apply_view(view, pixels[i : i + 1])[0] for i in range(len(pixels))]).astype(np.float32)
        out.append(np.asarray(deploy.predict(batch, batch_size=32, verbose=0)["logits"]))
    return np.stack(out)


def run_qat(model, run: Path, train, config: dict, epochs: int, name: str) -> Path:
    """Quantization-aware fine-tune in a separate process (see convert/qat_classifier.py)."""
    import subprocess

    from training.train_classifier import load_pixels

    weights = {"/".join(w.path.split("/")[-2:]): np.asarray(w) for w in model.weights}
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "weights.npz", **weights)
        x = load_pixels(train.paths, config["input_size"], config["profile"], "train (QAT)")
        np.savez(Path(tmp) / "data.npz", x=x, y=train.labels, n_classes=len(DX_CLASSES))
        out = run / f"{name}_qat.tflite"
        subprocess.run(
            [sys.executable, "-m", "convert.qat_classifier", "--weights", str(Path(tmp) / "weights.npz"),
             "--data", str(Path(tmp) / "data.npz"), "--config", str(run / "config.json"),
             "--epochs", str(epochs), "--out", str(out)],
            check=True, cwd=REPO,
        )  # fmt: skip
    return out


def export_command(argv: list[str]) -> str:
    """The command line of this export, quoted, without the free text of --note and --train-command."""
    import shlex

    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--note", "--train-command", "--trained-on"):
            skip = True
            continue
        if arg.startswith(("--note=", "--train-command=", "--trained-on=")):
            continue
        kept.append(arg)
    return shlex.join(["python", "-m", "convert.export_classifier", *kept])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=str(REPO / "artifacts/classifier"), help="training output directory")
    parser.add_argument("--checkpoint", default="model.keras", help="file in --run (model.keras = last epoch)")
    parser.add_argument("--out", default=str(REPO / "edgeskin/models"), help="where the .tflite and spec go")
    parser.add_argument("--name", default="edgeskin-mnv2-cls")
    parser.add_argument("--representative", type=int, default=300, help="training images for PTQ calibration")
    parser.add_argument(
        "--bias-correction",
        type=int,
        default=1000,
        help="training images to estimate the INT8 logit shift on (0: no bias correction)",
    )
    parser.add_argument("--min-sensitivity", type=float, default=0.85, help="triage: malignant sensitivity on val")
    parser.add_argument("--qat-epochs", type=int, default=0, help="also run QAT for N epochs and compare")
    parser.add_argument("--ship", choices=("ptq", "qat"), default="ptq", help="which INT8 model to write")
    parser.add_argument(
        "--qat-model",
        help="evaluate this QAT .tflite (made with --qat-epochs N; pass the same N) instead of training one",
    )
    parser.add_argument("--onnx-dir", default=str(REPO / "artifacts/onnx"))
    parser.add_argument(
        "--tta",
        default="identity,hflip,vflip,rot180",
        help="comma-separated test-time views stored in the spec and measured ('identity' alone: none)",
    )
    parser.add_argument("--trained-on", default="this machine's CPU", help="where the run trained (model card)")
    parser.add_argument("--note", action="append", default=[], help="a line for the model card (repeatable)")
    parser.add_argument("--images", help="HAM10000 image folder (default: the training config's)")
    parser.add_argument("--metadata", help="HAM10000 metadata CSV (default: the training config's)")
    parser.add_argument(
        "--train-command",
        default="python -m training.train_classifier --config training/configs/classifier.json --out artifacts/classifier",
        help="how the run was trained (recorded in the spec)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import keras
    from tqdm import tqdm

    from training.train_classifier import load_pixels

    started = time.time()
    run = Path(args.run)
    config = json.loads((run / "config.json").read_text())
    split = json.loads((run / "split.json").read_text())
    size = config["input_size"]
    data = load_ham10000(REPO / (args.metadata or config["metadata"]), REPO / (args.images or config["images"]))
    train, val = apply_split(data, split, "train"), apply_split(data, split, "val")
    rng = np.random.default_rng(0)
    rep_idx = rng.choice(len(train), size=min(args.representative, len(train)), replace=False)
    x_rep = load_pixels([train.paths[i] for i in rep_idx], size, config["profile"], "representative")
    x_val = load_pixels(val.paths, size, config["profile"], "val (float)")
    raw_val = [read_image(p) for p in tqdm(val.paths, desc="val (raw)", mininterval=5)]

    model = keras.models.load_model(run / args.checkpoint, compile=False)
    deploy = deployable(model)
    views = check_views(["identity", *[v for v in args.tta.split(",") if v and v != "identity"]], (size, size))
    float_view_logits = float_logits_per_view(deploy, x_val, views)
    float_logits = float_view_logits.mean(axis=0)  # as deployed: logits averaged over the views
    float_probs = softmax(float_logits)
    float_metrics = classification_metrics(val.labels, float_probs)
    float_single = classification_metrics(val.labels, softmax(float_view_logits[0]))
    log.info("float: %s", float_metrics)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / f"{args.name}.tflite"
    kernel, bias = model.get_layer("logits").get_weights()
    candidates: dict[str, dict] = {}
    if args.qat_epochs > 0 or args.qat_model:
        # From the trained weights, before anything below touches them.
        qat_path = (
            Path(args.qat_model) if args.qat_model else run_qat(model, run, train, config, args.qat_epochs, args.name)
        )
        head = qat_path.with_suffix(".head.npz")
        q_kernel, q_bias = (np.load(head)["kernel"], np.load(head)["bias"]) if head.is_file() else (kernel, bias)
        candidates["qat"] = {"bytes": qat_path.read_bytes(), "kernel": q_kernel, "bias": q_bias, "file": str(qat_path)}
    shift = None
    if args.bias_correction > 0:
        rest = np.setdiff1d(np.arange(len(train)), rep_idx)
        corr_idx = rng.choice(rest, size=min(args.bias_correction, len(rest)), replace=False)
        x_corr = load_pixels([train.paths[i] for i in corr_idx], size, config["profile"], "bias correction")
        tflite, shift = convert_with_bias_correction(deploy, model, size, x_rep, x_corr)
        log.info("bias correction on %d training images: logit shift %s", len(x_corr), np.round(shift, 4).tolist())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            save_signature_model(deploy, size, tmp)
            tflite = convert_int8(tmp, x_rep)
    candidates["ptq"] = {"bytes": tflite, "kernel": kernel, "bias": bias + (0 if shift is None else shift)}
    if args.ship not in candidates:
        raise SystemExit(f"--ship {args.ship}: no {args.ship.upper()} model was made (QAT needs --qat-epochs N)")

    def base_spec_for(candidate: dict, path: Path) -> dict:
        spec = {
            "format_version": 1,
            "name": args.name,
            "task": "classification",
            "model_file": path.name,
            "sha256": sha256_file(path),
            "input": {"size": [size, size], "color_order": "RGB", "resize": "stretch", "mean": [0] * 3, "std": [1] * 3},
            "preprocessing": get_profile(config["profile"]).to_dict(),
            "labels": list(DX_CLASSES),
            "outputs": {"probabilities": "logits", "features": "features"},
            "outputs_are": "logits",
            "cam": {
                "weights": np.asarray(candidate["kernel"], float).round(6).tolist(),
                "bias": np.asarray(candidate["bias"], float).round(6).tolist(),
            },
        }
        if len(views) > 1:
            spec["tta"] = list(views)
        return spec

    # Each INT8 candidate through the runtime, as deployed (views averaged) and with one view.
    comparison: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, candidate in candidates.items():
            path = Path(tmp) / f"{args.name}.tflite"
            path.write_bytes(candidate["bytes"])
            view_logits, candidate["invoke_ms"] = run_int8(
                path, ModelSpec.from_dict(base_spec_for(candidate, path)), raw_val, views
            )
            candidate["logits"] = view_logits.mean(axis=0)
            candidate["single"] = classification_metrics(val.labels, softmax(view_logits[0]))
            probs = softmax(candidate["logits"])
            comparison[kind] = {
                **classification_metrics(val.labels, probs),
                "single_view": candidate["single"],
                "top1_agreement_with_float": float((probs.argmax(1) == float_probs.argmax(1)).mean()),
                "size_bytes": len(candidate["bytes"]),
            }
            log.info("%s: %s", kind.upper(), comparison[kind])
    shipped = candidates[args.ship]
    model_path.write_bytes(shipped["bytes"])
    base_spec = base_spec_for(shipped, model_path)
    int8_logits, invoke_ms = shipped["logits"], shipped["invoke_ms"]
    int8_probs = softmax(int8_logits)
    int8_metrics = classification_metrics(val.labels, int8_probs)
    int8_single = shipped["single"]
    agreement = {
        "top1_agreement": float((int8_probs.argmax(1) == float_probs.argmax(1)).mean()),
        "max_probability_difference": float(np.abs(int8_probs - float_probs).max()),
        "mean_probability_difference": float(np.abs(int8_probs - float_probs).mean()),
        "balanced_accuracy_delta": int8_metrics["dx"]["balanced_accuracy"] - float_metrics["dx"]["balanced_accuracy"],
        "auc_delta": int8_metrics["dx"]["auc"] - float_metrics["dx"]["auc"],
    }
    log.info("int8 (%s, shipped): %s", args.ship, int8_metrics)
    log.info("int8 vs float: %s", agreement)

    # Calibration on INT8 logits: temperature (NLL), then the top-label map (isotonic); in-sample fit
    # (stored) and a 2-fold cross-fit of both steps (the honest estimate).
    temperature = fit_temperature(int8_logits, val.labels)
    scaled = softmax(int8_logits, temperature)
    top_label = fit_top_label(scaled, val.labels)
    calibrated = apply_top_label(scaled, top_label)
    ece_before = expected_calibration_error(int8_probs, val.labels)
    halves = np.arange(len(val)) % 2 == 0
    cross, cross_t = [], []
    for fit_part in (halves, ~halves):
        t = fit_temperature(int8_logits[fit_part], val.labels[fit_part])
        mapping = fit_top_label(softmax(int8_logits[fit_part], t), val.labels[fit_part])
        held_out = softmax(int8_logits[~fit_part], t)
        cross_t.append(expected_calibration_error(held_out, val.labels[~fit_part]))
        cross.append(expected_calibration_error(apply_top_label(held_out, mapping), val.labels[~fit_part]))
    malignant_idx = [DX_CLASSES.index(d) for d in MALIGNANT_DX]
    triage = triage_threshold(
        calibrated[:, malignant_idx].sum(1), np.isin(val.labels, malignant_idx), args.min_sensitivity
    )
    calibration = {
        "temperature": round(temperature, 5),
        "top_label": {k: [round(v, 6) for v in vs] for k, vs in top_label.items()},
        "fitted_on": f"validation split ({len(val)} images), INT8 logits averaged over the views {list(views)}",
        "ece_before": round(ece_before, 5),
        "ece_after_temperature": round(expected_calibration_error(scaled, val.labels), 5),
        "ece_after": round(expected_calibration_error(calibrated, val.labels), 5),
        "ece_after_temperature_2fold_crossfit": round(float(np.mean(cross_t)), 5),
        "ece_after_2fold_crossfit": round(float(np.mean(cross)), 5),
        "ece_bins": 15,
    }
    log.info("calibration: %s; triage: %s", calibration, triage)
    qat = None
    if "qat" in comparison:
        qat = {"epochs": args.qat_epochs, "file": candidates["qat"]["file"], **comparison["qat"]}

    onnx_path, onnx_check = None, None
    try:
        Path(args.onnx_dir).mkdir(parents=True, exist_ok=True)
        onnx_path = Path(args.onnx_dir) / f"{args.name}.onnx"
        model.predict(x_val[:1].astype(np.float32), verbose=0)  # a loaded model must be called before export
        model.export(str(onnx_path), format="onnx", verbose=False)
        import onnxruntime

        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        onnx_probs = session.run(None, {session.get_inputs()[0].name: x_val[:16].astype(np.float32)})[0]
        onnx_check = float(np.abs(onnx_probs - softmax(float_view_logits[0][:16])).max())
        log.info("ONNX float export: max |p_onnx - p_keras| = %.2e on 16 validation images", onnx_check)
    except Exception as exc:  # ONNX is a side export: report, keep the INT8 model
        log.warning("ONNX export failed: %s", exc)
        onnx_path = None

    spec = ModelSpec.from_dict(
        {
            **base_spec,
            "calibration": calibration,
            "triage": triage,
            "metrics": {
                "validation_images": len(val),
                "float": float_metrics,
                "int8_uncalibrated": int8_metrics,
                "int8_calibrated": classification_metrics(val.labels, calibrated),
                "int8_vs_float": agreement,
                "test_time_views": list(views),
                "float_single_view": float_single,
                "int8_single_view_uncalibrated": int8_single,
                "qat": qat,
                "quantization": {"shipped": args.ship, **comparison},
                "int8_invoke_ms_median_2_threads": round(invoke_ms, 3),
                "int8_invoke_ms_note": "one view; the Classifier runs one invoke per test-time view",
            },
            "provenance": {
                "data": f"HAM10000 (CC BY-NC 4.0), lesion-grouped stratified split, seed {split['seed']}",
                "license": "CC BY-NC 4.0 (inherited from HAM10000): non-commercial use only",
                "split_file": "training/runs/classifier/split.json",
                "training_config": config,
                "checkpoint": args.checkpoint,
                "representative_images": len(x_rep),
                "bias_correction": (
                    None
                    if shift is None
                    else {"training_images": args.bias_correction, "logit_shift": np.round(shift, 5).tolist()}
                ),
                "train_command": args.train_command,
                "trained_on": args.trained_on,
                "notes": args.note,
                "export_command": export_command(argv if argv is not None else sys.argv[1:]),
                "onnx": str(onnx_path) if onnx_path else None,
                "onnx_max_probability_difference_vs_keras": onnx_check,
                "date": time.strftime("%Y-%m-%d"),
            },
        }
    )
    spec.save(model_path.with_suffix(".json"))
    (run / "export_summary.json").write_text(json.dumps(spec.to_dict()["metrics"], indent=1))
    log.info(
        "wrote %s (%.1f MB) and its spec in %.0f s", model_path, model_path.stat().st_size / 1e6, time.time() - started
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
