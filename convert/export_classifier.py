"""Convert a trained edgeskin classifier (Keras) to full-INT8 TFLite, check it, calibrate it, ship it.

Example (the shipped model)::

    python -m convert.export_classifier --run artifacts/classifier --qat-epochs 1 --choose qat \
        --out artifacts/export/classifier [--ship]

Steps:
1. Deployable graph with two named outputs: ``logits`` (1, K) and ``features`` (1, h, w, C), the last
   feature map for the class activation map.
2. Post-training full-integer quantization (int8 input/output, int8 ops only) with a representative set
   of real training crops made exactly as the runtime makes them (``training.classifier_data``).
   ``--qat-epochs N`` also runs quantization-aware training (tensorflow-model-optimization on a tf_keras
   copy of the model, on source-balanced augmented training crops) and reports PTQ against QAT.
3. Check INT8 against float on the internal validation split (lesion-grouped, all sources) through the
   edgeskin runtime itself. The candidate written (``--choose``) is chosen on these internal figures only.
4. Calibration on the internal validation INT8 logits (:func:`edgeskin.calibration.fit_calibration`:
   temperature, then a smooth top-label map); malignant triage threshold fitted on the same images with a
   margin (sensitivity ≥ ``--min-sensitivity`` + ``--margin`` overall and ≥ ``--min-sensitivity`` in each
   source), stored with its per-source sensitivity and specificity.
5. External checks, after the choice and the calibration, never used for either: the source-held-out
   third of the ISIC 2017 images and the PH2 images (another clinic), each classified on its expert mask's
   box with the pipeline's margin, reported per source (melanoma AUC, referral, sensitivity at 80/90 %
   specificity, ECE).
6. Writes ``<name>.tflite``, its spec ``<name>.json`` (SHA-256, CAM head weights, calibration, triage,
   metrics per source) into ``--out`` (never the shipped ``edgeskin/models``), the float ONNX export into
   ``--onnx-dir`` (default ``--out``). ``--ship`` then replaces the shipped model with them and says what
   it replaced (:mod:`convert.ship`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]

from convert.ship import refuse_shipped_out, ship  # noqa: E402
from edgeskin.calibration import (  # noqa: E402
    calibrated_probabilities,
    expected_calibration_error,
    fit_calibration,
    triage_threshold,
)
from edgeskin.core.crop import crop_with_margin  # noqa: E402
from edgeskin.core.preprocess import get_profile  # noqa: E402
from edgeskin.core.views import check_views  # noqa: E402
from edgeskin.datasets import apply_split  # noqa: E402
from edgeskin.evaluation import classify_report  # noqa: E402
from edgeskin.labels import DX8_CLASSES, malignant_index  # noqa: E402
from edgeskin.runtime.spec import ModelSpec, sha256_file  # noqa: E402
from edgeskin.tasks.classifier import softmax  # noqa: E402  (the runtime's, so export and device agree)

log = logging.getLogger("export_classifier")


def classification_metrics(
    labels: np.ndarray, probs: np.ndarray, threshold: float | None = None, dx_labels: tuple[str, ...] = DX8_CLASSES
) -> dict:
    """The export's summary of :func:`edgeskin.evaluation.classify_report` (8 dx, 7-dx view, groups, malignant)."""
    report = classify_report(labels, probs, malignant_threshold=threshold, dx_labels=dx_labels)
    out = {
        **(
            {"dx8": {k: report["dx8"][k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "auc")}}
            if "dx8" in report
            else {}
        ),
        "dx": {k: report["dx"][k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "auc")},
        "group": {k: report["group"][k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "auc")},
        "malignant_auc": report["malignant"]["auc"],
        "melanoma": report["melanoma"],
        "scc_vs_ak": report.get("scc_vs_ak"),
        "n": report["n"],
    }
    if threshold is not None:
        out["malignant"] = {k: report["malignant"][k] for k in ("sensitivity", "specificity", "threshold", "counts")}
    return out


