"""Refit a shipped INT8 classifier's dense head on its own INT8 features; the backbone is not touched.

What it does:

1. **Features.** The model's pooled INT8 features (the ``features`` output averaged over the grid, quantized
   like the graph's ``MEAN``) of ``--samples`` augmented crops of every training image. The crops and the
   augmentation are the training recipe's own (:class:`training.classifier_data.SampleMaker`).
2. **The head.** A multinomial logistic regression (scikit-learn). Its sample weights balance the sources as
   the training drew them (``source_shares``) and the classes as drawn. Its L2 strength ``C`` is chosen on the
   internal validation's 7-dx balanced accuracy, with the spec's test-time views averaged.
3. **Into the model.** The new weights and bias go into the model's ``FULLY_CONNECTED`` op: INT8 weights, an
   INT32 bias, and the logits' quantization from the range of the training features' logits.
4. **Calibration and triage.** Both are refit on the internal validation, as the export does. Then the
   external checks (the ISIC 2017 held-out third, PH2) are measured, after every choice.

The float baseline cannot be rebuilt from an INT8 file, so the refit model's spec keeps no float metrics; the
previous head's calibrated and external figures are under ``metrics.head_refit.previous`` (its float comparison
stays in the previous spec).

    python -m convert.refit_head --run RUN --out DIR [--samples 4] [--c 0.003 0.01 0.03 0.1 0.3]

``RUN`` holds the training run's ``config.json`` and ``split.json``: those of the shipped model's run.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert.export_classifier import (
    REPO,
    calibrate_and_triage,
    classification_metrics,
    external_checks,
    external_sets,
    load_run,
    run_int8,
)
from convert.ship import refuse_shipped_out
from edgeskin.labels import DX8_CLASSES
from edgeskin.runtime.interpreter import TFLiteModel
from edgeskin.runtime.spec import ModelSpec, sha256_file
from edgeskin.tasks.classifier import Classifier, softmax

log = logging.getLogger("refit_head")


def pooled_features(classifier: Classifier, images, quantization: tuple[float, int] | None = None) -> np.ndarray:
    """``(N, C)`` pooled features of ``images``, the classifier's views averaged.

    With ``quantization`` (one view): quantized like the graph's MEAN output, which the dense head reads. Several
    views are averaged unquantized: the graph quantizes each view's pooling, and the mean of those is closer to
    the unquantized mean than to the quantized one (the shipped head scores the same 7-dx balanced accuracy on
    the views' unquantized mean as the INT8 model, 0.739).
    """
    out = []
    for image in images:
        pooled = classifier.classify_with_features(image)[1].mean(axis=(0, 1), dtype=np.float64)
        if quantization is not None:
            scale, zero_point = quantization
            pooled = (np.clip(np.round(pooled / scale) + zero_point, -128, 127) - zero_point) * scale
        out.append(pooled)
    return np.asarray(out, np.float64)


def training_features(run, model: TFLiteModel, spec: ModelSpec, samples: int, seed: int, quantization):
    """Pooled features of ``samples`` augmented crops per training image, their labels and image rows."""
    raw = Classifier(model, spec, tta=("identity",), apply_preprocessing=False)  # the maker applies the profile
    rng = np.random.default_rng(seed)
    images, rows = [], []
    for _ in range(samples):
        for row, index in enumerate(run.train_index):
            images.append(run.maker(index, rng).astype(np.uint8))
            rows.append(row)
            if len(images) == 512:  # in chunks: the crops of all samples would not fit in memory
                yield pooled_features(raw, images, quantization), np.asarray(rows)
                images, rows = [], []
    if images:
        yield pooled_features(raw, images, quantization), np.asarray(rows)


def fit_head(x: np.ndarray, y: np.ndarray, weights: np.ndarray, c: float, n_classes: int):
    """``(kernel (C, K), bias (K,))`` of a weighted multinomial logistic regression; absent classes never win."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=5000)
    model.fit(x, y, sample_weight=weights / weights.mean())
    kernel = np.zeros((x.shape[1], n_classes))
    bias = np.full(n_classes, -30.0)
    kernel[:, model.classes_] = model.coef_.T
    bias[model.classes_] = model.intercept_
    return kernel, bias


def _dense_op(model, logits_name: str):
    """The FULLY_CONNECTED op of a flatbuffer model object that writes the ``logits_name`` tensor."""
    from tensorflow.lite.python import schema_py_generated as schema

    graph = model.subgraphs[0]
    names = [t.name.decode() if isinstance(t.name, bytes) else t.name for t in graph.tensors]
    found = [
        op
        for op in graph.operators
        if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.FULLY_CONNECTED
        and names[op.outputs[0]] == logits_name
    ]
    if len(found) != 1:
        raise SystemExit(f"expected one FULLY_CONNECTED op writing {logits_name!r}, found {len(found)}")
    return graph, found[0]


def dense_input_quantization(model_bytes: bytes, logits_name: str) -> tuple[float, int]:
    """``(scale, zero_point)`` of the pooled features that the dense head reads."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    graph, op = _dense_op(model, logits_name)
    quantization = graph.tensors[op.inputs[0]].quantization
    return float(quantization.scale[0]), int(quantization.zeroPoint[0])


def patch_dense(model_bytes: bytes, logits_name: str, kernel: np.ndarray, bias: np.ndarray, logit_range) -> bytes:
    """The model with ``kernel``/``bias`` in the FULLY_CONNECTED op that writes the ``logits_name`` tensor.

    The weights keep the op's quantization granularity (per tensor or per output channel, symmetric INT8), the
    bias is INT32 at input scale x weight scale, and the logits get the asymmetric INT8 quantization of
    ``logit_range`` (widened to hold 0).
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    graph, fc = _dense_op(model, logits_name)
    source, weights, bias_tensor = (graph.tensors[i] for i in fc.inputs[:3])
    output = graph.tensors[fc.outputs[0]]
    users = [i for op in graph.operators for i in op.inputs if i in fc.inputs[1:3]]
    if len(users) != 2:
        raise SystemExit("the dense weights or bias are shared with another op; not patching")
    w = kernel.T.astype(np.float64)  # (K, C): TFLite's FULLY_CONNECTED layout
    if tuple(weights.shape) != w.shape:
        raise SystemExit(f"dense weights: the model's {list(weights.shape)} against the head's {list(w.shape)}")
    per_channel = len(weights.quantization.scale) > 1
    w_scale = np.maximum((np.abs(w).max(axis=1) if per_channel else np.array([np.abs(w).max()])) / 127.0, 1e-12)
    rows = w_scale[:, None] if per_channel else w_scale[0]
    qw = np.clip(np.round(w / rows), -127, 127).astype(np.int8)
    b_scale = float(source.quantization.scale[0]) * w_scale
    qb = np.round(bias / (b_scale if per_channel else b_scale[0])).astype(np.int32)
    model.buffers[weights.buffer].data = np.frombuffer(qw.tobytes(), np.uint8)
    model.buffers[bias_tensor.buffer].data = np.frombuffer(qb.tobytes(), np.uint8)
    weights.quantization.scale = [float(v) for v in w_scale]
    weights.quantization.zeroPoint = [0] * len(w_scale)
    bias_tensor.quantization.scale = [float(v) for v in b_scale]
    bias_tensor.quantization.zeroPoint = [0] * len(b_scale)
    low, high = min(0.0, float(logit_range[0])), max(0.0, float(logit_range[1]))
    scale = (high - low) / 255.0
    output.quantization.scale = [scale]
    output.quantization.zeroPoint = [int(np.clip(round(-128 - low / scale), -128, 127))]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def views_logits(path: Path, spec_data: dict, images) -> np.ndarray:
    """``(N, K)`` INT8 logits of raw images through the runtime, the spec's views averaged, uncalibrated."""
    spec = ModelSpec.from_dict({**spec_data, "calibration": {}})
    logits, _ = run_int8(path, spec, images, tuple(spec.tta) or ("identity",))
    return logits.mean(axis=0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, type=Path, help="folder with the run's config.json and split.json")
    parser.add_argument("--model", type=Path, default=REPO / "edgeskin/models/edgeskin-mnv2-cls.tflite")
    parser.add_argument("--out", required=True, type=Path, help="folder for the refit .tflite, its spec and summary")
    parser.add_argument("--samples", type=int, default=4, help="augmented crops per training image")
    parser.add_argument("--c", type=float, nargs="+", default=[0.003, 0.01, 0.03, 0.1, 0.3], help="L2 strengths")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ph2", type=Path, default=REPO / "../shared/data/ph2")
    parser.add_argument("--min-sensitivity", type=float, default=0.85)
    parser.add_argument("--margin", type=float, default=0.05)
    args = parser.parse_args(argv)
    refuse_shipped_out(parser, args.out)
    args.command = shlex.join(["python", "-m", "convert.refit_head", *(argv if argv is not None else sys.argv[1:])])
    return args


@dataclass(frozen=True)
class Features:
    """Stage 1: pooled INT8 features of the training crops (augmented) and of the internal validation."""

    x_train: np.ndarray
    y_train: np.ndarray
    sources: np.ndarray  # the training rows' sources
    val_images: list[np.ndarray]
    x_val: np.ndarray  # views averaged


def features(args: argparse.Namespace, run: Any, base: Any, graph_mean: float, started: float) -> Features:
    chunks = list(training_features(run, base.model, base.spec, args.samples, args.seed, graph_mean))
    x_train = np.concatenate([c[0] for c in chunks])
    rows = np.concatenate([c[1] for c in chunks])
    log.info("training features %s in %.0f s", x_train.shape, time.time() - started)
    val_images = run.val_crops()
    return Features(
        x_train, run.train.labels[rows], np.asarray(run.train.image_sources)[rows], val_images,
        pooled_features(base, val_images),
    )  # fmt: skip


@dataclass(frozen=True)
class Head:
    """Stage 2: the chosen head, with the grid it was chosen on and the previous head's score."""

    kernel: np.ndarray
    bias: np.ndarray
    grid: dict[str, float]
    chosen: float
    previous: float


def choose_head(args: argparse.Namespace, run: Any, spec: ModelSpec, feats: Features) -> Head:
    """Sources weighted as the training drew them, classes balanced as drawn; C chosen on the internal validation."""
    from training.classifier_data import balanced_class_weights, sampling_probabilities

    n_classes = len(spec.labels)
    draw = sampling_probabilities(feats.sources, feats.y_train, run.config["source_shares"])
    class_weights = balanced_class_weights(feats.y_train, draw / draw.sum(), n_classes)
    sample_weights = draw / draw.mean() * class_weights[feats.y_train]
    old_kernel, old_bias = spec.cam_arrays()
    grid, heads = {}, {}
    for c in args.c:
        kernel, bias = fit_head(feats.x_train, feats.y_train, sample_weights, c, n_classes)
        probs = softmax(feats.x_val @ kernel + bias)
        grid[str(c)] = classification_metrics(run.val.labels, probs)["dx"]["balanced_accuracy"]
        heads[c] = (kernel, bias)
        log.info("C = %g: internal 7-dx balanced accuracy %.4f (float head, views averaged)", c, grid[str(c)])
    previous_probs = softmax(feats.x_val @ old_kernel + old_bias)
    previous = classification_metrics(run.val.labels, previous_probs)["dx"]["balanced_accuracy"]
    chosen = max(args.c, key=lambda c: grid[str(c)])
    log.info("chosen C = %g (previous head on the same features: %.4f)", chosen, previous)
    return Head(*heads[chosen], grid, chosen, previous)


def refit_metrics(
    args: argparse.Namespace, spec_data: dict, feats: Features, head: Head, measured: dict, agreement: float
) -> dict:
    """The refit model's ``metrics``: the export's kept where they still hold, the new INT8 figures, the refit."""
    old_metrics = spec_data.get("metrics", {})
    metrics = {
        key: old_metrics[key]
        for key in ("validation_images", "validation", "test_time_views", "training_seconds", "training_device")
        if key in old_metrics
    }
    metrics.update(
        {
            **measured,
            "head_refit": {
                "method": "pooled INT8 features of the shipped backbone; multinomial logistic regression "
                "(scikit-learn), sources weighted as drawn in training and classes balanced as drawn; C chosen on "
                "the internal validation's 7-dx balanced accuracy (float head, views averaged)",
                "training_crops": int(len(feats.x_train)),
                "samples_per_image": args.samples,
                "c_grid_internal_balanced_accuracy_7dx": head.grid,
                "chosen_c": head.chosen,
                "int8_vs_float_head_top1_agreement": agreement,
                "previous": {
                    "sha256": spec_data.get("sha256"),
                    "float_head_internal_balanced_accuracy_7dx": head.previous,
                    "int8_calibrated": old_metrics.get("int8_calibrated"),
                    "external": old_metrics.get("external"),
                    "triage": spec_data.get("triage"),
                },
            },
            "int8_invoke_ms_median_2_threads": old_metrics.get("int8_invoke_ms_median_2_threads"),
            "int8_invoke_ms_note": old_metrics.get("int8_invoke_ms_note"),
        }
    )
    return metrics


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    started = time.time()

    spec_data = json.loads(args.model.with_suffix(".json").read_text())
    base = Classifier.from_model(args.model, threads=2)
    spec = base.spec
    if tuple(spec.labels) != DX8_CLASSES:
        raise SystemExit(f"{args.model}: expected the 8 ISIC 2019 classes, got {spec.labels}")
    logits_info = base.model.output(spec.outputs["probabilities"])
    logits_name = logits_info.tensor_name or logits_info.name  # the graph's tensor (the spec names the signature's)
    graph_mean = dense_input_quantization(args.model.read_bytes(), logits_name)
    run = load_run(args.run)
    margin = run.config["crop"]["val_margin"]

    feats = features(args, run, base, graph_mean, started)
    head = choose_head(args, run, spec, feats)

    # 3. Into the model.
    kernel, bias = head.kernel, head.bias
    train_logits = feats.x_train @ kernel + bias
    patched = patch_dense(args.model.read_bytes(), logits_name, kernel, bias, (train_logits.min(), train_logits.max()))
    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / args.model.name
    model_path.write_bytes(patched)
    new_spec = {
        **spec_data,
        "sha256": sha256_file(model_path),
        "cam": {"weights": kernel.round(6).tolist(), "bias": bias.round(6).tolist()},
    }
    int8_logits = views_logits(model_path, new_spec, feats.val_images)
    float_logits = feats.x_val @ kernel + bias
    agreement = float((int8_logits.argmax(1) == float_logits.argmax(1)).mean())
    log.info("INT8 head vs its float head on the validation: top-1 agreement %.4f", agreement)

    # 4. Calibration and triage on the internal validation; then the external checks.
    calibration, triage, internal = calibrate_and_triage(
        int8_logits, run.val.labels, np.asarray(run.val.image_sources), model_path, spec.outputs["probabilities"],
        f"INT8 logits of the refit head averaged over the views {list(spec.tta)}", args.min_sensitivity, args.margin,
    )  # fmt: skip
    external = external_checks(
        model_path, ModelSpec.from_dict({**new_spec, "calibration": {}}),
        external_sets(run.config, run.split, run.data, args.ph2, margin), tuple(spec.tta) or ("identity",),
        calibration, triage["malignant_threshold"], margin,
    )  # fmt: skip
    measured = {
        "int8_uncalibrated": classification_metrics(run.val.labels, softmax(int8_logits)),
        "int8_calibrated": internal["all"],
        "int8_calibrated_per_source": internal,
        "external": external,
    }
    metrics = refit_metrics(args, spec_data, feats, head, measured, agreement)
    provenance = dict(spec_data.get("provenance", {}))
    provenance["head_refit_command"] = args.command
    provenance["head_refit_date"] = time.strftime("%Y-%m-%d")
    final = ModelSpec.from_dict(
        {**new_spec, "calibration": calibration, "triage": triage, "metrics": metrics, "provenance": provenance}
    )
    final.save(model_path.with_suffix(".json"))
    (args.out / "refit_summary.json").write_text(json.dumps(metrics, indent=1, default=float))
    log.info("wrote %s and its spec in %.0f s", model_path, time.time() - started)
    return 0


if __name__ == "__main__":
    from convert.script import run_script

    run_script(main, "python -m convert.refit_head")
