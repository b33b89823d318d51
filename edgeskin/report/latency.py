"""Latency jobs of the report, one per process so that each one's peak RSS is its own.

``python -m edgeskin.report.latency JOB [--threads N] [--runs N] [--model PATH] [--out FILE]`` prints (or writes)
one JSON object: p50/p90 (ms), FPS, model size, peak RSS and what was timed. Jobs:

``pipeline``            the edge pipeline end to end (:func:`edgeskin.bench.run_quick_suite`)
``classifier-tflite``   :class:`~edgeskin.tasks.Classifier` on HAM10000 validation images (INT8 or a float .tflite)
``classifier-keras``    the float Keras classifier (``predict_on_batch``, batch 1) on the same pixels
``detector-tflite``     :class:`~edgeskin.tasks.Detector` on PH2 validation frames (INT8 or a float .tflite)
``detector-torch``      ultralytics ``YOLO(best.pt).predict`` (float, PyTorch CPU) on the same frames

Every timed call includes what the model needs around it on a decoded RGB frame (resize, preprocessing
profile, quantization, decoding, NMS); file decoding is excluded everywhere. Inputs cycle through a fixed
list of real images; a few untimed calls come first.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeskin.report.common import (
    Missing,
    ReportInputs,
    add_input_arguments,
    detector_baseline,
    emit_json,
    ham_validation,
    keras_backend_modules,
    keras_baseline,
    keras_device,
    models,
    ph2_validation,
    require_extra,
    ultralytics_imgsz,
)

JOBS = ("pipeline", "classifier-tflite", "classifier-keras", "detector-tflite", "detector-torch")


def _timed(func: Callable[[Any], Any], inputs: list[Any], runs: int, warmup: int) -> list[float]:
    for i in range(warmup):
        func(inputs[i % len(inputs)])
    samples = []
    for i in range(runs):
        item = inputs[i % len(inputs)]
        start = time.perf_counter()
        func(item)
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


def _summary(samples: list[float], size_path: Path | None, **extra: Any) -> dict[str, Any]:
    from edgeskin.bench import peak_rss_mb, percentiles

    stats = percentiles(samples)
    size = size_path.stat().st_size if size_path is not None and size_path.is_file() else None
    return {
        "latency_ms": stats,
        "fps": round(1000.0 / stats["p50"], 2),
        "model_size_bytes": size,
        "model_size_mb": None if size is None else round(size / 1e6, 3),
        "peak_rss_mb": peak_rss_mb(),
        **extra,
    }


def _ham_images(given: ReportInputs, count: int) -> list[np.ndarray]:
    from edgeskin.image import read_image

    return [read_image(p) for p in ham_validation(given, limit=count).paths]


def _ph2_frames(given: ReportInputs, count: int) -> list[np.ndarray]:
    from edgeskin.image import read_image

    return [read_image(f.path) for f in ph2_validation(given, limit=count)]


# The pipeline's frame: PH2 IMD002 from the data folder (the frame of the acceptance figures), else synthetic.
PIPELINE_FRAME = ("ph2", "images", "IMD002.jpg")


def job_pipeline(given: ReportInputs, threads: int, runs: int, size: str | None = None, **_: Any) -> dict[str, Any]:
    from edgeskin.bench import FRAME_SIZE, run_quick_suite

    frame_size = FRAME_SIZE
    if size:
        width, height = (int(v) for v in size.lower().split("x"))
        frame_size = (height, width)
    frame = given.data.joinpath(*PIPELINE_FRAME) if given.data is not None else None
    image = frame if frame is not None and frame.is_file() else None
    return run_quick_suite(threads=threads, runs=runs, warmup=10, size=frame_size, image=image)


def _time_edge_task(
    task: Any, method: str, path: Path, inputs: list, threads: int, runs: int, timed: str
) -> dict[str, Any]:
    """Time ``task.from_model(path).<method>(x)`` over ``inputs`` with the interpreter's own invoke times."""
    from edgeskin.bench import percentiles

    invoke: list[float] = []
    with task.from_model(path, threads=threads) as edge_task:
        run = getattr(edge_task, method)

        def call(x: np.ndarray) -> None:
            run(x)
            # The task's own record: a classifier's batched views run on a sibling interpreter, not on .model.
            invoke.append(edge_task.last_timings_ms["invoke_ms"])

        samples = _timed(call, inputs, runs, warmup=10)
        dtype = edge_task.model.input.dtype.name
    return _summary(
        samples, path, model=path.name, input_dtype=dtype, threads=threads,
        invoke_ms=percentiles(invoke[-runs:]), timed=timed,
    )  # fmt: skip


