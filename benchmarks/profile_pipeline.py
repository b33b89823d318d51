"""Where the pipeline's time goes beyond ``invoke()``, and what proposed runtime changes would save.

``python -m benchmarks.profile_pipeline [--threads 2] [--runs 300]``

1. Times each piece of ``LesionPipeline.predict`` on the 768x576 PH2 frame on its own (min and median of
   many calls): the detector's letterbox/quantize, ``TFLiteModel.run`` against a plain
   ``set_tensor`` / ``invoke`` / ``get_tensor``, YOLO decoding, crop, the classifier's resize/profile/quantize,
   dequantization, CAM.
2. A/B-tests candidate changes to code outside ``benchmarks/`` without editing it: each variant is a separate
   pipeline whose objects are patched in this process only, and the variants' ``predict`` calls are
   interleaved so they share the machine state. Variants:

   * ``direct_invoke``: ``TFLiteModel.run`` through ``interpreter.set_tensor/invoke/get_tensor`` with the
     signature's tensor indices, instead of the signature runner, which calls ``ResizeInputTensor`` and
     ``AllocateTensors`` on every call;
   * ``+xor_shift``: for int8 models with input ``pixel - 128``, quantize with ``np.bitwise_xor(u8, 0x80).view(int8)``
     (one pass, exact) instead of int16 widening, add, clip and narrowing;
   * ``+f32_dequant``: dequantize outputs in float32 arithmetic (one pass) instead of through float64.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from edgeskin.report.common import models


def _min_median(func: Callable[[], Any], runs: int) -> tuple[float, float]:
    for _ in range(5):
        func()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        samples.append((time.perf_counter() - start) * 1000.0)
    return round(min(samples), 4), round(float(np.median(samples)), 4)


def patch_direct_invoke(model: Any) -> None:
    """Make ``model.run`` use set_tensor/invoke/get_tensor (signature names kept, runner dropped)."""
    runner = model._runner
    if runner is None:
        return
    inputs = {name: d["index"] for name, d in runner.get_input_details().items()}
    outputs = [(info, runner.get_output_details()[info.name]["index"]) for info in model.outputs]
    del runner
    model._runner = None  # the runner holds a reference that makes interpreter.invoke() refuse to run
    interpreter = model.interpreter
    infos = {info.name: info for info in model.inputs}

    def run(x: Any) -> dict[str, np.ndarray]:
        feeds = x if isinstance(x, dict) else {model.inputs[0].name: x}
        for name, value in feeds.items():
            interpreter.set_tensor(inputs[name], model._prepare(infos[name], value))
        start = time.perf_counter()
        interpreter.invoke()
        model.invoke_ms = (time.perf_counter() - start) * 1000.0
        return {info.name: info.dequantize(interpreter.get_tensor(index)) for info, index in outputs}

    model.run = run


def patch_f32_dequant(model: Any) -> None:
    """Dequantize per-tensor int8 outputs in float32 (``(q - zp) * scale`` in one float32 pass)."""
    import dataclasses

    for i, info in enumerate(model.outputs):
        if not info.is_quantized or len(info.scales) != 1:
            continue
        scale, zero_point = np.float32(info.scale), np.float32(info.zero_point)

        class Fast(type(info)):  # type: ignore[misc]
            def dequantize(self, q: Any, _s=scale, _z=zero_point) -> np.ndarray:
                return (np.asarray(q, dtype=np.float32) - _z) * _s

        fields = {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}
        outputs = list(model.outputs)
        outputs[i] = Fast(**fields)
        model.outputs = tuple(outputs)


def patch_xor_shift(task: Any) -> None:
    """int8 input = pixel - 128 as ``uint8 XOR 0x80`` viewed as int8 (exact, one pass)."""
    encoder = getattr(task, "_encoder", None)  # runtime.interpreter.InputEncoder, where the tasks have one
    if encoder is not None:
        if encoder.integer_shift == -128 and encoder.info.dtype == np.int8 and not encoder.bgr:

            def encode(pixels: np.ndarray) -> np.ndarray:
                return np.bitwise_xor(pixels, np.uint8(0x80)).view(np.int8)[np.newaxis]

            encoder.encode = encode
        return
    if task._integer_shift != -128 or task.model.input.dtype != np.int8 or task.spec.input.color_order != "RGB":
        return
    from edgeskin.core.geometry import resize_to_input

    # The Detector returns (tensor, transform), the Classifier the tensor alone.
    returns_tuple = isinstance(task.preprocess(np.zeros((64, 64, 3), np.uint8)), tuple)

    def preprocess(image: np.ndarray) -> Any:
        resized, transform = resize_to_input(image, task.spec.input.size, task.spec.input.resize)
        if task._profile is not None:
            resized = task._profile.apply(resized)
        shifted = np.bitwise_xor(resized, np.uint8(0x80)).view(np.int8)[np.newaxis]
        return (shifted, transform) if returns_tuple else shifted

    task.preprocess = preprocess


def profile(threads: int, runs: int) -> dict[str, Any]:
    from edgeskin.bench import load_bench_frame, percentiles
    from edgeskin.core.crop import crop_with_margin
    from edgeskin.runtime.interpreter import make_interpreter
    from edgeskin.tasks.pipeline import LesionPipeline, PipelineOptions

    classifier_path, detector_path = models()
    frame, _ = load_bench_frame()

    def pipeline() -> LesionPipeline:
        return LesionPipeline.create(PipelineOptions(classifier_path, detector=detector_path, num_threads=threads))

    base = pipeline()
    result = base.predict(frame)
    det, cls = base.detector, base.classifier
    x, transform = det.preprocess(frame)
    raw = det.model.run(x)[det._predictions_output]
    box = result.lesions[0].box if result.lesions else np.array([0, 0, frame.shape[1], frame.shape[0]], np.float32)
    crop, _ = crop_with_margin(frame, box, margin=base.crop_margin)
    cx = cls.preprocess(crop)
    features = cls.model.run(cx)[cls._features_output][0]
    bare = {}
    for name, path, tensor in (("detector", detector_path, x), ("classifier", classifier_path, cx)):
        interpreter = make_interpreter(path, num_threads=threads)
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor)
        bare[name] = interpreter
    pieces = {
        "predict (whole)": lambda: base.predict(frame),
        "detector: bare invoke": bare["detector"].invoke,
        "detector: Detector.detect": lambda: det.detect(frame),
        "detector: preprocess (letterbox + quantize)": lambda: det.preprocess(frame),
        "detector: TFLiteModel.run": lambda: det.model.run(x),
        "detector: decode + NMS": lambda: det.decode(raw, transform),
        "crop_with_margin": lambda: crop_with_margin(frame, box, margin=base.crop_margin),
        "classifier: bare invoke": bare["classifier"].invoke,
        "classifier: classify_with_features": lambda: cls.classify_with_features(crop),
        "classifier: preprocess (resize + profile + quantize)": lambda: cls.preprocess(crop),
        "classifier: TFLiteModel.run": lambda: cls.model.run(cx),
        "CAM": lambda: base.explainer.explain(features, 0),
    }
    out: dict[str, Any] = {"threads": threads, "lesions": len(result.lesions), "pieces_ms_min_median": {}}
    for name, func in pieces.items():
        out["pieces_ms_min_median"][name] = _min_median(func, runs)

    variants: dict[str, LesionPipeline] = {"baseline": base}
    direct = pipeline()
    patch_direct_invoke(direct.detector.model)
    patch_direct_invoke(direct.classifier.model)
    variants["direct_invoke"] = direct
    xor = pipeline()
    for task in (xor.detector, xor.classifier):
        patch_direct_invoke(task.model)
        patch_xor_shift(task)
    variants["direct_invoke+xor_shift"] = xor
    full = pipeline()
    for task in (full.detector, full.classifier):
        patch_direct_invoke(task.model)
        patch_xor_shift(task)
        patch_f32_dequant(task.model)
    variants["direct_invoke+xor_shift+f32_dequant"] = full
    reference = base.predict(frame)
    for name, variant in variants.items():
        got = variant.predict(frame)
        same = len(got.lesions) == len(reference.lesions) and all(
            np.allclose(a.box, b.box, atol=1e-3) and np.allclose(a.dx.probabilities, b.dx.probabilities, atol=1e-5)
            for a, b in zip(got.lesions, reference.lesions, strict=True)
        )
        if not same:
            raise AssertionError(f"variant {name} changes the result")
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(5):
        for variant in variants.values():
            variant.predict(frame)
    for _ in range(runs):
        for name, variant in variants.items():
            start = time.perf_counter()
            variant.predict(frame)
            samples[name].append((time.perf_counter() - start) * 1000.0)
    baseline_p50 = percentiles(samples["baseline"])["p50"]
    out["variants"] = {
        name: {**percentiles(s), "saved_ms_p50": round(baseline_p50 - percentiles(s)["p50"], 4)}
        for name, s in samples.items()
    }
    out["variants_note"] = "identical results checked; predict calls interleaved across variants"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args(argv)
    result = profile(args.threads, args.runs)
    for name, (low, median) in result["pieces_ms_min_median"].items():
        print(f"{name:<55} min {low:8.3f}  median {median:8.3f} ms")
    for name, stats in result["variants"].items():
        print(f"{name:<55} p50 {stats['p50']:8.3f}  p90 {stats['p90']:8.3f}  saved {stats['saved_ms_p50']:+.3f} ms")
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
