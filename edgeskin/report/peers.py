"""Peers in the same run: ultralytics' own ``YOLO(<the same INT8 .tflite>).predict`` against our Detector.

``python -m edgeskin.report.peers [--threads 2] [--runs 100] [--images 20] [--out FILE]``

Both run on the same decoded PH2 frames held in memory (decode excluded), interleaved call by call so they
see the same machine state, with the same interpreter thread count: ultralytics' LiteRT backend takes its
thread count from ``ultralytics.utils.NUM_THREADS`` (cores - 1, so 1 on a 2-core machine); it is set to
``--threads`` here so that only the code around the model differs.

Two ultralytics variants are timed:

* ``as_is``: ultralytics unchanged. Its LiteRT backend quantizes the [0, 1]-scaled image with the input
  tensor's scale, but edgeskin's detector folds ``/255`` into the graph (input scale 1, int8 = pixel - 128),
  so ultralytics feeds values near -128 and its boxes are wrong (reported as ``agreement``).
* ``adapted``: the same, with the input tensor's scale as ultralytics reads it divided by 255, so its own
  quantization yields the right integers; its boxes then match ours. This is the comparison that counts.
* ``adapted_default_threads``: ``adapted`` with ultralytics' own thread default (only when it differs from
  ``--threads``): what a user running ultralytics unchanged on this machine gets.

Ultralytics' TFLite backend decodes only the one-output ``[1, 4 + nc, N]`` form (spec ``layout: "yolo"``). When
the shipped detector ends before the box decoding (``layout: "yolo_dfl"``), both sides run an export of the
same weights (the same ``provenance.weights_sha256``) with the decoding in the graph, found in
the ``peers/`` folder of ``--float-dir`` (``python -m convert.export_detector --decode graph --out <that folder>``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeskin.core.boxes import pair_iou
from edgeskin.report.common import (
    Missing,
    ReportInputs,
    add_input_arguments,
    display_path,
    emit_json,
    models,
    ph2_validation,
    set_offline_ultralytics,
    ultralytics_imgsz,
)


def peer_model(detector: Path, folder: Path | None) -> Path:
    """The INT8 detector both sides run: ``detector`` itself when ultralytics can decode its output, else an
    export of the same weights with the box decoding in the graph from ``folder``.

    Raises:
        Missing: ``detector`` is a ``yolo_dfl`` model and ``folder`` (None: not given) has no ``yolo`` export of
            its weights.
    """
    spec = json.loads(detector.with_suffix(".json").read_text())
    if spec.get("layout", "yolo") != "yolo_dfl":
        return detector
    if folder is None:
        raise Missing(
            f"{detector.name} ends before the box decoding (layout yolo_dfl), which ultralytics' TFLite backend "
            "cannot decode: an export of its weights with the decoding in the graph is needed (--float-dir, peers/)"
        )
    provenance = spec.get("provenance") or {}
    sha = provenance.get("weights_sha256")
    for candidate in sorted(folder.glob("*.json")) if sha else ():
        other = json.loads(candidate.read_text())
        same_weights = (other.get("provenance") or {}).get("weights_sha256") == sha
        if same_weights and other.get("layout", "yolo") == "yolo" and candidate.with_suffix(".tflite").is_file():
            return candidate.with_suffix(".tflite")
    weights = provenance.get("weights", "WEIGHTS.pt")
    height, width = ((spec.get("input") or {}).get("size") or [0, 0])[:2]
    imgsz = f" --imgsz {height}x{width}" if height and width and height != width else ""
    raise Missing(
        f"{detector.name} ends before the box decoding (layout yolo_dfl), which ultralytics' TFLite backend cannot "
        f"decode, and {folder} holds no export of its weights ({str(sha)[:12]}) with the decoding in the graph: "
        f"python -m convert.export_detector --weights {weights}{imgsz} --decode graph --out {folder}"
    )


def _top_box(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray | None:
    if len(boxes) == 0:
        return None
    return np.asarray(boxes[int(np.argmax(scores))], np.float32)


def _ultralytics_model(given: ReportInputs, path: Path, threads: int | None) -> Any:
    """``YOLO(path)``; its LiteRT interpreter gets ``threads`` (None: ultralytics' own default)."""
    set_offline_ultralytics(given)
    import ultralytics.nn.backends.litert as litert
    import ultralytics.utils
    from ultralytics import YOLO

    # Read when the interpreter is built, at the first predict.
    litert.NUM_THREADS = ultralytics.utils.NUM_THREADS if threads is None else threads
    return YOLO(str(path), task="detect")


def run_peers(
    given: ReportInputs, threads: int = 2, runs: int = 100, images: int = 20, detector_path: Path | None = None
) -> dict[str, Any]:
    """Time our Detector and ultralytics' predict on the same INT8 model and frames; see the module docstring."""
    from edgeskin.bench import peak_rss_mb, percentiles
    from edgeskin.image import read_image
    from edgeskin.tasks.detector import Detector

    shipped = models()[1]
    path = detector_path or peer_model(shipped, given.float_dir / "peers" if given.float_dir else None)
    frames = [read_image(f.path) for f in ph2_validation(given, limit=images)]
    bgr = [np.ascontiguousarray(f[..., ::-1]) for f in frames]
    ours = Detector.from_model(path, threads=threads)
    options = dict(
        imgsz=ultralytics_imgsz(ours.input_size),
        conf=ours.confidence_threshold,
        iou=ours.iou_threshold,
        verbose=False,
        device="cpu",
        max_det=ours.max_det,
    )
    peers: dict[str, Any] = {}
    import ultralytics.utils

    default_threads = ultralytics.utils.NUM_THREADS
    variants = [("as_is", False, threads), ("adapted", True, threads)]
    if default_threads != threads:
        variants.append(("adapted_default_threads", True, None))
    for variant, adapt, variant_threads in variants:
        yolo = _ultralytics_model(given, path, variant_threads)
        yolo.predict(bgr[0], **options)  # builds the predictor and its backend
        backend = yolo.predictor.model.backend
        if adapt:
            details = backend.input_details[0]
            scale, zero_point = details["quantization"]
            details["quantization"] = (scale / 255.0, zero_point)
        peers[variant] = {
            "yolo": yolo,
            "samples": [],
            "speed": [],
            "boxes": [],
            "threads": default_threads if variant_threads is None else variant_threads,
        }

    our_samples: list[float] = []
    our_boxes: list[np.ndarray | None] = []
    warmup = 5
    for i in range(warmup + runs):
        k = i % len(frames)
        start = time.perf_counter()
        detections = ours.detect(frames[k])
        elapsed = (time.perf_counter() - start) * 1000.0
        if i >= warmup:
            our_samples.append(elapsed)
            if i - warmup < len(frames):
                our_boxes.append(_top_box(detections.xyxy, detections.confidence))
        for peer in peers.values():
            start = time.perf_counter()
            results = peer["yolo"].predict(bgr[k], **options)
            elapsed = (time.perf_counter() - start) * 1000.0
            if i >= warmup:
                peer["samples"].append(elapsed)
                peer["speed"].append(results[0].speed)
                if i - warmup < len(frames):
                    box = results[0].boxes
                    peer["boxes"].append(_top_box(box.xyxy.cpu().numpy(), box.conf.cpu().numpy()))
    ours.close()

    ours_stats = percentiles(our_samples)
    out: dict[str, Any] = {
        "threads": threads,
        "runs": runs,
        "images": len(frames),
        "model": path.name,
        **(
            {
                "model_note": f"not the shipped {shipped.name} (box decoding outside the model, which ultralytics "
                f"cannot decode) but an export of its weights with the decoding in the graph: "
                f"{display_path(path)}"
            }
            if detector_path is None and path != shipped
            else {}
        ),
        "ours": {
            "latency_ms": ours_stats,
            "fps": round(1000.0 / ours_stats["p50"], 2),
            "timed": "edgeskin Detector.detect(frame RGB): letterbox, quantize, invoke, dequantize, decode, NMS",
        },
        "ultralytics_version": _ultralytics_version(),
        "peak_rss_mb": peak_rss_mb(),
    }
    for variant, peer in peers.items():
        stats = percentiles(peer["samples"])
        speed = {key: round(float(np.median([s[key] for s in peer["speed"]])), 4) for key in peer["speed"][0]}
        ious = [pair_iou(a, b) for a, b in zip(our_boxes, peer["boxes"], strict=True)]
        out[f"ultralytics_{variant}"] = {
            "latency_ms": stats,
            "fps": round(1000.0 / stats["p50"], 2),
            "speed_breakdown_ms_median": speed,
            "interpreter_threads": peer["threads"],
            "speedup_ours_vs_ultralytics_p50": round(stats["p50"] / ours_stats["p50"], 3),
            "agreement_top_box_iou_mean": round(float(np.mean(ious)), 4),
            "agreement_share_iou_ge_0.9": round(float(np.mean(np.asarray(ious) >= 0.9)), 4),
            "timed": "ultralytics YOLO(tflite).predict(frame BGR numpy): letterbox, /255, quantize, invoke, "
            "dequantize, NMS, Results"
            + (" (input scale adapted to the model's folded /255)" if "adapted" in variant else ""),
        }
    return out


def _ultralytics_version() -> str:
    import ultralytics

    return ultralytics.__version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--model", help="detector .tflite (default: the shipped one)")
    parser.add_argument("--out", help="write the JSON here instead of stdout")
    add_input_arguments(parser)
    args = parser.parse_args(argv)
    try:
        given = ReportInputs.from_args(args)
        result = run_peers(given, args.threads, args.runs, args.images, Path(args.model) if args.model else None)
    except Missing as exc:
        result = {"missing": str(exc)}
    return emit_json(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
