"""The quick latency suite behind ``edgeskin bench``: the shipped pipeline, stage by stage, on one frame.

It needs only what the runtime needs (numpy, OpenCV, a TFLite interpreter): no pytest, no TensorFlow.
What it measures, on one 768x576 frame held in memory (file decoding is timed apart and excluded):

* ``end_to_end_ms``: :meth:`LesionPipeline.predict` (validate → detect → crop → classify → CAM), p50/p90.
* ``invoke_ms``: bare ``interpreter.invoke()`` of each model on that frame's own input tensors, measured in
  the same run on separate interpreters with the same thread count (nothing around the call).
* ``overhead_ratio`` = end-to-end p50 / the summed bare invoke p50s of the invokes one frame makes: the detector's,
  and the classifier's as actually made (one batch holding every test-time view of every lesion, timed bare at
  that batch size; one invoke per view for a model whose batch cannot be resized): how much the pipeline adds on
  top of the models' own compute (1.0 = nothing). ``classifier_view_invoke_ms`` is one view's bare invoke.
* per-stage p50/p90 (decode, each pipeline stage, the detector's and classifier's own sub-stages, annotate),
  FPS (sequential, one stream), model sizes, peak RSS, and the machine (CPU model, cores, governor,
  interpreter package and version).

The result is one JSON-ready dict (:data:`SCHEMA_VERSION`); :func:`format_table` prints it. Per-device
reference files (``<device>.json``, kept by the source checkout) are this JSON, named by :func:`device_id`.
"""

from __future__ import annotations

import datetime as dt
import gc
import math
import os
import platform
import re
import resource
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SCHEMA_VERSION",
    "FRAME_SIZE",
    "percentiles",
    "time_ms",
    "overhead_ratio",
    "peak_rss_mb",
    "read_device_model",
    "cpu_model_name",
    "cpu_features",
    "int8_isa",
    "cpu_governor",
    "governor_warning",
    "QUIET_INVOKE_SPREAD",
    "host_noise",
    "host_noise_warning",
    "edgetpu_usb_present",
    "device_id",
    "machine_info",
    "load_bench_frame",
    "synthetic_frame",
    "run_quick_suite",
    "profile_estimate",
    "views_accuracy",
    "format_table",
    "format_profile_estimate",
    "validate_result",
]

SCHEMA_VERSION = 1
FRAME_SIZE = (576, 768)  # (height, width): the PH2-sized frame of the acceptance figure
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
CPUINFO = Path("/proc/cpuinfo")
GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
USB_DEVICES = Path("/sys/bus/usb/devices")
# The Coral USB Accelerator enumerates as 1a6e:089a (Global Unichip) until its firmware is loaded by the
# runtime, then as 18d1:9302 (Google).
CORAL_USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}

# Keys every result has; tests/test_bench.py and edgeskin/report (the benchmark report) rely on them.
REQUIRED_KEYS = (
    "schema_version",
    "date",
    "device_id",
    "machine",
    "settings",
    "models",
    "end_to_end_ms",
    "fps",
    "stages_ms",
    "invoke_ms",
    "overhead_ratio",
    "overhead_ms",
    "cam_share_of_classify",
    "lesions_per_frame",
    "peak_rss_mb",
    "warnings",
)
STAT_KEYS = ("p50", "p90", "mean", "min", "max", "n")


# --------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------


def percentiles(samples: Iterable[float]) -> dict[str, float]:
    """p50, p90, mean, min, max (ms, rounded to µs) and n of timing samples.

    Percentiles are numpy's linear interpolation between order statistics.

    Raises:
        ValueError: no samples, or a sample that is not a finite number.
    """
    arr = np.asarray(list(samples), dtype=np.float64)
    if arr.size == 0:
        raise ValueError("expected at least one timing sample, got none")
    if not np.all(np.isfinite(arr)):
        raise ValueError("expected finite timing samples, got NaN or infinity")
    return {
        "p50": round(float(np.percentile(arr, 50)), 4),
        "p90": round(float(np.percentile(arr, 90)), 4),
        "mean": round(float(arr.mean()), 4),
        "min": round(float(arr.min()), 4),
        "max": round(float(arr.max()), 4),
        "n": int(arr.size),
    }


def time_ms(func: Callable[[], object], runs: int, warmup: int = 3) -> list[float]:
    """Milliseconds of ``runs`` calls of ``func()`` after ``warmup`` untimed calls."""
    if runs < 1:
        raise ValueError(f"runs: expected a positive number, got {runs}")
    for _ in range(max(0, warmup)):
        func()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


