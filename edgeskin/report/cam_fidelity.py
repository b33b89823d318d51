"""CAM fidelity: the INT8 class activation map against exact Grad-CAM on the float Keras model.

``python -m edgeskin.report.cam_fidelity [--images 300] [--keras-backend tensorflow] [--out FILE]``

For each validation image (a seeded subset of the classifier's HAM10000 validation split):

* exact Grad-CAM on the float Keras model: the gradient of the top class's logit (float top class) with
  respect to the ``features`` layer output, by ``tf.GradientTape`` (``torch.autograd`` with
  ``--keras-backend torch``); channel weights = spatial mean of the gradient; map = ReLU(Σ_k w_k A_k);
* the edge map: :class:`~edgeskin.tasks.CamExplainer` on the INT8 model's dequantized feature map (what the
  pipeline shows), for the same class, and for the INT8 model's own top class ("as deployed").

Both are compared on the 6x6 feature grid and upsampled (bilinear, :func:`edgeskin.core.cam.upsample_cam`)
to the 192x192 model input: Pearson correlation, and the IoU of their top-20% regions (the ``ceil(0.2 N)``
highest cells of each map). A map that is constant (all zero after the ReLU) has no defined correlation; such
images are counted and left out of the Pearson statistics. The CAM's own cost is timed against the classify
stage on the same images.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeskin.report.common import (
    Missing,
    ReportInputs,
    add_input_arguments,
    emit_json,
    ham_validation,
    keras_backend_modules,
    keras_baseline,
    model_input_pixels,
    models,
    require_extra,
)

TOP_FRACTION = 0.2
UPSAMPLED = 192


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps (NaN when either is constant)."""
    x = np.asarray(a, np.float64).ravel()
    y = np.asarray(b, np.float64).ravel()
    x = x - x.mean()
    y = y - y.mean()
    denominator = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / denominator if denominator > 0 else float("nan")


