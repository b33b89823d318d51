"""The shipped models through edgeskin's tasks give what the bare interpreter gives, on real PH2 images.

Why not stored reference numbers: the shipped models are replaced whenever a better one is trained (the
classifier is being retrained right now), and numbers keyed to one model would either block that or be
skipped. Instead each test computes the answer a second, independent way, from the spec JSON, OpenCV and
numpy and a bare LiteRT interpreter (one invoke per test-time view through the model's signature), and
compares it with :class:`~edgeskin.tasks.Detector`, :class:`~edgeskin.tasks.Classifier` and
:class:`~edgeskin.tasks.LesionPipeline`. That covers the wiring the refactors touch (options, roles, the
batched views, softmax, calibration use, refer rule, crop, box mapping) for any model that is shipped. The
image preprocessing profile itself (:mod:`edgeskin.core.preprocess`) and the calibration map
(:func:`edgeskin.calibration.apply_top_label`) are reused: they are pure functions with their own tests.

Images: the bundled PH2 example and, when ``../shared`` is there, three more PH2 images.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeskin.calibration import apply_top_label
from edgeskin.core.preprocess import get_profile
from edgeskin.models import default_model_paths

REPO_ROOT = Path(__file__).resolve().parents[1]
PH2_IMAGES = REPO_ROOT.parent / "shared" / "data" / "ph2" / "images"
IMAGES = [REPO_ROOT / "examples" / "IMD080.jpg"] + [PH2_IMAGES / f"IMD{n}.jpg" for n in ("002", "003", "006")]
VIEWS = {
    "identity": lambda a: a,
    "hflip": lambda a: a[:, ::-1],
    "vflip": lambda a: a[::-1],
    "rot90": lambda a: np.rot90(a, 1),
    "rot180": lambda a: a[::-1, ::-1],
    "rot270": lambda a: np.rot90(a, 3),
}


def _images() -> list[np.ndarray]:
    found = [p for p in IMAGES if p.is_file()]
    assert found, "examples/IMD080.jpg is committed"
    return [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in found]


class BareModel:
    """A LiteRT interpreter used directly: the spec's normalisation, quantize, invoke the signature, dequantize."""

    def __init__(self, path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.spec = json.loads(path.with_suffix(".json").read_text())
        self.interpreter = Interpreter(model_path=str(path), num_threads=1)
        self.runner = self.interpreter.get_signature_runner()
        ((self.input_name, self.input),) = self.runner.get_input_details().items()
        self.outputs = self.runner.get_output_details()

    def __call__(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        mean = np.asarray(self.spec["input"]["mean"], np.float32)
        std = np.asarray(self.spec["input"]["std"], np.float32)
        x = (pixels.astype(np.float32) - mean) / std
        scale, zero = self.input["quantization"]
        dtype = self.input["dtype"]
        if scale:
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        raw = self.runner(**{self.input_name: x.astype(dtype)[None]})
        out = {}
        for name, value in raw.items():
            scale, zero = self.outputs[name]["quantization"]
            out[name] = (value.astype(np.float64) - zero) * scale if scale else value.astype(np.float64)
        return out


def _letterbox(frame: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float, float, float]:
    height, width = frame.shape[:2]
    size_h, size_w = size
    gain = min(size_h / height, size_w / width)
    new_w, new_h = round(width * gain), round(height * gain)
    resized = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR_EXACT)
    pad_x, pad_y = (size_w - new_w) / 2, (size_h - new_h) / 2
    out = np.full((size_h, size_w, 3), 114, np.uint8)
    top, left = int(round(pad_y - 0.1)), int(round(pad_x - 0.1))
    out[top : top + new_h, left : left + new_w] = resized
    return out, gain, left, top


def bare_top_box(model: BareModel, frame: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The highest-scoring box in frame pixels (xyxy) and its score, or None below the spec's confidence."""
    size_h, size_w = model.spec["input"]["size"]  # (height, width): 4:3 detectors are not square
    pixels, gain, left, top = _letterbox(frame, (size_h, size_w))
    outputs = model(pixels)
    if model.spec.get("layout") == "yolo_dfl":  # DFL logits [1, 64, N] and scores [1, 1, N]: decode the top anchor
        logits, scores = outputs[model.spec["outputs"]["predictions"]][0], outputs[model.spec["outputs"]["scores"]][0]
        scores = scores.max(axis=0)
        best = int(np.argmax(scores))
        # Anchor centres of the stride 8, 16 and 32 grids, row by row; each side a softmax over 16 bins.
        grid = [
            (stride, y, x) for stride in (8, 16, 32) for y in range(size_h // stride) for x in range(size_w // stride)
        ]
        stride, gy, gx = grid[best]
        bins = logits[:, best].reshape(4, 16)
        p = np.exp(bins - bins.max(axis=1, keepdims=True))
        left_d, top_d, right_d, bottom_d = (p / p.sum(axis=1, keepdims=True)) @ np.arange(16) * stride
        ax, ay = (gx + 0.5) * stride, (gy + 0.5) * stride
        x0, y0, x1, y1 = ax - left_d, ay - top_d, ax + right_d, ay + bottom_d
    else:  # one [1, 4 + classes, N] output decoded in the graph
        (pred,) = outputs.values()
        pred = pred[0]
        scores = pred[4:].max(axis=0)
        best = int(np.argmax(scores))
        scale = [size_w, size_h, size_w, size_h] if model.spec["boxes"] == "xywh_normalized" else [1.0] * 4
        cx, cy, w, h = pred[:4, best] * np.asarray(scale)
        x0, y0, x1, y1 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    if scores[best] < model.spec["thresholds"]["confidence"]:
        return None
    box = np.array([x0 - left, y0 - top, x1 - left, y1 - top]) / gain
    box = np.clip(box, 0, [frame.shape[1], frame.shape[0], frame.shape[1], frame.shape[0]])
    return box, float(scores[best])


def bare_probabilities(model: BareModel, image: np.ndarray, views: list[str] | None = None) -> np.ndarray:
    """The classifier's calibrated probabilities: views (default: the spec's) averaged as logits, softmax(logits / T),
    top-label map."""
    spec = model.spec
    height, width = spec["input"]["size"]
    pixels = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR_EXACT)
    profile = get_profile(spec["preprocessing"]["name"]) if spec["preprocessing"]["name"] != "none" else None
    if profile is not None:
        pixels = profile.apply(pixels)
    output = spec["outputs"]["probabilities"]
    logits = np.mean(
        [
            model(np.ascontiguousarray(VIEWS[view](pixels)))[output][0]
            for view in views or spec.get("tta") or ["identity"]
        ],
        axis=0,
    )
    calibration = spec.get("calibration") or {}
    z = logits / calibration.get("temperature", 1.0)
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    if calibration.get("top_label"):
        probs = apply_top_label(probs[None].astype(np.float32), calibration["top_label"])[0]
    return probs


@pytest.fixture(scope="module")
def shipped():
    paths = default_model_paths()
    return BareModel(paths.classifier), BareModel(paths.detector), paths


def test_detector_matches_the_bare_interpreter(shipped):
    from edgeskin.tasks.detector import Detector

    _, bare, paths = shipped
    with Detector.from_model(paths.detector, threads=1) as detector:
        for frame in _images():
            expected = bare_top_box(bare, frame)
            got = detector.detect(frame)
            assert expected is not None and len(got) > 0, "a PH2 image shows a lesion"
            top = int(np.argmax(got.confidence))
            np.testing.assert_allclose(got.xyxy[top], expected[0], atol=1.0)  # pixels of a 768x560 frame
            assert got.confidence[top] == pytest.approx(expected[1], abs=1e-6)


def test_classifier_matches_the_bare_interpreter(shipped):
    from edgeskin.tasks.classifier import Classifier

    bare, _, paths = shipped
    with Classifier.from_model(paths.classifier, threads=1) as classifier:
        for image in _images():
            got = classifier.classify(image)
            assert list(got.labels) == bare.spec["labels"]
            np.testing.assert_allclose(got.probabilities, bare_probabilities(bare, image), atol=2e-5)


def test_pipeline_classifies_its_crop_and_refers_by_the_spec_threshold(shipped):
    from edgeskin.tasks.pipeline import DEFAULT_CONTEXT, LesionPipeline

    bare, _, _ = shipped
    labels = bare.spec["labels"]
    threshold = (bare.spec.get("triage") or {}).get("malignant_threshold")
    malignant = [labels.index(dx) for dx in ("ak", "akiec", "bcc", "mel", "scc") if dx in labels]
    checked = 0
    with LesionPipeline.from_defaults(threads=1) as pipeline:
        for frame in _images():
            result = pipeline(frame)
            if not result.lesions:  # the top box scored below the spec's presence threshold
                continue
            checked += 1
            lesion = result.lesions[0]
            x0, y0, x1, y1 = (int(v) for v in lesion.crop_box)
            crop = frame[max(y0, 0) : min(y1, frame.shape[0]), max(x0, 0) : min(x1, frame.shape[1])]
            probs = bare_probabilities(bare, np.ascontiguousarray(crop))
            # The default context view: a box over half of the frame also gets the whole frame as one view, and the
            # view with the higher melanoma probability answers.
            bx0, by0, bx1, by1 = np.clip(lesion.box, 0, [frame.shape[1], frame.shape[0]] * 2)
            large = (bx1 - bx0) * (by1 - by0) > DEFAULT_CONTEXT.area * frame.shape[0] * frame.shape[1]
            assert lesion.context_view is bool(large)
            if large:
                context = bare_probabilities(bare, frame, ["identity"])
                probs = context if context[labels.index("mel")] > probs[labels.index("mel")] else probs
            np.testing.assert_allclose(lesion.dx.probabilities, probs, atol=2e-5)
            assert lesion.malignant == pytest.approx(float(probs[malignant].sum()), abs=2e-5)
            if threshold is not None and abs(lesion.malignant - threshold) > 1e-4:
                assert lesion.refer == (lesion.malignant >= threshold)
    assert checked, "the shipped pipeline reports a lesion on at least one PH2 image"
