"""Score and time trained float Keras classifiers on the validation split, on whatever device Keras has.

``KERAS_BACKEND=torch python -m benchmarks.float_baseline --runs RUN_DIR... --images DIR --out FILE``

Made for a GPU machine that has PyTorch or JAX but no TensorFlow (and no TFLite interpreter): each run
directory holds a ``model.keras``, its ``config.json`` and ``split.json`` from ``training.train_classifier``.
The validation images of that split are decoded, stretched and preprocessed by the runtime's own functions
(:func:`edgeskin.report.common.model_input_pixels`), so the float model sees the pixels the INT8 model sees.
Writes, per run: the metrics of :func:`edgeskin.evaluation.classify_report`, the probabilities (so the
report can compare them with INT8 on the same images), and latency: batch 1 (p50/p90 of single-image
``model(x)`` calls, each ending with the copy back to the host) and throughput at batch 64. Stored as
``benchmarks/gpu/float-baseline.json``, the report (:func:`edgeskin.report.accuracy.gpu_baseline_rows`) scores
these rows again on the same images and shows them with the device they ran on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeskin.report.common import emit_json, model_input_pixels


def time_model(model, pixels: np.ndarray, repeats: int = 200, batch: int = 64) -> dict[str, float]:
    """Batch-1 latency percentiles and batch-``batch`` throughput of ``model(x, training=False)``.

    Every timed call ends by copying its result to the host (``convert_to_numpy``), which waits for the
    device, so no call's queued GPU work spills into the next one's time.
    """
    import keras

    single = [keras.ops.convert_to_tensor(pixels[i : i + 1].astype(np.float32)) for i in range(min(16, len(pixels)))]
    for x in single[:5]:
        np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))
    times = []
    for i in range(repeats):
        x = single[i % len(single)]
        t0 = time.perf_counter()
        out = model(x, training=False)
        keras.ops.convert_to_numpy(out)  # includes the copy back, as an application would
        times.append(time.perf_counter() - t0)
    big = keras.ops.convert_to_tensor(np.resize(pixels, (batch,) + pixels.shape[1:]).astype(np.float32))
    keras.ops.convert_to_numpy(model(big, training=False))
    t0 = time.perf_counter()
    rounds = 10
    for _ in range(rounds):
        keras.ops.convert_to_numpy(model(big, training=False))
    elapsed = time.perf_counter() - t0
    ms = np.asarray(times) * 1000
    return {
        "batch1_p50_ms": round(float(np.percentile(ms, 50)), 3),
        "batch1_p90_ms": round(float(np.percentile(ms, 90)), 3),
        f"batch{batch}_images_per_s": round(rounds * batch / elapsed, 1),
    }


def score_run(run: Path, images: Path, metadata: Path | None, device: str) -> dict[str, Any]:
    import keras

    from edgeskin.datasets import apply_split, load_ham10000
    from edgeskin.evaluation import classify_report
    from training.classifier_model import register_custom_layers

    register_custom_layers()  # ResNet50's ChannelFlip

    config = json.loads((run / "config.json").read_text())
    split = json.loads((run / "split.json").read_text())
    data = load_ham10000(metadata or run / "HAM10000_metadata.csv", images)
    val = apply_split(data, split, "val")
    if len(val) != len(split["val"]):
        raise SystemExit(f"{run}: {len(split['val']) - len(val)} validation images of the split are not in {images}")
    model = keras.models.load_model(run / "model.keras", compile=False)
    size = int(config["input_size"])
    pixels = model_input_pixels(val.paths, size, config.get("profile"))
    probs = np.asarray(model.predict(pixels.astype(np.float32), batch_size=64, verbose=0), np.float64)
    report = classify_report(val.labels, probs)
    return {
        "backbone": config["backbone"],
        "alpha": config.get("alpha"),
        "input_size": size,
        "weights": "ImageNet" if config.get("resolved_weights") else "none (from scratch)",
        "epochs": config.get("epochs"),
        "device": device,
        "keras_backend": keras.backend.backend(),
        "size_mb": round((run / "model.keras").stat().st_size / 1e6, 3),
        "n": len(val),
        "balanced_accuracy": report["dx"]["balanced_accuracy"],
        "accuracy": report["dx"]["accuracy"],
        "auc": report["dx"]["auc"],
        "malignant_auc": report["malignant"]["auc"],
        "latency": time_model(model, pixels),
        "image_ids": list(val.image_ids),
        "probs": np.round(probs, 6).tolist(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", required=True, help="training run directories")
    parser.add_argument("--images", required=True, help="folder with the validation images")
    parser.add_argument("--metadata", help="HAM10000 metadata CSV (default: RUN/HAM10000_metadata.csv)")
    parser.add_argument("--out", help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)
    import keras

    from edgeskin.report.common import keras_device

    device = keras_device(keras.backend.backend())
    result: dict[str, Any] = {"device": device, "runs": {}}
    for run in args.runs:
        name = Path(run).name
        try:
            result["runs"][name] = score_run(
                Path(run), Path(args.images), args.metadata and Path(args.metadata), device
            )
        except Exception as exc:  # noqa: BLE001 - one broken run must not lose the others' results
            result["runs"][name] = {"missing": f"{type(exc).__name__}: {exc}"}
        print(name, {k: v for k, v in result["runs"][name].items() if k not in ("probs", "image_ids")}, file=sys.stderr)
    return emit_json(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