@dataclass(frozen=True)
class EdgeTaskJob:
    """A latency job that times one edgeskin task on the shipped model (or ``--model``) over decoded real images.

    Attributes:
        task: The task class's name in :mod:`edgeskin.tasks` (imported when the job runs).
        method: The timed method, called on one decoded RGB image.
        shipped: The default model: its index in :func:`~edgeskin.report.common.models` (classifier, detector).
        images: The decoded images, from the report's inputs and a count.
        timed: What one timed call covers, written in the result.
    """

    task: str
    method: str
    shipped: int
    images: Callable[[ReportInputs, int], list[np.ndarray]]
    timed: str

    def __call__(
        self, given: ReportInputs, threads: int, runs: int, model: str | None = None, images: int = 20, **_: Any
    ) -> dict[str, Any]:
        import edgeskin.tasks

        task = getattr(edgeskin.tasks, self.task)
        path = Path(model) if model else models()[self.shipped]
        return _time_edge_task(task, self.method, path, self.images(given, images), threads, runs, self.timed)


job_classifier_tflite = EdgeTaskJob(
    task="Classifier",
    method="classify_with_features",
    shipped=0,
    images=_ham_images,
    timed="Classifier.classify_with_features on a decoded HAM10000 image: resize, profile, quantize, invoke, "
    "dequantize, softmax",
)


def set_keras_threads(backend: str, threads: int) -> None:
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    elif backend == "torch":
        import torch

        torch.set_num_threads(threads)


def job_classifier_keras(
    given: ReportInputs, threads: int, runs: int, model: str | None = None, images: int = 20, **_: Any
) -> dict[str, Any]:
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    require_extra(keras_backend_modules())
    set_keras_threads(backend, threads)
    import keras

    from edgeskin.core.geometry import resize_to_input
    from edgeskin.runtime.spec import load_spec

    path = Path(model) if model else keras_baseline(given)
    classifier_path = models()[0]
    spec = load_spec(classifier_path.with_suffix(".json"))
    profile = spec.preprocessing_profile()
    net = keras.models.load_model(path, compile=False)
    size = tuple(spec.input.size)
    frames = _ham_images(given, images)

    def call(image: np.ndarray) -> None:
        resized, _ = resize_to_input(image, size, "stretch")
        pixels = profile.apply(resized) if profile is not None else resized
        net.predict_on_batch(pixels[np.newaxis].astype(np.float32))

    samples = _timed(call, frames, runs, warmup=10)
    return _summary(
        samples,
        path,
        model=path.name,
        backend=backend,
        keras=keras.__version__,
        device=keras_device(backend),
        threads=threads,
        timed="resize + profile (the same numpy code) + Keras predict_on_batch, batch 1, float32",
    )


job_detector_tflite = EdgeTaskJob(
    task="Detector",
    method="detect",
    shipped=1,
    images=_ph2_frames,
    timed="Detector.detect on a decoded PH2 frame: letterbox, quantize, invoke, decode, NMS",
)


def job_detector_torch(
    given: ReportInputs, threads: int, runs: int, model: str | None = None, images: int = 20, **_: Any
) -> dict[str, Any]:
    from edgeskin.report.common import set_offline_ultralytics

    set_offline_ultralytics(given)
    import torch
    from ultralytics import YOLO

    torch.set_num_threads(threads)
    from edgeskin.runtime.spec import load_spec

    path = Path(model) if model else detector_baseline(given)
    spec = load_spec(models()[1].with_suffix(".json"))
    yolo = YOLO(str(path), task="detect")
    frames = [np.ascontiguousarray(f[..., ::-1]) for f in _ph2_frames(given, images)]  # ultralytics takes BGR
    thresholds = spec.thresholds
    options = dict(
        imgsz=ultralytics_imgsz(spec.input.size),
        conf=thresholds.get("confidence", 0.25),
        iou=thresholds.get("iou", 0.45),
        device="cpu",
        verbose=False,
    )
    samples = _timed(lambda frame: yolo.predict(frame, **options), frames, runs, warmup=5)
    device = f"GPU ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "CPU (no GPU available)"
    return _summary(
        samples,
        path,
        model=path.name,
        torch=torch.__version__,
        device=device,
        threads=threads,
        timed=f"ultralytics YOLO(best.pt).predict on a decoded PH2 frame (BGR), imgsz {options['imgsz']}, float32 PyTorch",
    )


JOB_FUNCTIONS = {
    "pipeline": job_pipeline,
    "classifier-tflite": job_classifier_tflite,
    "classifier-keras": job_classifier_keras,
    "detector-tflite": job_detector_tflite,
    "detector-torch": job_detector_torch,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", choices=JOBS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--images", type=int, default=20, help="distinct real images cycled through")
    parser.add_argument("--model", help="model file (default: the shipped / baseline one)")
    parser.add_argument("--size", help="pipeline: frame size WxH (default 768x576)")
    parser.add_argument("--out", help="write the JSON here instead of stdout")
    add_input_arguments(parser)
    args = parser.parse_args(argv)
    try:
        result = JOB_FUNCTIONS[args.job](
            ReportInputs.from_args(args),
            threads=args.threads, runs=args.runs, model=args.model, images=args.images, size=args.size,
        )  # fmt: skip
    except Missing as exc:
        result = {"missing": str(exc)}
    result = {"job": args.job, **result}
    return emit_json(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