def overhead_ratio(
    end_to_end_p50: float, invoke_p50: Mapping[str, float], counts: Mapping[str, float] | None = None
) -> float:
    """End-to-end p50 divided by the summed bare invoke p50 of the models one frame runs.

    Args:
        end_to_end_p50: p50 of the whole ``predict`` call, ms.
        invoke_p50: Model name → p50 of one bare ``invoke()``, ms.
        counts: Model name → invokes per frame (e.g. the classifier runs once per lesion); default 1 each.
            A model with count 0 (no lesion found) adds nothing.

    Raises:
        ValueError: the models' summed invoke time is not positive.
    """
    counts = counts or {}
    total = sum(float(ms) * float(counts.get(name, 1)) for name, ms in invoke_p50.items())
    if not total > 0:
        raise ValueError(f"expected a positive sum of invoke times, got {total} from {dict(invoke_p50)}")
    return round(float(end_to_end_p50) / total, 4)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (``getrusage``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    divisor = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0
    return round(peak / divisor, 1)


# --------------------------------------------------------------------------------------------------
# Machine and device
# --------------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", "replace").replace("\x00", "").strip()
    except OSError:
        return None


def read_device_model(path: str | Path = DEVICE_TREE_MODEL) -> str | None:
    """The board name from the device tree (e.g. ``"Raspberry Pi 5 Model B Rev 1.0"``); None off ARM boards."""
    return _read_text(Path(path)) or None


def cpu_model_name(cpuinfo: str | Path = CPUINFO) -> str:
    """The CPU model: ``model name`` (x86), else ``Hardware``/``Model``/``CPU part`` (ARM), else ``platform``."""
    text = _read_text(Path(cpuinfo)) or ""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields and value.strip():
            fields[key.strip()] = value.strip()
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        if key in fields:
            return fields[key]
    if "CPU part" in fields:
        return f"ARM CPU part {fields['CPU part']}"
    return platform.processor() or platform.machine() or "unknown"


# The instruction-set extensions that set the speed of an INT8 model on a CPU: XNNPACK picks its quantized kernels
# by them. On x86 the 8-bit dot products (AVX-512 VNNI, AVX-VNNI, AMX) run the shipped models several times faster
# than AVX2 alone (the detector's invoke: 4.5 ms on a Xeon, 14 ms on an AVX2-only EPYC, both 2 threads); on ARM, the
# dot-product (asimddp) and i8mm extensions. Listed in this order when present.
INT8_CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm", "sve")
# Fastest first: the tier named in the device id.
_INT8_TIERS = (
    ("amx_int8", "amx"),
    ("avx512_vnni", "avx512vnni"),
    ("avx_vnni", "avxvnni"),
    ("avx512f", "avx512"),
    ("avx2", "avx2"),
    ("i8mm", "i8mm"),
    ("asimddp", "dotprod"),
)


def cpu_features(cpuinfo: str | Path = CPUINFO) -> tuple[str, ...]:
    """The INT8-relevant extensions (:data:`INT8_CPU_FEATURES`) in the first ``flags`` (x86) or ``Features`` (ARM)
    line of ``/proc/cpuinfo``; empty when the file or the line is absent."""
    text = _read_text(Path(cpuinfo)) or ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            present = set(value.split())
            return tuple(name for name in INT8_CPU_FEATURES if name in present)
    return ()


def int8_isa(features: Sequence[str]) -> str | None:
    """The fastest INT8 extension tier among ``features`` (``amx``, ``avx512vnni``, ``avxvnni``, ``avx512``,
    ``avx2``, ``i8mm``, ``dotprod``), or None."""
    present = set(features)
    return next((tier for flag, tier in _INT8_TIERS if flag in present), None)


def cpu_governor(path: str | Path = GOVERNOR) -> str | None:
    """The CPU frequency governor of cpu0 (``performance``, ``ondemand``, ...); None when not exposed."""
    return _read_text(Path(path)) or None


def governor_warning(governor: str | None) -> str | None:
    """A warning when the governor lets the clock drop between frames (latency then varies), else None."""
    if governor is None or governor == "performance":
        return None
    return (
        f"the CPU frequency governor is '{governor}', not 'performance': clocks scale with load, so latencies "
        "are higher and noisier; for reference figures run "
        "'echo performance | sudo tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor' first"
    )


# An idle machine keeps a model's median invoke within a few percent of its fastest call. Over 46 runs on a 2-core
# AMD EPYC VM (2026-12-01) the larger of the two models' p50 / min ranged from 1.02 to 1.69; the 7 runs at or below
# 1.05 had detector invokes of 13.4-13.9 ms (the others 13.7-20.7 ms) and 2.2-2.6 ms outside the models (the
# others 2.3-3.9 ms), and none of them an overhead ratio above 1.15 (8 of the other 39 had).
QUIET_INVOKE_SPREAD = 1.05


def host_noise(invoke: Mapping[str, Mapping[str, float]], limit: float = QUIET_INVOKE_SPREAD) -> dict[str, Any]:
    """How far each model's bare invoke p50 sits above its own fastest call of the run, and whether all stay
    within ``limit``.

    A bare invoke does the same work on every call, so on an idle machine its median stays close to its
    minimum; other processes, a shared VM's neighbours or thermal throttling push the median up. The Python
    work around the models suffers more than the models (its caches are refilled after every invoke), so a busy
    host also raises the overhead ratio: such a run is not a reference figure.

    Args:
        invoke: Model name → invoke statistics with ``p50`` and ``min`` (ms), e.g. a result's ``invoke_ms``.
        limit: The largest p50 / min still called quiet.

    Returns:
        ``{"invoke_p50_over_min": {name: ratio}, "limit": limit, "quiet": bool}``.
    """
    spread = {
        name: round(float(stats["p50"]) / float(stats["min"]), 4)
        for name, stats in invoke.items()
        if float(stats.get("min", 0.0)) > 0.0
    }
    return {"invoke_p50_over_min": spread, "limit": limit, "quiet": max(spread.values(), default=1.0) <= limit}


def host_noise_warning(noise: Mapping[str, Any]) -> str | None:
    """A warning for a run whose invokes say the host was busy (see :func:`host_noise`), else None."""
    if noise["quiet"]:
        return None
    name, spread = max(noise["invoke_p50_over_min"].items(), key=lambda item: item[1])
    within = (
        f"this host's quietest job stayed within {100 * (noise['host_level'] - 1):.0f}%, and this one may add "
        f"up to {100 * (noise['limit'] / noise['host_level'] - 1):.0f}% to that"
        if "host_level" in noise
        else f"an idle machine stays within {100 * (noise['limit'] - 1):.0f}%"
    )
    return (
        f"the host was busy: the bare {name} invoke's median was {100 * (spread - 1):.0f}% above its fastest call "
        f"({within}); the work around the models slows more "
        "than the models on a busy host, so this run's overhead ratio is higher and noisier than an idle "
        "machine's: for reference figures rerun when nothing else runs"
    )


def edgetpu_usb_present(usb_devices: str | Path = USB_DEVICES) -> bool:
    """Whether a Coral USB Accelerator is plugged in (by its USB vendor:product ids in sysfs)."""
    root = Path(usb_devices)
    try:
        entries = list(root.iterdir())
    except OSError:
        return False
    for entry in entries:
        vendor, product = _read_text(entry / "idVendor"), _read_text(entry / "idProduct")
        if vendor and product and (vendor.lower(), product.lower()) in CORAL_USB_IDS:
            return True
    return False


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm|c)\)", "", text.lower())
    text = re.sub(r"\b(cpu|processor)\b", "", text)
    text = re.sub(r"@.*$", "", text)
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "unknown"