def per_source(labels: np.ndarray, probs: np.ndarray, sources: np.ndarray, threshold: float | None) -> dict:
    """:func:`classification_metrics` of each source and of all together, with the top-label ECE."""
    out = {}
    for name in ["all", *sorted(set(sources.tolist()))]:
        part = np.ones(len(labels), bool) if name == "all" else sources == name
        out[name] = {
            **classification_metrics(labels[part], probs[part], threshold),
            "ece": round(expected_calibration_error(probs[part], labels[part]), 5),
        }
    return out


def transfer_triage(
    p_malignant: np.ndarray, is_malignant: np.ndarray, sources: np.ndarray, min_sensitivity: float, margin: float
) -> dict:
    """The refer threshold: sensitivity ≥ ``min_sensitivity + margin`` on all images and ≥ ``min_sensitivity``
    in every source (the lower of the two thresholds), with the sensitivity and specificity per source."""
    overall = triage_threshold(p_malignant, is_malignant, min(1.0, min_sensitivity + margin))
    threshold = overall["malignant_threshold"]
    for name in sorted(set(sources.tolist())):
        part = sources == name
        if is_malignant[part].any() and (~is_malignant[part]).any():
            threshold = min(threshold, triage_threshold(p_malignant[part], is_malignant[part], min_sensitivity)[
                "malignant_threshold"])  # fmt: skip
    referred = p_malignant >= threshold

    def rates(part: np.ndarray) -> dict:
        pos, neg = part & is_malignant, part & ~is_malignant
        return {
            "sensitivity": round(float(referred[pos].mean()), 4) if pos.any() else None,
            "specificity": round(float((~referred[neg]).mean()), 4) if neg.any() else None,
            "n_malignant": int(pos.sum()),
            "n_benign": int(neg.sum()),
        }

    return {
        "malignant_threshold": float(threshold),
        "min_sensitivity": min_sensitivity,
        "margin": margin,
        "rule": f"sensitivity >= {min_sensitivity + margin:g} on the internal validation images of all sources and "
        f">= {min_sensitivity:g} in each source; the lower threshold",
        **rates(np.ones(len(sources), bool)),
        "per_source": {name: rates(sources == name) for name in sorted(set(sources.tolist()))},
    }


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

    from convert.int8 import full_integer

    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
    return full_integer(converter, representative)


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


def run_qat(model, run: Path, x: np.ndarray, y: np.ndarray, epochs: int, name: str) -> Path:
    """Quantization-aware fine-tune in a separate process (see convert/qat_classifier.py) on crops ``x``."""
    import subprocess

    weights = {"/".join(w.path.split("/")[-2:]): np.asarray(w) for w in model.weights}
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "weights.npz", **weights)
        np.savez(Path(tmp) / "data.npz", x=x, y=y, n_classes=len(DX8_CLASSES))
        out = run / f"{name}_qat.tflite"
        subprocess.run(
            [sys.executable, "-m", "convert.qat_classifier", "--weights", str(Path(tmp) / "weights.npz"),
             "--data", str(Path(tmp) / "data.npz"), "--config", str(run / "config.json"),
             "--epochs", str(epochs), "--out", str(out)],
            check=True, cwd=REPO,
        )  # fmt: skip
    return out


def external_sets(config: dict, split: dict, data, ph2_dir: Path, margin: float) -> dict[str, tuple]:
    """The external checks as ``{source: (crops, labels)}``: raw uint8 crops of each image's mask box with the
    pipeline's ``margin`` (full resolution for PH2; the 4:3-restored frame for the ISIC hold-out)."""
    import csv

    import cv2

    from edgeskin.core.boxes import mask_to_box
    from edgeskin.image import read_image
    from training.classifier_data import load_frames

    out = {}
    held = set(split["source_holdout"]["images"])
    holdout = data.subset([i for i, image_id in enumerate(data.image_ids) if image_id in held])
    frames = load_frames(holdout, [REPO / d for d in config["data"]["masks"]], config["frame_height"])
    crops = [crop_with_margin(f, b, margin)[0] for f, b in zip(frames.frames, frames.boxes, strict=True)]
    out[f"{split['source_holdout']['source']}_heldout"] = (crops, holdout.labels)
    rows = list(csv.DictReader((ph2_dir / "labels.csv").open()))
    crops, labels = [], []
    for row in rows:
        image = read_image(ph2_dir / "images" / f"{row['image_id']}.jpg")
        mask = cv2.imread(str(ph2_dir / "masks" / f"{row['image_id']}_segmentation.png"), cv2.IMREAD_GRAYSCALE)
        crops.append(crop_with_margin(image, mask_to_box(mask > 127), margin)[0])
        labels.append(DX8_CLASSES.index("mel" if row["diagnosis"] == "melanoma" else "nv"))
    out["ph2"] = (crops, np.array(labels))
    return out