def top_region_iou(a: np.ndarray, b: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """IoU of the top-``fraction`` cells of two maps (ties broken by position, stably)."""
    x = np.asarray(a, np.float64).ravel()
    y = np.asarray(b, np.float64).ravel()
    k = max(1, math.ceil(fraction * x.size))
    top_x = set(np.argsort(-x, kind="stable")[:k].tolist())
    top_y = set(np.argsort(-y, kind="stable")[:k].tolist())
    return len(top_x & top_y) / len(top_x | top_y)


def _stats(values: list[float]) -> dict[str, Any]:
    arr = np.asarray(values, np.float64)
    defined = arr[np.isfinite(arr)]
    if defined.size == 0:
        return {"n": 0, "undefined": int(arr.size)}
    return {
        "n": int(defined.size),
        "undefined": int(arr.size - defined.size),
        "median": round(float(np.median(defined)), 4),
        "mean": round(float(defined.mean()), 4),
        "p10": round(float(np.percentile(defined, 10)), 4),
        "min": round(float(defined.min()), 4),
        "share_ge_0.95": round(float((defined >= 0.95).mean()), 4),
    }


def grad_cam(model_path: Path, pixels: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Exact Grad-CAM maps (N, h, w) of the float model's top class, those classes (N,), and per image the
    Pearson correlation of Grad-CAM with the analytic float CAM ``ReLU(features @ W[:, k])`` (a check of the
    gradient computation: with a GAP + Dense head the two coincide, so it should be 1)."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    require_extra(keras_backend_modules())
    import keras

    net = keras.models.load_model(model_path, compile=False)
    # Features from the backbone, then the head (GAP -> Dropout -> Dense "logits") applied to a watched copy:
    # the gradient is taken with respect to exactly the tensor the head reads.
    backbone = keras.Model(net.inputs, net.get_layer("features").output)
    head = [net.get_layer(name) for name in _head_layers(net)]

    def logits_of(features: Any) -> Any:
        x = features
        for layer in head:
            x = layer(x, training=False) if layer.__class__.__name__ == "Dropout" else layer(x)
        return x

    kernel = np.asarray(net.get_layer("logits").get_weights()[0], np.float64)
    maps, classes, check = [], [], []
    for start in range(0, len(pixels), batch):
        x = pixels[start : start + batch].astype(np.float32)
        if backend == "tensorflow":
            import tensorflow as tf

            features = tf.convert_to_tensor(backbone(tf.constant(x), training=False))
            with tf.GradientTape() as tape:
                tape.watch(features)
                logits = logits_of(features)
                top = tf.argmax(logits, axis=1)
                # Each image's logit depends on its own features only: the gradient of the sum is per image.
                # (The sum must be taken inside the tape to be recorded.)
                chosen = tf.reduce_sum(tf.gather(logits, top, axis=1, batch_dims=1))
            grads = tape.gradient(chosen, features).numpy()
            features, top = features.numpy(), top.numpy()
        elif backend == "torch":
            import torch

            with torch.no_grad():
                features = backbone(torch.from_numpy(x), training=False)
            features = features.detach().clone().requires_grad_(True)
            logits = logits_of(features)
            top = torch.argmax(logits, dim=1)
            chosen = logits.gather(1, top[:, None]).sum()
            grads = torch.autograd.grad(chosen, features)[0].detach().cpu().numpy()
            features, top = features.detach().cpu().numpy(), top.cpu().numpy()
        else:
            raise Missing(f"Grad-CAM is implemented for the tensorflow and torch Keras backends, not {backend}")
        weights = grads.mean(axis=(1, 2))  # (N, C): Grad-CAM's channel weights
        batch_maps = np.maximum(np.einsum("nhwc,nc->nhw", features, weights), 0.0)
        maps.append(batch_maps)
        classes.append(top)
        for fmap, k, cam in zip(features, top, batch_maps, strict=True):
            check.append(pearson(np.maximum(fmap.astype(np.float64) @ kernel[:, int(k)], 0.0), cam))
    return np.concatenate(maps), np.concatenate(classes), check


def _head_layers(net: Any) -> list[str]:
    """Names of the layers from the ``features`` output to ``logits``, in order (GAP, Dropout, Dense)."""
    names, layer = [], net.get_layer("logits")
    while layer.name != "features":
        names.append(layer.name)
        inbound = layer._inbound_nodes[0].input_tensors
        if len(inbound) != 1:
            raise Missing(f"the classifier head is not a chain from 'features' to 'logits' (layer {layer.name})")
        layer = inbound[0]._keras_history.operation
    return names[::-1]


def cam_fidelity(
    given: ReportInputs, images: int = 300, keras_model: Path | None = None, threads: int = 2
) -> dict[str, Any]:
    """Compare INT8 CAM with exact Grad-CAM on ``images`` validation images; see the module docstring."""
    from edgeskin.bench import percentiles
    from edgeskin.core.cam import upsample_cam
    from edgeskin.image import read_image
    from edgeskin.tasks.cam import CamExplainer
    from edgeskin.tasks.classifier import Classifier

    int8_path = models()[0]
    keras_model = keras_model or keras_baseline(given, int8_path)
    val = ham_validation(given, limit=images)
    # One view: Grad-CAM is defined on one forward pass, so both sides see the same single input (the
    # spec's test-time views would average several; their CAM is exact by construction, core/views.py).
    classifier = Classifier.from_model(int8_path, threads=threads, tta=())
    explainer = CamExplainer.from_spec(classifier.spec)
    size = classifier.input_size
    pixels = model_input_pixels(val.paths, size[0], classifier.spec.preprocessing_profile())
    reference, float_top, check = grad_cam(keras_model, pixels)

    label_order = list(classifier.labels)
    from edgeskin.labels import DX8_CLASSES, DX_CLASSES

    # The Keras model's classes are in training order (DX8_CLASSES, or DX_CLASSES for a HAM10000-only model);
    # map them to the INT8 model's order.
    training_order = DX8_CLASSES if len(label_order) == len(DX8_CLASSES) else DX_CLASSES
    to_int8_index = [label_order.index(dx) for dx in training_order]
    results: dict[str, dict[str, list[float]]] = {
        view: {"pearson_grid": [], "pearson_192": [], "top20_iou_grid": [], "top20_iou_192": []}
        for view in ("same_class", "as_deployed")
    }
    classify_ms, cam_ms = [], []
    same_top = 0
    for i, path in enumerate(val.paths):
        image = read_image(path)
        start = time.perf_counter()
        result, features = classifier.classify_with_features(image)
        classify_ms.append((time.perf_counter() - start) * 1000.0)
        int8_top = int(np.argmax(result.probabilities))
        start = time.perf_counter()
        deployed_map = explainer.explain(features, int8_top)
        cam_ms.append((time.perf_counter() - start) * 1000.0)
        target = to_int8_index[int(float_top[i])]
        same_top += int(target == int8_top)
        ref = reference[i]
        ref_up = upsample_cam(_unit(ref), (UPSAMPLED, UPSAMPLED))
        for view, edge in (("same_class", explainer.explain(features, target)), ("as_deployed", deployed_map)):
            edge_up = upsample_cam(edge, (UPSAMPLED, UPSAMPLED))
            results[view]["pearson_grid"].append(pearson(edge, ref))
            results[view]["pearson_192"].append(pearson(edge_up, ref_up))
            results[view]["top20_iou_grid"].append(top_region_iou(edge, ref))
            results[view]["top20_iou_192"].append(top_region_iou(edge_up, ref_up))
    classifier.close()
    classify_stats, cam_stats = percentiles(classify_ms), percentiles(cam_ms)
    return {
        "images": len(val.paths),
        "grid": list(reference.shape[1:]),
        "upsampled": [UPSAMPLED, UPSAMPLED],
        "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "reference": "Grad-CAM by automatic differentiation on the float Keras model, float top class, ReLU",
        "int8_float_same_top_class": round(same_top / len(val.paths), 4),
        "reference_check_grad_cam_vs_analytic_float_cam_pearson": _stats(check),
        "metrics": {
            view: {name: _stats(values) for name, values in metrics.items()} for view, metrics in results.items()
        },
        "cost": {
            "classify_with_features_ms": classify_stats,
            "cam_ms": cam_stats,
            "cam_share_of_classify_p50": round(cam_stats["p50"] / classify_stats["p50"], 4),
            "threads": threads,
            "views": 1,
        },
    }


def _unit(cam: np.ndarray) -> np.ndarray:
    low, high = float(cam.min()), float(cam.max())
    return ((cam - low) / (high - low) if high > low else np.zeros_like(cam)).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="validation images (default 300; >= 200)")
    parser.add_argument("--keras-backend", choices=("tensorflow", "torch", "jax"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="write the JSON here instead of stdout")
    add_input_arguments(parser)
    args = parser.parse_args(argv)
    if args.keras_backend:
        os.environ["KERAS_BACKEND"] = args.keras_backend
    try:
        result = cam_fidelity(ReportInputs.from_args(args), args.images, threads=args.threads)
    except Missing as exc:
        result = {"missing": str(exc)}
    return emit_json(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