def device_id(
    board: str | None = None,
    *,
    machine: str | None = None,
    cpu_model: str | None = None,
    coral_usb: bool | None = None,
    features: Sequence[str] | None = None,
) -> str:
    """A short name for this device, the name of its reference file (``<device>.json``).

    ``rpi4``, ``rpi5`` (``rpi5-coral-usb`` with a Coral USB Accelerator plugged in), ``coral-devboard``
    (from ``/proc/device-tree/model``); elsewhere ``x86-<cpu model>-<int8 tier>`` or ``<arch>-<cpu model>-<tier>``.
    The tier (:func:`int8_isa`) tells apart machines that a virtualised CPU name does not: two "AMD EPYC"
    machines here ran the shipped models 4x apart, one with AVX-512 VNNI and one with AVX2 only.

    Args:
        board: The device-tree model text (default: read it from ``/proc/device-tree/model``).
        machine: ``platform.machine()`` (default: this machine's).
        cpu_model: The CPU model name (default: from ``/proc/cpuinfo``).
        coral_usb: Whether a Coral USB Accelerator is present (default: look in sysfs).
        features: The CPU's INT8 extensions (default: :func:`cpu_features`); no tier is added when none is known.
    """
    board = read_device_model() if board is None else board
    text = (board or "").lower()
    if "raspberry pi" in text:
        module = re.search(r"compute module (\d+)", text)
        found = re.search(r"raspberry pi (\d+)", text)
        if module:
            name = f"rpi-cm{module.group(1)}"
        else:
            name = f"rpi{found.group(1)}" if found else "rpi"
        present = edgetpu_usb_present() if coral_usb is None else coral_usb
        return f"{name}-coral-usb" if present else name
    if "coral" in text or "phanbell" in text:  # the Dev Board's device tree says "Freescale i.MX8MQ Phanbell"
        return "coral-devboard"
    machine = (machine or platform.machine() or "unknown").lower()
    arch = "x86" if machine in ("x86_64", "amd64", "i386", "i686", "x86") else _slug(machine)
    cpu = _slug(cpu_model if cpu_model is not None else cpu_model_name())
    tier = int8_isa(cpu_features() if features is None else features)
    present = edgetpu_usb_present() if coral_usb is None else coral_usb
    return f"{arch}-{cpu}" + (f"-{tier}" if tier else "") + ("-coral-usb" if present else "")


def _package_version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, cores, governor, board, OS, Python and the interpreter package with its version."""
    from edgeskin.runtime.interpreter import interpreter_backend

    backend = interpreter_backend().name
    distribution = {
        "ai_edge_litert.interpreter": "ai-edge-litert",
        "tflite_runtime.interpreter": "tflite-runtime",
        "tensorflow.lite": "tensorflow",
    }.get(backend, backend)
    import cv2

    governor = cpu_governor()
    return {
        "cpu_model": cpu_model_name(),
        "cpu_features": list(cpu_features()),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "governor": governor if governor is not None else "not exposed",
        "board": read_device_model(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "interpreter": {"package": backend, "version": _package_version(distribution)},
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


# --------------------------------------------------------------------------------------------------
# The frame
# --------------------------------------------------------------------------------------------------


def synthetic_frame(size: tuple[int, int] = FRAME_SIZE, seed: int = 0) -> np.ndarray:
    """A deterministic skin-coloured frame with one dark oval "lesion" (when no real image is at hand).

    Its latencies are representative (same tensor sizes) but the detector may find nothing on it, and then
    no classifier runs: prefer a real dermoscopy frame (``--image``).
    """
    import cv2

    height, width = size
    rng = np.random.default_rng(seed)
    frame = np.empty((height, width, 3), np.uint8)
    frame[...] = (206, 160, 140)
    noise = rng.normal(0.0, 6.0, (height, width, 1))
    frame = np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    centre = (width // 2, height // 2)
    cv2.ellipse(frame, centre, (width // 6, height // 5), 20, 0, 360, (92, 58, 48), thickness=-1)
    return cv2.GaussianBlur(frame, (0, 0), 3)


def load_bench_frame(image: str | Path | None = None, size: tuple[int, int] = FRAME_SIZE) -> tuple[np.ndarray, dict]:
    """The benchmark frame, resized to ``size`` = (height, width), and where it came from.

    ``image`` None: :func:`synthetic_frame` (the reference results used PH2's ``IMD002.jpg``: pass it).
    Returns ``(frame, {"source", "path", "original_size", "size"})``.

    Raises:
        ImageError: ``image`` is given but cannot be read.
    """
    import cv2

    from edgeskin.image import read_image

    path: Path | None = Path(image) if image is not None else None
    if path is None:
        frame = synthetic_frame(size)
        return frame, {
            "source": "synthetic",
            "path": None,
            "original_size": [size[1], size[0]],
            "size": [size[1], size[0]],
        }
    original = read_image(path)
    height, width = size
    frame = original
    if original.shape[:2] != (height, width):
        frame = cv2.resize(original, (width, height), interpolation=cv2.INTER_AREA)
    info = {
        "source": "file",
        "path": str(path),
        "original_size": [int(original.shape[1]), int(original.shape[0])],
        "size": [width, height],
    }
    return np.ascontiguousarray(frame), info


# --------------------------------------------------------------------------------------------------
# The suite
# --------------------------------------------------------------------------------------------------


def _default(model: Path, delegate: str) -> Path:
    """The shipped model, or its Edge TPU build (``<stem>_edgetpu.tflite`` + spec) when the delegate wants one."""
    if delegate == "cpu":
        return model
    from edgeskin.devices import edgetpu_model_path

    compiled = edgetpu_model_path(model)
    return compiled if compiled.is_file() and compiled.with_suffix(".json").is_file() else model


def _bare_invoke_samples(
    model_path: Path, tensor: np.ndarray, threads: int, delegate: str = "cpu"
) -> Callable[[], float]:
    """A function timing one bare ``invoke()`` of a separate interpreter whose input holds ``tensor``."""
    from edgeskin.runtime.interpreter import make_interpreter

    interpreter = make_interpreter(model_path, num_threads=threads, delegate=delegate)  # type: ignore[arg-type]
    details = interpreter.get_input_details()[0]
    shape = [int(v) for v in details["shape"]]
    tensor = np.asarray(tensor)
    if tensor.ndim == len(shape) and tensor.shape[0] != shape[0]:  # a batch of views: resized once, as the runtime does
        interpreter.resize_tensor_input(details["index"], list(tensor.shape), strict=False)
        interpreter.allocate_tensors()
        shape = list(tensor.shape)
    interpreter.set_tensor(details["index"], np.ascontiguousarray(tensor, dtype=details["dtype"]).reshape(shape))
    interpreter.invoke()

    def once() -> float:
        start = time.perf_counter()
        interpreter.invoke()
        return (time.perf_counter() - start) * 1000.0

    once.interpreter = interpreter  # type: ignore[attr-defined]  # kept alive with the closure
    return once


def _model_entry(path: Path, spec: Any) -> dict[str, Any]:
    return {
        "name": spec.name,
        "file": path.name,
        "size_bytes": path.stat().st_size,
        "size_mb": round(path.stat().st_size / 1e6, 3),
        "input_size": list(spec.input.size),
        "sha256": spec.sha256,
    }


def run_quick_suite(
    classifier_path: str | Path | None = None,
    detector_path: str | Path | None = None,
    *,
    image: str | Path | None = None,
    frame: np.ndarray | None = None,
    size: tuple[int, int] = FRAME_SIZE,
    threads: int = 2,
    runs: int = 50,
    warmup: int = 5,
    delegate: str = "cpu",
    progress: Callable[[str], None] | None = None,
    profile: Any = None,
    context: Any = "default",
) -> dict[str, Any]:
    """Run the quick suite and return the JSON-ready result (see the module docstring).

    Args:
        classifier_path: The classifier ``.tflite`` (default: the shipped one, ``EDGESKIN_MODELS_DIR`` honoured).
        detector_path: The detector ``.tflite`` (default: the shipped one).
        image: The frame's file (default: a synthetic frame; the reference results used PH2's IMD002.jpg).
        frame: An RGB uint8 frame to use instead of ``image`` (decode is then not timed).
        size: ``(height, width)`` the image is resized to (default 576x768, the PH2 frame size).
        threads: Interpreter threads of every model.
        runs: Timed repetitions of each measurement.
        warmup: Untimed repetitions first.
        delegate: ``"cpu"``, ``"edgetpu"`` or ``"auto"``; with an Edge TPU delegate the default models are
            their ``<stem>_edgetpu.tflite`` builds when those are installed.
        progress: Called with a short line before each step (e.g. ``print``).
        profile: A device profile (name, path or :class:`~edgeskin.devices.DeviceProfile`): the pipeline runs
            with its classifier views, and the result gains ``profile_estimate``: the frame time with 1, 2, ...
            views from the costs measured here (see :func:`profile_estimate`).
        context: The pipeline's context-view rule (:class:`~edgeskin.core.context.ContextRule`, or None: off);
            ``"default"``: the pipeline's default. The result's ``context_view`` says how often it ran and the
            classify stage with and without it.

    Raises:
        NoDefaultModelError: a default model is not installed. ImageError: ``image`` cannot be read.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    say = progress or (lambda _line: None)
    suite = _suite_inputs(classifier_path, detector_path, image, frame, size, delegate, profile)
    from edgeskin.tasks.pipeline import LesionPipeline, PipelineOptions

    say(f"opening the models ({threads} thread{'s' if threads != 1 else ''}, delegate {delegate})")
    pipeline = LesionPipeline.create(
        PipelineOptions(
            suite.classifier_path,
            detector=suite.detector_path,
            num_threads=threads,
            delegate=delegate,
            tta=suite.tta,
            **({} if isinstance(context, str) and context == "default" else {"context": context}),
        )
    )
    try:
        timers = _bare_timers(pipeline, suite, threads, delegate)
        say(f"timing predict on the {suite.frame.shape[1]}x{suite.frame.shape[0]} frame ({runs} runs)")
        samples = _time_predict(pipeline, suite.frame, timers, runs, warmup)
        say(f"timing the classify stage with and without the context view ({runs} runs each, alternating)")
        context = _context_summary(pipeline, suite.frame, samples, runs, warmup)
        say("timing decode and annotate")
        _time_decode_and_annotate(samples, suite, runs)
        models = {
            "classifier": _model_entry(suite.classifier_path, pipeline.classifier.spec),
            "detector": _model_entry(suite.detector_path, pipeline.detector.spec),
        }
        used = _UsedPipeline(
            pipeline.classifier.model.delegate, len(pipeline.classifier.views), views_accuracy(pipeline.classifier.spec)
        )
    finally:
        pipeline.close()
    result = _suite_result(suite, timers, samples, used, models, threads=threads, runs=runs, warmup=warmup)
    return {**result, "context_view": context}