def calibrate_and_triage(
    logits: np.ndarray,
    labels: np.ndarray,
    sources: np.ndarray,
    model_path: Path,
    output: str,
    described: str,
    min_sensitivity: float,
    margin: float,
) -> tuple[dict, dict, dict]:
    """Calibration and the refer threshold fitted on the internal validation's INT8 ``logits`` (all sources);
    ``(calibration, triage, per-source calibrated metrics)``. ``described`` says what the logits are."""
    from convert.refit_calibration import logits_step

    calibration, calibrated = fit_calibration(logits, labels, logits_step(model_path, output))
    calibration["fitted_on"] = (
        f"internal validation ({len(labels)} images of {', '.join(sorted(set(sources.tolist())))}), {described}"
    )
    malignant = malignant_index(DX8_CLASSES)
    triage = transfer_triage(
        calibrated[:, malignant].sum(1), np.isin(labels, malignant), sources, min_sensitivity, margin
    )
    log.info("calibration: %s; triage: %s", {k: v for k, v in calibration.items() if k != "top_label"}, triage)
    return calibration, triage, per_source(labels, calibrated, sources, triage["malignant_threshold"])


def external_checks(
    model_path: Path, spec: ModelSpec, sets: dict[str, tuple], views, calibration: dict, threshold: float, margin: float
) -> dict[str, dict]:
    """The external sets (:func:`external_sets`) through the INT8 model as deployed: views averaged, calibrated."""
    external = {}
    for source, (crops, labels) in sets.items():
        view_logits, _ = run_int8(model_path, spec, crops, views)
        probs = calibrated_probabilities(view_logits.mean(axis=0), calibration["temperature"], calibration["top_label"])
        external[source] = {
            **classification_metrics(labels, probs, threshold),
            "ece": round(expected_calibration_error(probs, labels), 5),
            "crop": f"expert mask box, margin {margin}",
        }
        log.info("external %s: %s", source, external[source])
    return external


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


@dataclass(frozen=True)
class RunData:
    """A training run's data as its ``config.json`` and ``split.json`` give it (what the export and the soup use)."""

    config: dict
    split: dict
    data: Any  # the multi-source table (edgeskin.datasets), for the external sets
    train: Any
    val: Any
    frames: Any  # training.classifier_data.CropImages of the run's images (held-out source excluded)
    train_index: np.ndarray  # rows of ``frames`` of the train / val images, in split order
    val_index: np.ndarray
    maker: Any  # training.classifier_data.SampleMaker on ``frames``

    def val_crops(self) -> list[np.ndarray]:
        """The internal validation images as the pipeline crops them: each expert-mask box with ``val_margin``."""
        margin = self.config["crop"]["val_margin"]
        return [crop_with_margin(self.frames.frames[i], self.frames.boxes[i], margin)[0] for i in self.val_index]


def load_run(run: Path) -> RunData:
    """Load ``run``'s data, split and decoded frames.

    Raises:
        SystemExit: ``split.json`` names images that the data set does not have.
    """
    from training.classifier_data import SampleMaker, load_frames
    from training.train_classifier import load_data

    config = json.loads((run / "config.json").read_text())
    split = json.loads((run / "split.json").read_text())
    data, rest, _ = load_data(config)
    train, val = apply_split(rest, split, "train"), apply_split(rest, split, "val")
    if len(val) != len(split["val"]) or len(train) != len(split["train"]):
        raise SystemExit(f"{run}/split.json names images that the data set does not have")
    frames = load_frames(rest, [REPO / d for d in config["data"]["masks"]], config["frame_height"])
    position = {image_id: i for i, image_id in enumerate(rest.image_ids)}
    train_index = np.array([position[i] for i in train.image_ids])
    val_index = np.array([position[i] for i in val.image_ids])
    return RunData(config, split, data, train, val, frames, train_index, val_index, SampleMaker(frames, config))


