"""Tiny real INT8 TFLite models with edgeskin specs, built with TensorFlow for the task and CLI tests.

* A 7-class dx classifier ``[1, 32, 32, 3] int8 → {"probs": [1, 7], "features": [1, 4, 4, 8]}`` with a
  GAP → Dense head (its kernel in the spec's ``cam``), a triage threshold and a temperature of 1.
* A one-class YOLO-layout detector ``[1, 32, 32, 3] int8 → [1, 5, 16]``: a 4x4 grid of 8x8-pixel cells,
  each with a fixed box (the cell grown by 2 pixels per side, normalised xywh) and a score equal to the
  cell's darkness ``1 - mean(pixel) / 255``. A dark square in the frame is therefore "detected" where
  it is, through the real letterbox, int8 quantization, decoding and NMS.

Building needs TensorFlow (the [train] extra); tests using these are marked ``train`` and skip without it.
Each model is built once per test process into a temporary folder.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from edgeskin.labels import DX_CLASSES

INPUT = 32
GRID = 4
CELL = INPUT // GRID
RNG = np.random.default_rng(7)
CONV = RNG.normal(0, 0.02, (3, 3, 3, 8)).astype(np.float32)
DENSE = RNG.normal(0, 1.0, (8, len(DX_CLASSES))).astype(np.float32)
TRIAGE_THRESHOLD = 0.3


def _folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="edgeskin-tiny-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _tensorflow():
    import pytest

    return pytest.importorskip("tensorflow", reason="needs the [train] extra (TensorFlow) to build the test model")


def _convert(tf, serve, folder: Path, name: str, low: float, high: float) -> Path:
    module = tf.Module()
    module.serve = serve
    tf.saved_model.save(
        module, str(folder / f"{name}-saved"), signatures={"serving_default": serve.get_concrete_function()}
    )
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder / f"{name}-saved"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(1)

    def representative():
        yield [np.full((1, INPUT, INPUT, 3), low, np.float32)]
        yield [np.full((1, INPUT, INPUT, 3), high, np.float32)]
        for _ in range(30):
            yield [rng.uniform(low, high, (1, INPUT, INPUT, 3)).astype(np.float32)]

    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    path = folder / f"{name}.tflite"
    path.write_bytes(converter.convert())
    shutil.rmtree(folder / f"{name}-saved", ignore_errors=True)
    return path


@functools.lru_cache(maxsize=1)
def tiny_classifier() -> Path:
    """The tiny 7-class classifier; its spec ``tiny-cls.json`` lies beside it."""
    tf = _tensorflow()
    from edgeskin.runtime.spec import sha256_file

    folder = _folder()

    @tf.function(input_signature=[tf.TensorSpec([1, INPUT, INPUT, 3], tf.float32, name="image")])
    def serve(image):
        # Pixels in [0, 255] enter the graph (spec mean 0, std 1), as in edgeskin's own models.
        features = tf.nn.relu(tf.nn.conv2d(image / 255.0 * 50.0, CONV, 8, "SAME"))
        logits = tf.matmul(tf.reduce_mean(features, axis=[1, 2]), DENSE)
        return {"probs": tf.nn.softmax(logits), "features": features}

    path = _convert(tf, serve, folder, "tiny-cls", 0.0, 255.0)
    spec = {
        "format_version": 1,
        "name": "tiny-cls",
        "task": "classification",
        "model_file": path.name,
        "sha256": sha256_file(path),
        "input": {"size": [INPUT, INPUT], "color_order": "RGB", "resize": "stretch", "mean": 0, "std": 1},
        "labels": list(DX_CLASSES),
        "outputs": {"probabilities": "probs", "features": "features"},
        "cam": {"weights": DENSE.tolist(), "bias": [0.0] * len(DX_CLASSES)},
        "calibration": {"temperature": 1.0},
        "triage": {"malignant_threshold": TRIAGE_THRESHOLD},
    }
    path.with_suffix(".json").write_text(json.dumps(spec))
    return path


def grid_boxes_xywh() -> np.ndarray:
    """(16, 4) normalised cx, cy, w, h of the detector's fixed boxes, row-major cells."""
    cy, cx = np.divmod(np.arange(GRID * GRID), GRID)
    centre = (np.stack([cx, cy], axis=1) + 0.5) * CELL
    size = np.full((GRID * GRID, 2), CELL + 4, np.float64)
    return (np.concatenate([centre, size], axis=1) / INPUT).astype(np.float32)


@functools.lru_cache(maxsize=1)
def tiny_detector() -> Path:
    """The tiny one-class detector; its spec ``tiny-det.json`` lies beside it."""
    tf = _tensorflow()
    from edgeskin.runtime.spec import sha256_file

    folder = _folder()
    boxes = grid_boxes_xywh().T[np.newaxis]  # [1, 4, 16]

    @tf.function(input_signature=[tf.TensorSpec([1, INPUT, INPUT, 3], tf.float32, name="images")])
    def serve(images):
        cells = tf.nn.avg_pool2d(tf.reduce_mean(images, axis=3, keepdims=True), CELL, CELL, "VALID")  # [1, 4, 4, 1]
        darkness = 1.0 - tf.reshape(cells, [1, 1, GRID * GRID]) / 255.0
        constant = tf.constant(boxes) + 0.0 * tf.reduce_mean(images)  # keep the boxes inside the graph
        return {"predictions": tf.concat([constant, darkness], axis=1)}

    path = _convert(tf, serve, folder, "tiny-det", 0.0, 255.0)
    spec = {
        "format_version": 1,
        "name": "tiny-det",
        "task": "detection",
        "model_file": path.name,
        "sha256": sha256_file(path),
        "input": {"size": [INPUT, INPUT], "color_order": "RGB", "resize": "letterbox", "mean": 0, "std": 1},
        "preprocessing": {"name": "none", "steps": []},
        "labels": ["lesion"],
        "outputs": {"predictions": "predictions"},
        "layout": "yolo",
        "boxes": "xywh_normalized",
        "thresholds": {"confidence": 0.6, "iou": 0.45},  # the grey letterbox padding scores 0.55
    }
    path.with_suffix(".json").write_text(json.dumps(spec))
    return path


def frame_with_dark_square(
    height: int = 64, width: int = 128, square: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """A light skin-coloured frame with one dark square ``(x0, y0, x1, y1)``."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = (225, 190, 170)
    if square is not None:
        x0, y0, x1, y1 = square
        frame[y0:y1, x0:x1] = (40, 25, 20)
    return frame


def shipped_model_paths():
    """The shipped default models (``edgeskin/models``); the test fails when they are missing.

    They are committed with the code, so their absence is a broken checkout (or a broken wheel), not a
    reason to skip: the tests that would catch a bad model must not turn quietly into skips.
    """
    import pytest

    from edgeskin.errors import NoDefaultModelError
    from edgeskin.models import default_model_paths

    try:
        return default_model_paths()
    except NoDefaultModelError as exc:
        pytest.fail(f"the shipped models are missing from edgeskin/models (they are committed): {exc}")