# -- the stages of the quick suite ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _SuiteInputs:
    """What the suite times: the two models, the frame (and where it came from), the profile's views."""

    classifier_path: Path
    detector_path: Path
    frame: np.ndarray
    frame_info: dict[str, Any]
    profile: Any  # DeviceProfile or None
    tta: Any  # the profile's classifier views, or None (the spec's)
    warnings: list[str]


def _suite_inputs(
    classifier_path: str | Path | None,
    detector_path: str | Path | None,
    image: str | Path | None,
    frame: np.ndarray | None,
    size: tuple[int, int],
    delegate: str,
    profile: Any,
) -> _SuiteInputs:
    from edgeskin.models import default_classifier_path, default_detector_path

    classifier = Path(classifier_path) if classifier_path is not None else _default(default_classifier_path(), delegate)
    detector = Path(detector_path) if detector_path is not None else _default(default_detector_path(), delegate)
    warnings: list[str] = []
    governor_note = governor_warning(cpu_governor())
    if governor_note:
        warnings.append(governor_note)
    if frame is None:
        frame, frame_info = load_bench_frame(image, size)
    else:
        frame_info = {
            "source": "array",
            "path": None,
            "original_size": [frame.shape[1], frame.shape[0]],
            "size": [frame.shape[1], frame.shape[0]],
        }
    if frame_info["source"] == "synthetic":
        warnings.append(
            "no --image given: a synthetic frame was used; pass --image with a real 768x576 dermoscopy photo for "
            "representative figures (the reference results used PH2's IMD002.jpg)"
        )
    tta = None
    if profile is not None:
        from edgeskin.devices import DeviceProfile, load_profile

        profile = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
        tta = profile.classifier_tta
    return _SuiteInputs(classifier, detector, frame, frame_info, profile, tta, warnings)