def tta_views(text: str, size: int) -> tuple[str, ...]:
    """The ``--tta`` views, identity first, checked for a ``size`` x ``size`` input."""
    return check_views(["identity", *[v for v in text.split(",") if v and v != "identity"]], (size, size))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The export's options, checked before any work (the output folder, the candidate asked for)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=str(REPO / "artifacts/classifier"), help="training output directory")
    parser.add_argument("--checkpoint", default="model.keras", help="file in --run (model.keras: the trained model)")
    parser.add_argument(
        "--out", required=True, help="folder of your own for the .tflite and its spec (not edgeskin/models: see --ship)"
    )
    parser.add_argument("--name", default="edgeskin-mnv2-cls")
    parser.add_argument("--representative", type=int, default=300, help="training crops for PTQ calibration")
    parser.add_argument(
        "--bias-correction",
        type=int,
        default=1000,
        help="training crops to estimate the INT8 logit shift on (0: no bias correction)",
    )
    parser.add_argument("--min-sensitivity", type=float, default=0.85, help="triage: malignant sensitivity per source")
    parser.add_argument(
        "--margin", type=float, default=0.05, help="triage: extra sensitivity required over all sources"
    )
    parser.add_argument("--qat-epochs", type=int, default=0, help="also run QAT for N epochs and compare")
    parser.add_argument("--qat-images", type=int, default=5000, help="source-balanced training crops QAT fine-tunes on")
    parser.add_argument(
        "--choose",
        choices=("ptq", "qat", "best"),
        default="ptq",
        help="which INT8 model to write; best: the higher 7-dx balanced accuracy on the internal validation",
    )
    parser.add_argument(
        "--ship",
        action="store_true",
        help="then replace the shipped model in edgeskin/models with the one written to --out (says what it replaced)",
    )
    parser.add_argument(
        "--qat-model",
        help="evaluate this QAT .tflite (made with --qat-epochs N; pass the same N) instead of training one",
    )
    parser.add_argument("--onnx-dir", help="where the float ONNX export goes (default: --out)")
    parser.add_argument(
        "--tta",
        default="identity,hflip,vflip,rot180",
        help="comma-separated test-time views stored in the spec and measured ('identity' alone: none)",
    )
    parser.add_argument("--ph2", default=str(REPO / "../shared/data/ph2"), help="PH2 folder (external check)")
    parser.add_argument("--trained-on", default="this machine's CPU", help="where the run trained (model card)")
    parser.add_argument("--note", action="append", default=[], help="a line for the model card (repeatable)")
    parser.add_argument(
        "--train-command",
        default="python -m training.train_classifier --config training/configs/classifier.json --out artifacts/classifier",
        help="how the run was trained (recorded in the spec)",
    )
    args = parser.parse_args(argv)
    refuse_shipped_out(parser, args.out)
    if args.choose == "qat" and not (args.qat_epochs > 0 or args.qat_model):
        parser.error("--choose qat: expected --qat-epochs N or --qat-model FILE too (no QAT model is made without)")
    args.onnx_dir = args.onnx_dir or args.out
    args.export_command = export_command(argv if argv is not None else sys.argv[1:])
    return args


# -- the stages of one export, in order -------------------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """Stage 1: the run's data and the crops every later stage uses."""

    run: Path
    data: RunData
    size: int
    margin: float
    views: tuple[str, ...]
    rep_rows: np.ndarray  # rows of data.train_index used as the PTQ representative set
    x_rep: np.ndarray  # representative training crops (model input pixels)
    x_val: np.ndarray  # validation crops (model input pixels)
    raw_val: list[np.ndarray]  # validation crops as the pipeline makes them (raw images)
    rng: np.random.Generator  # continues after rep_rows: the bias-correction rows come from it


