"""Each stage of the pipeline on its own: decode, preprocessing profile, detect, crop, classify, CAM, annotate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.conftest import cycling, resized, run_benchmark, variant_path
from edgeskin.core.preprocess import PROFILES


def test_decode(benchmark, ph2_paths: list[Path], rounds: int) -> None:
    """File bytes → RGB uint8 (excluded from the end-to-end figure; here for completeness)."""
    from edgeskin.image import read_image

    next_data = cycling([p.read_bytes() for p in ph2_paths])
    frame = run_benchmark(benchmark, lambda: read_image(next_data()), rounds)
    assert frame.ndim == 3 and frame.shape[2] == 3


@pytest.mark.parametrize("profile_name", [name for name in PROFILES if name != "none"])
def test_preprocessing_profile(benchmark, ham_images: list[np.ndarray], profile_name: str, rounds: int) -> None:
    """A preprocessing profile on a model-input-sized (192x192) image, where the pipeline applies it."""
    from edgeskin.core.geometry import resize_to_input

    profile = PROFILES[profile_name]
    inputs = [resize_to_input(image, (192, 192), "stretch")[0] for image in ham_images]
    out = run_benchmark(benchmark, lambda: profile.apply(cycling(inputs)()), rounds, profile=profile_name)
    assert out.shape == (192, 192, 3)


def test_detect(benchmark, model_variants, ph2_frames, variant: str, threads: int, frame_size, rounds: int) -> None:
    """Detector.detect: letterbox, quantize, invoke, decode, NMS."""
    from edgeskin.tasks.detector import Detector

    path = variant_path(model_variants, "detector", variant)
    frames = resized(ph2_frames, frame_size)
    next_frame = cycling(frames)
    with Detector.from_model(path, threads=threads) as detector:
        run_benchmark(
            benchmark,
            lambda: detector.detect(next_frame()),
            rounds,
            model=path.name,
            threads=threads,
            frame=f"{frame_size[0]}x{frame_size[1]}",
        )


def test_crop(benchmark, ph2_frames, rounds: int) -> None:
    """crop_with_margin of a central box (the classifier's input before resizing)."""
    from edgeskin.core.crop import crop_with_margin

    frame = ph2_frames[0]
    height, width = frame.shape[:2]
    box = np.array([width * 0.3, height * 0.3, width * 0.7, height * 0.7], np.float32)
    crop, _ = run_benchmark(benchmark, lambda: crop_with_margin(frame, box, margin=0.15), rounds)
    assert crop.size > 0


def test_classify(benchmark, model_variants, ham_images, variant: str, threads: int, rounds: int) -> None:
    """Classifier.classify_with_features: resize, profile, quantize, invoke, dequantize, softmax."""
    from edgeskin.tasks.classifier import Classifier

    path = variant_path(model_variants, "classifier", variant)
    next_image = cycling(ham_images)
    with Classifier.from_model(path, threads=threads) as classifier:
        run_benchmark(
            benchmark, lambda: classifier.classify_with_features(next_image()), rounds, model=path.name, threads=threads
        )


def test_cam(benchmark, edge_models, ham_images, rounds: int) -> None:
    """CamExplainer.explain on the INT8 feature map (one (h*w, C) @ (C,) product)."""
    from edgeskin.tasks.cam import CamExplainer
    from edgeskin.tasks.classifier import Classifier

    with Classifier.from_model(edge_models[0], threads=2) as classifier:
        explainer = CamExplainer.from_spec(classifier.spec)
        inputs = []
        for image in ham_images:
            result, features = classifier.classify_with_features(image)
            inputs.append((features, int(np.argmax(result.probabilities))))
    next_input = cycling(inputs)
    cam = run_benchmark(benchmark, lambda: explainer.explain(*next_input()), rounds * 10)
    assert cam.ndim == 2


def test_annotate(benchmark, edge_models, ph2_frames, rounds: int) -> None:
    """annotate(): heatmap, boxes, labels and banner on a copy of the 768x576 frame."""
    from edgeskin.annotate import annotate
    from edgeskin.tasks.pipeline import LesionPipeline, PipelineOptions

    frame = resized(ph2_frames, (768, 576))[0]
    with LesionPipeline.create(PipelineOptions(edge_models[0], detector=edge_models[1], num_threads=2)) as pipeline:
        result = pipeline.predict(frame)
    out = run_benchmark(benchmark, lambda: annotate(frame, result), rounds, lesions=len(result.lesions))
    assert out.shape == frame.shape