@dataclass(frozen=True)
class _BareTimers:
    """Bare interpreters fed with this frame's own tensors, each a callable that invokes once and returns ms.

    ``ratio``: the invokes predict made (the detector's; the classifier's at each batch size it used), the
    overhead ratio's denominator. ``view``: one classifier view; ``view_batches``: for a profile, the batch of
    each view count (view count -> timer); neither is in the ratio.
    """

    ratio: dict[str, Callable[[], float]]
    names: dict[int, str]  # classifier batch size -> its timer's name in ``ratio``
    batches: tuple[int, ...]  # the classifier invokes' batch sizes of one predict
    batch_counts: dict[int, int]
    view: Callable[[], float]
    view_batches: dict[int, Callable[[], float]]


def _bare_timers(pipeline: Any, suite: _SuiteInputs, threads: int, delegate: str) -> _BareTimers:
    frame = suite.frame
    result = pipeline.predict(frame)
    # The detector's letterboxed frame, the classifier's crops (or the whole frame when nothing was found).
    det_input, _ = pipeline.detector.preprocess(frame)
    classifier = pipeline.classifier
    boxes = [tuple(int(v) for v in lesion.crop_box) for lesion in result.lesions]
    crops = [frame[y0:y1, x0:x1] for x0, y0, x1, y1 in boxes] or [frame]
    # The views of every lesion, as the runtime feeds them: (lesions x views, H, W, C).
    rows = np.concatenate([classifier.preprocess_views(crop) for crop in crops])
    # The invokes predict made (one batch of every view of every lesion when the model allows it, else
    # one per view), each timed bare at its own batch size; without a lesion, one view (counted 0 times).
    batches = tuple(classifier.last_invoke_batches) if result.lesions else (1,)
    batch_counts = {b: batches.count(b) for b in dict.fromkeys(batches)}
    names = {b: "classifier" if i == 0 else f"classifier_batch{b}" for i, b in enumerate(batch_counts)}
    ratio = {"detector": _bare_invoke_samples(suite.detector_path, det_input, threads, delegate)}
    for b, name in names.items():
        ratio[name] = _bare_invoke_samples(suite.classifier_path, _rows(rows, b), threads, delegate)
    batchable = max(batches) > 1 or (len(classifier.views) == 1 and len(crops) == 1)
    estimate_views = _estimate_views(len(classifier.views)) if suite.profile is not None else ()
    view = _bare_invoke_samples(suite.classifier_path, rows[:1], threads, delegate)
    view_batches = {
        v: _bare_invoke_samples(suite.classifier_path, _rows(rows, v * len(crops)), threads, delegate)
        for v in (estimate_views if batchable else ())
    }
    return _BareTimers(ratio, names, batches, batch_counts, view, view_batches)


@dataclass
class _Samples:
    """Everything the suite timed, in ms: predict end to end, its stages, the bare invokes."""

    end_to_end: list[float] = field(default_factory=list)
    lesion_counts: list[int] = field(default_factory=list)
    context_ran: list[bool] = field(default_factory=list)  # per predict: a lesion got the context view
    stages: dict[str, list[float]] = field(default_factory=dict)
    bare: dict[str, list[float]] = field(default_factory=lambda: {"detector": [], "classifier": []})
    view: list[float] = field(default_factory=list)
    view_batches: dict[int, list[float]] = field(default_factory=dict)
    last_result: Any = None


def _time_predict(pipeline: Any, frame: np.ndarray, timers: _BareTimers, runs: int, warmup: int) -> _Samples:
    """``runs`` predict calls, each followed by one call of every bare timer (interleaved, so both see the same
    machine state), after ``warmup`` untimed rounds; garbage collection off meanwhile."""
    samples = _Samples()
    for name in timers.ratio:
        samples.bare.setdefault(name, [])
    samples.view_batches = {v: [] for v in timers.view_batches}
    extras = (timers.view, *timers.view_batches.values())
    for _ in range(warmup):
        pipeline.predict(frame)
        for once in (*timers.ratio.values(), *extras):
            once()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside one timed call is noise, not pipeline cost
    try:
        for _ in range(runs):
            start = time.perf_counter()
            result = pipeline.predict(frame)
            samples.end_to_end.append((time.perf_counter() - start) * 1000.0)
            samples.lesion_counts.append(len(result.lesions))
            samples.context_ran.append(any(lesion.context_view for lesion in result.lesions))
            _record_stages(samples.stages, pipeline, result)
            for name, once in timers.ratio.items():
                samples.bare[name].append(once())
            samples.view.append(timers.view())
            for v, once in timers.view_batches.items():
                samples.view_batches[v].append(once())
            samples.last_result = result
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


def _record_stages(stages: dict[str, list[float]], pipeline: Any, result: Any) -> None:
    """One predict's stage times: the pipeline's, the detector's own sub-stages, the classifier's (with lesions)."""
    for name, ms in result.timings_ms.items():
        if name != "total":
            stages.setdefault(name, []).append(ms)
    for name, ms in pipeline.detector.last_timings_ms.items():
        stages.setdefault(f"detect.{name.removesuffix('_ms')}", []).append(ms)
    if result.lesions:
        for name, ms in pipeline.classifier.last_timings_ms.items():
            stages.setdefault(f"classify.{name.removesuffix('_ms')}", []).append(ms)


def _context_summary(pipeline: Any, frame: np.ndarray, samples: _Samples, runs: int, warmup: int) -> dict[str, Any]:
    """How often the context view ran on the timed predicts, and the classify stage with the pipeline's context rule
    and without it: ``runs`` more pairs of predicts, alternating, so that both see the same machine state."""
    rule = pipeline.context
    timed: dict[str, list[float]] = {"with": [], "without": []}
    try:
        for n in range(warmup + runs):
            for name, setting in (("with", rule), ("without", None)):
                pipeline.context = setting
                classify_ms = pipeline.predict(frame).timings_ms["classify"]
                if n >= warmup:
                    timed[name].append(classify_ms)
    finally:
        pipeline.context = rule
    ran = sum(samples.context_ran)
    return {
        # inf ("never on this measure") as null, for strict JSON
        "rule": None if rule is None else {k: None if v == math.inf else v for k, v in vars(rule).items()},
        "frames": len(samples.context_ran),
        "ran": ran,
        "ran_rate": round(ran / len(samples.context_ran), 4) if samples.context_ran else 0.0,
        "classify_ms_with": percentiles(timed["with"]),
        "classify_ms_without": percentiles(timed["without"]),
    }