def prepare_inputs(args: argparse.Namespace) -> Inputs:
    """Load the run, draw the representative crops and make the validation crops."""
    run = Path(args.run)
    loaded = load_run(run)
    size = loaded.config["input_size"]
    margin = loaded.config["crop"]["val_margin"]
    rng = np.random.default_rng(0)
    train_index = loaded.train_index
    rep_rows = rng.choice(len(train_index), size=min(args.representative, len(train_index)), replace=False)
    return Inputs(
        run=run,
        data=loaded,
        size=size,
        margin=margin,
        views=tta_views(args.tta, size),
        rep_rows=rep_rows,
        x_rep=loaded.maker.validation(train_index[rep_rows], margin),
        x_val=loaded.maker.validation(loaded.val_index, margin),
        raw_val=loaded.val_crops(),
        rng=rng,
    )


@dataclass(frozen=True)
class FloatReference:
    """Stage 2: the trained float model and its figures on the validation crops."""

    model: Any  # the Keras model as trained
    deploy: Any  # the same with the logits and features outputs
    view_logits: np.ndarray  # (V, N, K)
    probs: np.ndarray  # softmax of the logits averaged over the views (as deployed)
    metrics: dict
    single: dict  # one view


def float_reference(args: argparse.Namespace, inputs: Inputs) -> FloatReference:
    import keras

    model = keras.models.load_model(inputs.run / args.checkpoint, compile=False)
    deploy = deployable(model)
    view_logits = float_logits_per_view(deploy, inputs.x_val, inputs.views)
    probs = softmax(view_logits.mean(axis=0))  # as deployed: logits averaged over the views
    labels = inputs.data.val.labels
    reference = FloatReference(
        model, deploy, view_logits, probs, classification_metrics(labels, probs),
        classification_metrics(labels, softmax(view_logits[0])),
    )  # fmt: skip
    log.info("float: %s", reference.metrics)
    return reference


@dataclass(frozen=True)
class Candidate:
    """An INT8 model the export may write: its bytes and the Dense head the CAM uses with it."""

    tflite: bytes
    kernel: np.ndarray
    bias: np.ndarray
    file: str | None = None  # where a QAT model was written
    shift: np.ndarray | None = None  # the PTQ bias correction's logit shift


def qat_candidate(args: argparse.Namespace, inputs: Inputs, reference: FloatReference) -> Candidate:
    """Quantization-aware training from the trained weights (before anything touches them), on crops drawn as in
    training; or the QAT model of ``--qat-model``."""
    from training.classifier_data import sampling_probabilities

    kernel, bias = reference.model.get_layer("logits").get_weights()
    if args.qat_model:
        qat_path = Path(args.qat_model)
    else:
        train, train_index = inputs.data.train, inputs.data.train_index
        draws = np.random.default_rng(1).choice(
            len(train_index), size=min(args.qat_images, len(train_index)), replace=True,
            p=sampling_probabilities(train.image_sources, train.labels, inputs.data.config["source_shares"]),
        )  # fmt: skip
        sample_rng = np.random.default_rng(2)
        x_qat = np.stack([inputs.data.maker(int(train_index[d]), sample_rng).astype(np.uint8) for d in draws])
        qat_path = run_qat(reference.model, inputs.run, x_qat, train.labels[draws], args.qat_epochs, args.name)
        del x_qat
    head = qat_path.with_suffix(".head.npz")
    q_kernel, q_bias = (np.load(head)["kernel"], np.load(head)["bias"]) if head.is_file() else (kernel, bias)
    return Candidate(qat_path.read_bytes(), q_kernel, q_bias, file=str(qat_path))


