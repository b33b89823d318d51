"""Where the pipeline's time goes beyond ``invoke()``: its pieces timed alone, and ``predict`` under cProfile.

``python -m benchmarks.profile_pipeline [--threads 2] [--runs 300] [--out FILE.json]``

1. Times each piece of ``LesionPipeline.predict`` on the 768x576 PH2 frame on its own (min and median of many
   calls): the detector's letterbox/quantize, its ``TFLiteModel.run``, YOLO decoding, the crop, the classifier's
   views written into the batch tensor, the batched invoke against the bare one, the CAM, the overlay.
2. Interleaves ``predict`` of the batched pipeline (every view of every lesion in one invoke) with the per-view
   loop (``Classifier(batch=False)``), after checking that both give the same result.
3. Lists the functions ``predict`` spends its own time in (cProfile, ``tottime``), the invoke included, so what
   is left around the models is visible per frame.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.checkout import DATA
from edgeskin.bench import time_ms
from edgeskin.report.common import models


def _min_median(func: Callable[[], Any], runs: int) -> tuple[float, float]:
    samples = time_ms(func, runs, warmup=5)
    return round(min(samples), 4), round(float(np.median(samples)), 4)


def _cprofile(func: Callable[[], Any], runs: int, top: int = 15) -> list[dict[str, Any]]:
    """The ``top`` functions by own time over ``runs`` calls, per call (ms)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        func()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{filename.rsplit('/', 2)[-1]}:{line}({name})" if line else name
        rows.append(
            {
                "function": where,
                "calls_per_frame": round(calls / runs, 2),
                "own_ms_per_frame": round(1000 * tottime / runs, 4),
                "cumulative_ms_per_frame": round(1000 * cumtime / runs, 4),
            }
        )
    return sorted(rows, key=lambda r: -r["own_ms_per_frame"])[:top]


def profile(threads: int, runs: int) -> dict[str, Any]:
    from edgeskin.annotate import annotate
    from edgeskin.bench import load_bench_frame, percentiles
    from edgeskin.core.crop import crop_with_margin
    from edgeskin.runtime.interpreter import make_interpreter
    from edgeskin.tasks.classifier import Classifier, ClassifierOptions
    from edgeskin.tasks.detector import Detector, DetectorOptions
    from edgeskin.tasks.pipeline import LesionPipeline

    classifier_path, detector_path = models()
    # The frame of the reference results (edgeskin.bench no longer looks for it; it is the checkout's).
    frame_file = DATA / "ph2" / "images" / "IMD002.jpg"
    frame, _ = load_bench_frame(frame_file if frame_file.is_file() else None)

    def pipeline(batch: bool) -> LesionPipeline:
        classifier = Classifier.create(ClassifierOptions(classifier_path, num_threads=threads, batch=batch))
        detector = Detector.create(DetectorOptions(detector_path, num_threads=threads, max_det=3))
        return LesionPipeline(classifier, detector)

    base, loop = pipeline(True), pipeline(False)
    result = base.predict(frame)
    det, cls = base.detector, base.classifier
    x, transform = det.preprocess(frame)
    stored = det.model.run(x, outputs=det.model.output_names, raw=True)
    box = result.lesions[0].box if result.lesions else np.array([0, 0, frame.shape[1], frame.shape[0]], np.float32)
    crop, _ = crop_with_margin(frame, box, margin=base.crop_margin, copy=False)
    rows = cls.preprocess_views(crop)
    features = cls.classify_with_features(crop)[1]
    bare = {}
    for name, path, tensor in (("detector", detector_path, x), ("classifier batch", classifier_path, rows)):
        interpreter = make_interpreter(path, num_threads=threads)
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, list(tensor.shape), strict=False)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, tensor)
        bare[name] = interpreter
    pieces = {
        "predict (whole)": lambda: base.predict(frame),
        "detector: bare invoke": bare["detector"].invoke,
        "detector: Detector.detect": lambda: det.detect(frame),
        "detector: preprocess (letterbox + quantize)": lambda: det.preprocess(frame),
        "detector: TFLiteModel.run": lambda: det.model.run(x),
        "detector: postprocess (candidates, DFL decode, NMS)": lambda: det.postprocess(stored, transform),
        "crop_with_margin (a view)": lambda: crop_with_margin(frame, box, margin=base.crop_margin, copy=False),
        f"classifier: bare invoke, batch of {len(rows)} views": bare["classifier batch"].invoke,
        "classifier: classify_with_features (batched)": lambda: cls.classify_with_features(crop),
        "classifier: views into the batch (resize + profile + quantize + flips)": lambda: cls.preprocess_views(crop),
        "CAM": lambda: base.explainer.explain(features, 0),
        "annotate (overlay, boxes, labels, banner)": lambda: annotate(frame, result),
    }
    out: dict[str, Any] = {"threads": threads, "lesions": len(result.lesions), "pieces_ms_min_median": {}}
    for name, func in pieces.items():
        out["pieces_ms_min_median"][name] = _min_median(func, runs)

    reference, looped = base.predict(frame), loop.predict(frame)
    if len(looped.lesions) != len(reference.lesions) or not all(
        np.array_equal(a.box, b.box) and np.allclose(a.dx.probabilities, b.dx.probabilities, rtol=0, atol=1e-6)
        for a, b in zip(looped.lesions, reference.lesions, strict=True)
    ):
        raise AssertionError("the per-view loop and the batched views disagree")
    variants = {"batched views": base, "per-view loop": loop}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, variant in variants.items():
            start = time.perf_counter()
            variant.predict(frame)
            samples[name].append((time.perf_counter() - start) * 1000.0)
    out["variants"] = {name: percentiles(s) for name, s in samples.items()}
    out["variants_note"] = "same results checked; predict calls interleaved"
    out["cprofile_predict"] = _cprofile(lambda: base.predict(frame), runs)
    base.close()
    loop.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args(argv)
    result = profile(args.threads, args.runs)
    for name, (low, median) in result["pieces_ms_min_median"].items():
        print(f"{name:<72} min {low:8.3f}  median {median:8.3f} ms")
    for name, stats in result["variants"].items():
        print(f"predict, {name:<63} p50 {stats['p50']:8.3f}  p90 {stats['p90']:8.3f} ms")
    print("\npredict under cProfile, per frame (own ms, cumulative ms, calls):")
    for row in result["cprofile_predict"]:
        print(
            f"  {row['function']:<70} {row['own_ms_per_frame']:8.3f} {row['cumulative_ms_per_frame']:8.3f} "
            f"{row['calls_per_frame']:6.1f}"
        )
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