def _time_decode_and_annotate(samples: _Samples, suite: _SuiteInputs, runs: int) -> None:
    """The file's decode (when the frame came from a file) and the overlay of the last result, as stages."""
    from edgeskin.annotate import annotate
    from edgeskin.image import read_image

    if suite.frame_info["path"] is not None:
        data = Path(suite.frame_info["path"]).read_bytes()
        samples.stages["decode"] = time_ms(lambda: read_image(data), runs=max(5, runs // 2), warmup=2)
    result = samples.last_result
    samples.stages["annotate"] = time_ms(lambda: annotate(suite.frame, result), runs=max(5, runs // 2), warmup=2)


@dataclass(frozen=True)
class _UsedPipeline:
    delegate: str
    views: int
    accuracy: Any


def _suite_result(
    suite: _SuiteInputs,
    timers: _BareTimers,
    samples: _Samples,
    used: _UsedPipeline,
    models: dict[str, Any],
    *,
    threads: int,
    runs: int,
    warmup: int,
) -> dict[str, Any]:
    """The JSON-ready result (:data:`REQUIRED_KEYS` and the rest) from what was timed."""
    warnings = list(suite.warnings)
    e2e = percentiles(samples.end_to_end)
    invoke = {name: percentiles(values) for name, values in samples.bare.items()}
    lesions = float(np.median(samples.lesion_counts))
    if lesions != int(lesions) or len(set(samples.lesion_counts)) > 1:
        warnings.append(f"the number of lesions found varied between runs ({sorted(set(samples.lesion_counts))})")
    # The classifier invokes predict actually made: one batch of all the views of all the lesions (or, for a
    # model whose batch cannot be resized, one per view), each against a bare invoke of the same batch size.
    counts = {"detector": 1.0}
    for b, name in timers.names.items():
        counts[name] = float(timers.batch_counts[b]) if lesions > 0 else 0.0
    invoke_sum = sum(invoke[name]["p50"] * counts[name] for name in invoke)
    stage_stats = {name: percentiles(values) for name, values in samples.stages.items()}
    classify_p50 = stage_stats.get("classify", {}).get("p50", 0.0)
    cam_share = None
    if lesions > 0 and classify_p50 > 0 and "cam" in stage_stats:
        cam_share = round(stage_stats["cam"]["p50"] / classify_p50, 4)
    if lesions == 0:
        warnings.append("the detector found no lesion in the frame: the classifier and CAM did not run")
    noise = host_noise(invoke)
    noise_note = host_noise_warning(noise)
    if noise_note:
        warnings.append(noise_note)
    view_ms = percentiles(samples.view)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": "edgeskin bench",
        "edgeskin_version": _edgeskin_version(),
        "date": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "device_id": device_id(),
        "machine": machine_info(),
        "settings": {
            "threads": threads,
            "runs": runs,
            "warmup": warmup,
            "delegate": used.delegate,
            "classifier_views": used.views,
            "classifier_invoke_batches": list(timers.batches) if lesions > 0 else [],
            "frame": suite.frame_info,
            "decode_excluded": True,
            "cam": True,
            "what": "end_to_end_ms: LesionPipeline.predict on an in-memory RGB frame (decode excluded); "
            "invoke_ms: bare interpreter.invoke() of separate interpreters fed with this frame's own tensors, "
            "interleaved with the predict runs",
        },
        "models": models,
        "end_to_end_ms": e2e,
        "fps": round(1000.0 / e2e["p50"], 2),
        "stages_ms": stage_stats,
        "invoke_ms": invoke,
        "invoke_counts_per_frame": counts,
        "invoke_batches": {name: b for b, name in timers.names.items()},
        "classifier_view_invoke_ms": view_ms,
        "overhead_ratio": overhead_ratio(e2e["p50"], {n: s["p50"] for n, s in invoke.items()}, counts),
        "overhead_ms": round(e2e["p50"] - invoke_sum, 4),
        # The same ratio against the invoke times the runtime measured inside predict (signature-runner call,
        # input and output copies included): what the wrappers add apart from those calls.
        "overhead_ratio_in_pipeline_invokes": _in_pipeline_ratio(e2e["p50"], stage_stats, lesions),
        # Whether the host was idle enough for the ratios to be reference figures.
        "host_noise": noise,
        **(
            {
                "profile_estimate": profile_estimate(
                    suite.profile,
                    end_to_end_p50=e2e["p50"],
                    classifier_used_ms=invoke_sum - invoke["detector"]["p50"],
                    lesions=lesions,
                    views=used.views,
                    view_ms=view_ms["p50"],
                    batch_ms={v: percentiles(values)["p50"] for v, values in samples.view_batches.items()},
                    threads=threads,
                    accuracy=used.accuracy,
                )
            }
            if suite.profile is not None
            else {}
        ),
        "cam_share_of_classify": cam_share,
        # The overlay against the stage it should stay well below (issue 14: <= 0.3).
        "annotate_to_detect": (
            round(stage_stats["annotate"]["p50"] / stage_stats["detect"]["p50"], 4)
            if stage_stats.get("detect", {}).get("p50")
            else None
        ),
        "lesions_per_frame": lesions,
        "peak_rss_mb": peak_rss_mb(),
        "warnings": warnings,
    }


def _in_pipeline_ratio(
    end_to_end_p50: float, stages: Mapping[str, Mapping[str, float]], lesions: float
) -> float | None:
    detect = stages.get("detect.invoke", {}).get("p50")
    # classify.invoke is every invoke of one frame's classification (all views of all lesions) together.
    classify = stages.get("classify.invoke", {}).get("p50", 0.0) if lesions > 0 else 0.0
    if not detect:
        return None
    return overhead_ratio(end_to_end_p50, {"detector": detect, "classifier": classify})


def _rows(rows: np.ndarray, count: int) -> np.ndarray:
    """``count`` input rows from ``rows`` (repeated when there are fewer)."""
    return rows[np.arange(count) % len(rows)]


def _estimate_views(used: int) -> tuple[int, ...]:
    """The view counts a profile estimate shows: 1, 2, 4 and the one in use."""
    return tuple(sorted({1, 2, 4, used}))


def profile_estimate(
    profile: Any,
    *,
    end_to_end_p50: float,
    classifier_used_ms: float,
    lesions: float,
    views: int,
    view_ms: float,
    batch_ms: Mapping[int, float],
    threads: int,
    accuracy: Mapping[int, float] | None = None,
) -> dict[str, Any]:
    """The expected frame time on a profile's device with 1, 2, 4 ... classifier views.

    ``accuracy`` maps a number of views to the classifier's internal 7-dx balanced accuracy with that many views,
    as its spec records it (:func:`views_accuracy`); the rows carry it, so the price of fewer views shows beside
    the time they save.

    Built from what was measured here, nothing else: the frame time with ``v`` views is the measured
    end-to-end p50 minus the classifier invokes it made plus a bare invoke of ``lesions x v`` views in one batch
    (measured; ``lesions x v x`` the one-view invoke when the model cannot batch). The device figure is that
    times the profile's ``bench.slowdown_vs_x86`` range, a stated assumption (its ``source`` says where it comes
    from) that is only meant for a CPU profile; without one, only this machine's figures are given.
    """
    bench = dict(profile.extra.get("bench") or {})
    slowdown = bench.get("slowdown_vs_x86")
    if slowdown is not None:
        low, high = (float(v) for v in slowdown)
        if not 0 < low <= high:
            raise ValueError(f"profile {profile.name}: bench.slowdown_vs_x86 must be [low, high] > 0, got {slowdown}")
    rows = []
    outside = end_to_end_p50 - classifier_used_ms
    for v in _estimate_views(views):
        n = lesions * v
        if v == views:  # the views in use: the frame as measured
            classifier_ms, source = classifier_used_ms, "the invokes predict made, timed bare"
        elif v in batch_ms:
            classifier_ms, source = batch_ms[v], "a bare invoke of lesions x views in one batch"
        else:
            classifier_ms, source = n * view_ms, "lesions x views x the one-view invoke (the model cannot batch)"
        here = outside + (classifier_ms if lesions > 0 else 0.0)
        row: dict[str, Any] = {
            "views": v,
            "classifier_invoke_ms": round(classifier_ms, 3),
            "classifier_source": source,
            "frame_ms_here": round(here, 3),
            "internal_balanced_accuracy_7dx": (accuracy or {}).get(v),
        }
        if slowdown is not None:
            row["frame_ms_device"] = [round(here * low, 1), round(here * high, 1)]
            row["within_budget"] = here * high <= profile.latency_budget_ms
        rows.append(row)
    return {
        "profile": profile.name,
        "description": profile.description,
        "profile_threads": profile.threads,
        "measured_threads": threads,
        "views_in_use": views,
        "lesions_per_frame": lesions,
        "one_view_invoke_ms": round(view_ms, 3),
        "outside_classifier_ms": round(outside, 3),
        "latency_budget_ms": profile.latency_budget_ms,
        "slowdown_vs_x86": list(slowdown) if slowdown is not None else None,
        "slowdown_source": bench.get("source"),
        "rows": rows,
        "method": "frame time here = end-to-end p50 - the classifier invokes made + a bare classifier invoke of "
        "lesions x views (one batch; views x the one-view invoke where the model cannot batch); device = here x "
        "the profile's stated slowdown range",
    }


def _edgeskin_version() -> str:
    import edgeskin

    return str(edgeskin.__version__)


def validate_result(result: Mapping[str, Any]) -> list[str]:
    """Problems with a suite result (missing keys, malformed statistics); empty when it is well formed."""
    problems = [f"missing key '{key}'" for key in REQUIRED_KEYS if key not in result]
    if problems:
        return problems
    if result["schema_version"] != SCHEMA_VERSION:
        problems.append(f"schema_version: expected {SCHEMA_VERSION}, got {result['schema_version']!r}")

    def check_stats(where: str, stats: Any) -> None:
        if not isinstance(stats, Mapping) or any(key not in stats for key in STAT_KEYS):
            problems.append(f"{where}: expected statistics with {', '.join(STAT_KEYS)}")
        elif not (0 <= stats["min"] <= stats["p50"] <= stats["p90"] <= stats["max"]):
            problems.append(f"{where}: expected 0 <= min <= p50 <= p90 <= max, got {dict(stats)}")

    check_stats("end_to_end_ms", result["end_to_end_ms"])
    for name, stats in result["stages_ms"].items():
        check_stats(f"stages_ms.{name}", stats)
    for name in ("detector", "classifier"):
        if name not in result["invoke_ms"]:
            problems.append(f"invoke_ms: missing '{name}'")
        else:
            check_stats(f"invoke_ms.{name}", result["invoke_ms"][name])
        if name not in result["models"]:
            problems.append(f"models: missing '{name}'")
    ratio = result["overhead_ratio"]
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 0):
        problems.append(f"overhead_ratio: expected a positive number, got {ratio!r}")
    return problems


# --------------------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------------------

_STAGE_ORDER = (
    "decode",
    "preprocess",
    "detect",
    "detect.preprocess",
    "detect.invoke",
    "detect.postprocess",
    "crop",
    "classify",
    "classify.preprocess",
    "classify.invoke",
    "classify.postprocess",
    "cam",
    "annotate",
)


def _ordered(names: Sequence[str]) -> list[str]:
    known = [n for n in _STAGE_ORDER if n in names]
    return known + sorted(n for n in names if n not in _STAGE_ORDER)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _features_note(machine: Mapping[str, Any]) -> str:
    """`` (avx2, avx512f)``: the INT8 extensions recorded with a result (results before 2026-12 have none)."""
    features = machine.get("cpu_features")
    if features is None:
        return ""
    return f" ({', '.join(features) if features else 'no INT8 extension listed'})"


def _host_line(noise: Mapping[str, Any] | None) -> list[str]:
    """The host's state during the run, as one table line (none for results before the check existed)."""
    if not noise:
        return []
    spread = ", ".join(f"{name} {value:.3f}" for name, value in noise["invoke_p50_over_min"].items())
    state = "quiet" if noise["quiet"] else "BUSY"
    return [f"  host {state}: bare invoke p50 / fastest {spread} (quiet at most {noise['limit']:.2f})"]


def format_table(result: Mapping[str, Any]) -> str:
    """The result as a plain-text table (what ``edgeskin bench`` prints)."""
    machine = result["machine"]
    settings = result["settings"]
    lines = [
        f"edgeskin bench  {result['date']}  device {result['device_id']}",
        f"  {machine['cpu_model']}{_features_note(machine)}, {machine['cores']} cores, governor {machine['governor']}, "
        f"{machine['interpreter']['package']} {machine['interpreter']['version']}",
        f"  {settings['threads']} threads, delegate {settings['delegate']}, {settings['runs']} runs, frame "
        f"{settings['frame']['size'][0]}x{settings['frame']['size'][1]} ({settings['frame']['source']}"
        f"{': ' + Path(settings['frame']['path']).name if settings['frame'].get('path') else ''}), "
        f"{result['lesions_per_frame']:g} lesion(s) per frame",
        "",
        f"  {'stage':<24}{'p50 ms':>10}{'p90 ms':>10}",
    ]
    for name in _ordered(list(result["stages_ms"])):
        stats = result["stages_ms"][name]
        indent = "    " if "." in name else "  "
        lines.append(f"{indent}{name:<{26 - len(indent)}}{stats['p50']:>10.3f}{stats['p90']:>10.3f}")
    e2e = result["end_to_end_ms"]
    lines.append(f"  {'end to end (predict)':<24}{e2e['p50']:>10.3f}{e2e['p90']:>10.3f}   {result['fps']:.1f} FPS")
    for name, stats in result["invoke_ms"].items():
        lines.append(f"  {'bare invoke ' + name:<24}{stats['p50']:>10.3f}{stats['p90']:>10.3f}")
    cam = result["cam_share_of_classify"]
    lines += [
        "",
        f"  overhead ratio {result['overhead_ratio']:.3f} (end-to-end p50 / summed invoke p50; "
        f"{result['overhead_ms']:.2f} ms outside the models)",
        *_host_line(result.get("host_noise")),
        f"  overhead ratio against the invoke times measured inside predict: "
        f"{_fmt(result.get('overhead_ratio_in_pipeline_invokes'))}",
        f"  CAM cost {'n/a' if cam is None else f'{100 * cam:.1f}% of classify'}; annotate / detect p50 "
        f"{_fmt(result.get('annotate_to_detect'))}",
        "  models: " + ", ".join(f"{m['name']} {m['size_mb']:.2f} MB" for m in result["models"].values()),
        f"  peak RSS {result['peak_rss_mb']:.0f} MiB",
    ]
    if "classifier_view_invoke_ms" in result:
        batches = result["settings"].get("classifier_invoke_batches") or []
        lines.append(
            f"  classifier: {result['settings']['classifier_views']} view(s) per lesion, invokes of batch "
            f"{batches or 'none'}; one view bare {result['classifier_view_invoke_ms']['p50']:.3f} ms"
        )
    context = result.get("context_view")
    if context is not None:
        lines.append(
            f"  context view: ran on {context['ran']} of {context['frames']} frames"
            f"{'' if context['rule'] is not None else ' (off)'}; classify p50 "
            f"{context['classify_ms_with']['p50']:.3f} ms with it, {context['classify_ms_without']['p50']:.3f} ms without"
        )
    lines += [f"  warning: {w}" for w in result["warnings"]]
    if result.get("profile_estimate"):
        lines += ["", *format_profile_estimate(result["profile_estimate"])]
    return "\n".join(lines)


def views_accuracy(spec: Any) -> dict[int, float]:
    """``{views: internal 7-dx balanced accuracy}`` that a classifier's spec records: one view and the spec's own
    test-time views, both INT8 and uncalibrated as the export measured them (empty when the spec has neither)."""
    metrics = getattr(spec, "metrics", None) or {}
    out = {}
    for views, key in ((1, "int8_single_view_uncalibrated"), (max(1, len(spec.tta or ())), "int8_uncalibrated")):
        value = ((metrics.get(key) or {}).get("dx") or {}).get("balanced_accuracy")
        if isinstance(value, (int, float)):
            out[views] = float(value)
    return out


def format_profile_estimate(estimate: Mapping[str, Any]) -> list[str]:
    """The lines of a :func:`profile_estimate` (what ``edgeskin bench --profile NAME`` adds to the table)."""
    slowdown = estimate.get("slowdown_vs_x86")
    lines = [
        f"  expected per-frame time on {estimate['profile']} ({estimate['description']})",
        f"  from this machine's measured costs ({estimate['measured_threads']} threads; the profile runs "
        f"{estimate['profile_threads'] or 'all'} threads): one classifier view {estimate['one_view_invoke_ms']:.2f} ms, "
        f"everything but the classifier {estimate['outside_classifier_ms']:.2f} ms, "
        f"{estimate['lesions_per_frame']:g} lesion(s) per frame",
    ]
    accuracy = any(row.get("internal_balanced_accuracy_7dx") is not None for row in estimate["rows"])
    header = f"  {'views':>5}{'classifier ms':>15}{'frame ms here':>15}"
    if slowdown:
        header += f"{'frame ms on device':>22}   budget {estimate['latency_budget_ms']:g} ms"
    if accuracy:
        header += f"{'7-dx BACC':>12}"
    lines.append(header)
    for row in estimate["rows"]:
        mark = "*" if row["views"] == estimate["views_in_use"] else " "
        line = f"  {row['views']:>4}{mark}{row['classifier_invoke_ms']:>15.2f}{row['frame_ms_here']:>15.2f}"
        if slowdown:
            low, high = row["frame_ms_device"]
            line += f"{f'{low:.0f}-{high:.0f}':>22}   {'within' if row['within_budget'] else 'OVER  '}"
        if accuracy:
            value = row.get("internal_balanced_accuracy_7dx")
            line += f"{'n/a' if value is None else f'{value:.3f}':>12}"
        lines.append(f"{line}   ({row['classifier_source']})")
    lines.append("  * the views this profile uses (its frame time is the end-to-end p50 measured here)")
    if accuracy:
        lines.append(
            "  7-dx BACC: the classifier's internal validation, INT8 uncalibrated, as its spec records it "
            "(n/a: not measured with that many views)"
        )
    if slowdown:
        lines.append(
            f"  device = here x {slowdown[0]:g}-{slowdown[1]:g}: {estimate.get('slowdown_source') or 'an assumed factor'}"
        )
    else:
        lines.append(
            "  no device figure: this profile states no CPU slowdown factor relative to x86 (Edge TPU profiles cannot "
            "be scaled from CPU timings); run 'edgeskin bench' on the device"
        )
    return lines