def ptq_candidate(args: argparse.Namespace, inputs: Inputs, reference: FloatReference) -> Candidate:
    """Post-training quantization, with bias correction on other training crops unless ``--bias-correction 0``."""
    kernel, bias = reference.model.get_layer("logits").get_weights()
    train_index = inputs.data.train_index
    others = np.setdiff1d(np.arange(len(train_index)), inputs.rep_rows)
    if args.bias_correction > 0 and len(others) == 0:
        # A small run: every training crop already calibrates the PTQ ranges, none is left to estimate the shift on.
        log.warning(
            "no training crop left for bias correction (all %d calibrate PTQ): PTQ without it", len(train_index)
        )
    if args.bias_correction <= 0 or len(others) == 0:
        with tempfile.TemporaryDirectory() as tmp:
            save_signature_model(reference.deploy, inputs.size, tmp)
            return Candidate(convert_int8(tmp, inputs.x_rep), kernel, bias)
    corr_rows = inputs.rng.choice(others, size=min(args.bias_correction, len(others)), replace=False)
    x_corr = inputs.data.maker.validation(train_index[corr_rows], inputs.margin)
    tflite, shift = convert_with_bias_correction(reference.deploy, reference.model, inputs.size, inputs.x_rep, x_corr)
    log.info("bias correction on %d training crops: logit shift %s", len(x_corr), np.round(shift, 4).tolist())
    return Candidate(tflite, kernel, bias + shift, shift=shift)


def base_spec(args: argparse.Namespace, inputs: Inputs, candidate: Candidate, path: Path) -> dict:
    """The spec of ``candidate`` written at ``path``, before any measurement (what the runtime needs to run it)."""
    size = inputs.size
    spec = {
        "format_version": 1,
        "name": args.name,
        "task": "classification",
        "model_file": path.name,
        "sha256": sha256_file(path),
        "input": {"size": [size, size], "color_order": "RGB", "resize": "stretch", "mean": [0] * 3, "std": [1] * 3},
        "preprocessing": get_profile(inputs.data.config["profile"]).to_dict(),
        "labels": list(DX8_CLASSES),
        "outputs": {"probabilities": "logits", "features": "features"},
        "outputs_are": "logits",
        "cam": {
            "weights": np.asarray(candidate.kernel, float).round(6).tolist(),
            "bias": np.asarray(candidate.bias, float).round(6).tolist(),
        },
    }
    if len(inputs.views) > 1:
        spec["tta"] = list(inputs.views)
    return spec


@dataclass(frozen=True)
class Measured:
    """Stage 4: a candidate through the runtime on the internal validation."""

    candidate: Candidate
    logits: np.ndarray  # averaged over the views, as deployed
    invoke_ms: float
    single: dict  # metrics of one view
    comparison: dict  # the row of metrics.quantization


def measure_candidates(
    args: argparse.Namespace, inputs: Inputs, reference: FloatReference, candidates: dict[str, Candidate]
) -> dict[str, Measured]:
    """Each INT8 candidate through the runtime on the internal validation, as deployed (views averaged) and with
    one view: the only figures the choice of ``--choose`` may use."""
    labels = inputs.data.val.labels
    measured = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, candidate in candidates.items():
            path = Path(tmp) / f"{args.name}.tflite"
            path.write_bytes(candidate.tflite)
            spec = ModelSpec.from_dict(base_spec(args, inputs, candidate, path))
            view_logits, invoke_ms = run_int8(path, spec, inputs.raw_val, inputs.views)
            logits = view_logits.mean(axis=0)
            single = classification_metrics(labels, softmax(view_logits[0]))
            probs = softmax(logits)
            comparison = {
                **classification_metrics(labels, probs),
                "single_view": single,
                "top1_agreement_with_float": float((probs.argmax(1) == reference.probs.argmax(1)).mean()),
                "size_bytes": len(candidate.tflite),
            }
            log.info("%s: %s", kind.upper(), comparison)
            measured[kind] = Measured(candidate, logits, invoke_ms, single, comparison)
    return measured


def choose(args: argparse.Namespace, measured: dict[str, Measured]) -> str:
    """``--choose``, or for ``best`` the higher internal 7-dx balanced accuracy (internal validation only: the
    external checks are measured after this)."""
    if args.choose != "best":
        return args.choose
    kind = max(measured, key=lambda name: measured[name].comparison["dx"]["balanced_accuracy"])
    log.info("writing %s: the higher internal 7-dx balanced accuracy", kind.upper())
    return kind


