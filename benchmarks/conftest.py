"""pytest-benchmark suites of edgeskin: ``pytest benchmarks`` (quick) or ``pytest benchmarks --full``.

They are not part of the default test run (``testpaths = ["tests"]``). Quick: 2 threads, the INT8 and float32
models, the 768x576 PH2 frame size, 30 rounds. Full (``--full`` or ``EDGESKIN_BENCH_FULL=1``): 1, 2 and 4
threads, every float variant, every frame size the device profiles offer (``edgeskin/devices/profiles``), 200
rounds. Inputs are real images from ``../shared`` in a fixed order (seed 0); the suites skip without them.

Results: pytest-benchmark's JSON, by default ``artifacts/bench/pytest-benchmark-{quick,full}.json``
(``--benchmark-json PATH`` to choose). Each benchmark's ``extra_info`` adds p50/p90 in ms.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.checkout import BENCH_ARTIFACTS, checkout_inputs
from edgeskin.report.common import Missing, ReportInputs, float_tflite_paths, ham_validation, models, ph2_validation

FULL_ENV = "EDGESKIN_BENCH_FULL"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true", help=f"edgeskin: the full benchmark matrix (or {FULL_ENV}=1)")


def is_full(config: pytest.Config) -> bool:
    return bool(config.getoption("--full")) or os.environ.get(FULL_ENV, "") not in ("", "0")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "benchmark_json", None) is None and hasattr(config.option, "benchmark_json"):
        BENCH_ARTIFACTS.mkdir(parents=True, exist_ok=True)
        config.option.benchmark_json = (
            BENCH_ARTIFACTS / f"pytest-benchmark-{'full' if is_full(config) else 'quick'}.json"
        )
    if getattr(config.option, "benchmark_time_unit", "") is None:
        config.option.benchmark_time_unit = "ms"


def frame_sizes(full: bool) -> list[tuple[int, int]]:
    """(width, height) frame sizes: 768x576 (PH2), plus every profile's analysis stream size in full mode."""
    sizes = [(768, 576)]
    if full:
        from edgeskin.devices import available_profiles, load_profile

        for name in available_profiles():
            size = load_profile(name).lores_size
            if size not in sizes:
                sizes.append(size)
    return sizes


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    full = is_full(metafunc.config)
    if "threads" in metafunc.fixturenames:
        metafunc.parametrize("threads", [1, 2, 4] if full else [2])
    if "frame_size" in metafunc.fixturenames:
        sizes = frame_sizes(full)
        metafunc.parametrize("frame_size", sizes, ids=[f"{w}x{h}" for w, h in sizes])
    if "variant" in metafunc.fixturenames:
        metafunc.parametrize("variant", ["int8", "float32", "float16"] if full else ["int8", "float32"])


@pytest.fixture(scope="session")
def full(request: pytest.FixtureRequest) -> bool:
    return is_full(request.config)


@pytest.fixture(scope="session")
def rounds(full: bool) -> int:
    return 200 if full else 30


@pytest.fixture(scope="session")
def edge_models() -> tuple[Path, Path]:
    try:
        return models()
    except Missing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def model_variants(edge_models: tuple[Path, Path]) -> dict[str, Path]:
    """``classifier-int8``, ``detector-int8`` and the float .tflite companions that exist."""
    classifier, detector = edge_models
    given = checkout_inputs(classifier, detector)
    return {"classifier-int8": classifier, "detector-int8": detector, **float_tflite_paths(given, classifier, detector)}


def variant_path(model_variants: dict[str, Path], task: str, variant: str) -> Path:
    path = model_variants.get(f"{task}-{variant}")
    if path is None:
        pytest.skip(f"no {variant} {task} .tflite: run 'python -m benchmarks.export_float' first")
    return path


@pytest.fixture(scope="session")
def report_inputs(edge_models: tuple[Path, Path]) -> ReportInputs:
    """The checkout's data and splits for the shipped models."""
    return checkout_inputs(*edge_models)


@pytest.fixture(scope="session")
def ph2_paths(full: bool, report_inputs: ReportInputs) -> list[Path]:
    try:
        return [f.path for f in ph2_validation(report_inputs, limit=10 if full else 3)]
    except Missing as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def ph2_frames(ph2_paths: list[Path]) -> list[np.ndarray]:
    from edgeskin.image import read_image

    return [read_image(p) for p in ph2_paths]


@pytest.fixture(scope="session")
def ham_images(full: bool, report_inputs: ReportInputs) -> list[np.ndarray]:
    from edgeskin.image import read_image

    try:
        return [read_image(p) for p in ham_validation(report_inputs, limit=20 if full else 5).paths]
    except Missing as exc:
        pytest.skip(str(exc))


def resized(frames: list[np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
    import cv2

    width, height = size
    return [
        f if f.shape[:2] == (height, width) else cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA)
        for f in frames
    ]


def cycling(items: list[Any]) -> Callable[[], Any]:
    iterator: Iterator[Any] = itertools.cycle(items)
    return lambda: next(iterator)


def run_benchmark(benchmark: Any, func: Callable[[], Any], rounds: int, warmup: int = 3, **info: Any) -> Any:
    """``benchmark.pedantic`` with fixed rounds, plus p50/p90 (ms) in ``extra_info``."""
    result = benchmark.pedantic(func, rounds=rounds, warmup_rounds=warmup, iterations=1)
    data = getattr(getattr(benchmark, "stats", None), "stats", None)
    if data is not None and getattr(data, "data", None):
        samples = np.asarray(data.data) * 1000.0
        benchmark.extra_info["p50_ms"] = round(float(np.percentile(samples, 50)), 4)
        benchmark.extra_info["p90_ms"] = round(float(np.percentile(samples, 90)), 4)
    benchmark.extra_info.update(info)
    return result