def int8_against_float(labels: np.ndarray, kind: str, chosen: Measured, reference: FloatReference) -> tuple[dict, dict]:
    """The chosen model's uncalibrated metrics and its agreement with the float model."""
    int8_probs = softmax(chosen.logits)
    int8_metrics = classification_metrics(labels, int8_probs)
    log.info("int8 (%s, written): %s", kind, int8_metrics)
    agreement = {
        "top1_agreement": float((int8_probs.argmax(1) == reference.probs.argmax(1)).mean()),
        "max_probability_difference": float(np.abs(int8_probs - reference.probs).max()),
        "mean_probability_difference": float(np.abs(int8_probs - reference.probs).mean()),
        "balanced_accuracy_7dx_delta": int8_metrics["dx"]["balanced_accuracy"]
        - reference.metrics["dx"]["balanced_accuracy"],
        "auc_7dx_delta": int8_metrics["dx"]["auc"] - reference.metrics["dx"]["auc"],
    }
    log.info("int8 vs float: %s", agreement)
    return int8_metrics, agreement


def export_onnx(
    args: argparse.Namespace, inputs: Inputs, reference: FloatReference
) -> tuple[Path | None, float | None]:
    """The float ONNX export and its largest probability difference from Keras on 16 validation crops; a side
    export: a failure is logged and the INT8 model kept."""
    try:
        Path(args.onnx_dir).mkdir(parents=True, exist_ok=True)
        onnx_path = Path(args.onnx_dir) / f"{args.name}.onnx"
        model = reference.model
        model.predict(inputs.x_val[:1].astype(np.float32), verbose=0)  # a loaded model must be called before export
        model.export(str(onnx_path), format="onnx", verbose=False)
        import onnxruntime

        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        onnx_probs = session.run(None, {session.get_inputs()[0].name: inputs.x_val[:16].astype(np.float32)})[0]
        onnx_check = float(np.abs(onnx_probs - softmax(reference.view_logits[0][:16])).max())
        log.info("ONNX float export: max |p_onnx - p_keras| = %.2e on 16 validation images", onnx_check)
        return onnx_path, onnx_check
    except Exception as exc:  # ONNX is a side export: report, keep the INT8 model
        log.warning("ONNX export failed: %s", exc)
        return None, None


@dataclass(frozen=True)
class Fitted:
    """Stages 5-7: the chosen model's calibration, triage and checks, and the side export."""

    kind: str
    int8_metrics: dict
    agreement: dict
    calibration: dict
    triage: dict
    internal: dict  # calibrated metrics per source
    external: dict
    onnx_path: Path | None
    onnx_check: float | None


def provenance(args: argparse.Namespace, inputs: Inputs, ptq: Candidate, fitted: Fitted) -> dict:
    shift = ptq.shift  # the PTQ candidate's bias correction, recorded whichever candidate was written
    return {
        "data": (
            "HAM10000 (CC BY-NC 4.0) and the ISIC 2017/2018 challenge images of other clinics "
            "(ISIC Archive, CC BY-NC 4.0), labels from the ISIC 2019 and 2017 ground truth; "
            f"lesion-grouped split stratified by dx and source, seed {inputs.data.split['seed']}; a third of the "
            "ISIC 2017 images held out whole"
        ),
        "license": "CC BY-NC 4.0 (inherited from HAM10000 and the ISIC Archive): non-commercial use only",
        "split_file": "training/runs/classifier/split.json",
        "training_config": inputs.data.config,
        "checkpoint": args.checkpoint,
        "representative_images": len(inputs.x_rep),
        "bias_correction": (
            None
            if shift is None
            else {"training_images": args.bias_correction, "logit_shift": np.round(shift, 5).tolist()}
        ),
        "train_command": args.train_command,
        "trained_on": args.trained_on,
        "notes": args.note,
        "export_command": args.export_command,
        "onnx": str(fitted.onnx_path) if fitted.onnx_path else None,
        "onnx_max_probability_difference_vs_keras": fitted.onnx_check,
        "date": time.strftime("%Y-%m-%d"),
    }


def final_spec(
    args: argparse.Namespace,
    inputs: Inputs,
    reference: FloatReference,
    measured: dict[str, Measured],
    fitted: Fitted,
    spec: dict,
) -> ModelSpec:
    """The written model's spec: the base spec with calibration, triage, every metric and the provenance."""
    chosen = measured[fitted.kind]
    summary_file = inputs.run / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    qat = None
    if "qat" in measured:
        qat = {"epochs": args.qat_epochs, "file": measured["qat"].candidate.file, **measured["qat"].comparison}
    metrics = {
        "validation_images": len(inputs.data.val),
        "validation": "internal: lesion-grouped, stratified by dx and source; the model choice, calibration "
        "and triage threshold use these images only",
        "float": reference.metrics,
        "int8_uncalibrated": fitted.int8_metrics,
        "int8_calibrated": fitted.internal["all"],
        "int8_calibrated_per_source": fitted.internal,
        "external": fitted.external,
        "int8_vs_float": fitted.agreement,
        "test_time_views": list(inputs.views),
        "float_single_view": reference.single,
        "int8_single_view_uncalibrated": chosen.single,
        "qat": qat,
        "quantization": {"shipped": fitted.kind, **{kind: m.comparison for kind, m in measured.items()}},
        "int8_invoke_ms_median_2_threads": round(chosen.invoke_ms, 3),
        "int8_invoke_ms_note": "one view, measured during the export (machine possibly busy)",
        "training_seconds": summary.get("train_seconds"),
        "training_device": summary.get("device"),
    }
    return ModelSpec.from_dict(
        {
            **spec,
            "calibration": fitted.calibration,
            "triage": fitted.triage,
            "metrics": metrics,
            "provenance": provenance(args, inputs, measured["ptq"].candidate, fitted),
        }
    )


def fit_chosen(
    args: argparse.Namespace, inputs: Inputs, reference: FloatReference, chosen: Measured, kind: str, model_path: Path
) -> Fitted:
    """Calibration and triage on the internal validation INT8 logits (all sources), then the external checks with
    the written model as deployed, then the float ONNX export."""
    val = inputs.data.val
    int8_metrics, agreement = int8_against_float(val.labels, kind, chosen, reference)
    calibration, triage, internal = calibrate_and_triage(
        chosen.logits, val.labels, np.array(val.image_sources), model_path, "logits",
        f"INT8 logits averaged over the views {list(inputs.views)}", args.min_sensitivity, args.margin,
    )  # fmt: skip
    sets = external_sets(inputs.data.config, inputs.data.split, inputs.data.data, Path(args.ph2), inputs.margin)
    spec = ModelSpec.from_dict(base_spec(args, inputs, chosen.candidate, model_path))
    external = external_checks(
        model_path, spec, sets, inputs.views, calibration, triage["malignant_threshold"], inputs.margin
    )
    onnx_path, onnx_check = export_onnx(args, inputs, reference)
    return Fitted(kind, int8_metrics, agreement, calibration, triage, internal, external, onnx_path, onnx_check)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.time()
    inputs = prepare_inputs(args)
    reference = float_reference(args, inputs)
    candidates: dict[str, Candidate] = {}
    if args.qat_epochs > 0 or args.qat_model:
        candidates["qat"] = qat_candidate(args, inputs, reference)
    candidates["ptq"] = ptq_candidate(args, inputs, reference)
    measured = measure_candidates(args, inputs, reference, candidates)
    kind = choose(args, measured)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / f"{args.name}.tflite"
    model_path.write_bytes(measured[kind].candidate.tflite)
    spec = base_spec(args, inputs, measured[kind].candidate, model_path)
    fitted = fit_chosen(args, inputs, reference, measured[kind], kind, model_path)
    final = final_spec(args, inputs, reference, measured, fitted, spec)
    final.save(model_path.with_suffix(".json"))
    (inputs.run / "export_summary.json").write_text(json.dumps(final.to_dict()["metrics"], indent=1))
    log.info(
        "wrote %s (%.1f MB) and its spec in %.0f s", model_path, model_path.stat().st_size / 1e6, time.time() - started
    )
    if args.ship:
        print("\n".join(ship([model_path])))
    return 0


if __name__ == "__main__":
    from convert.script import run_script

    run_script(main, "python -m convert.export_classifier")
