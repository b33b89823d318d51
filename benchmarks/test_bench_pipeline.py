"""The whole pipeline (predict on an in-memory frame) and the bare invoke() it is compared with."""

from __future__ import annotations

import numpy as np

from benchmarks.conftest import cycling, resized, run_benchmark, variant_path


def test_pipeline_predict(benchmark, edge_models, ph2_frames, threads: int, frame_size, rounds: int) -> None:
    """LesionPipeline.predict: validate, detect, crop, classify, CAM (decode excluded)."""
    from edgeskin.tasks.pipeline import LesionPipeline, PipelineOptions

    frames = resized(ph2_frames, frame_size)
    next_frame = cycling(frames)
    options = PipelineOptions(edge_models[0], detector=edge_models[1], num_threads=threads)
    with LesionPipeline.create(options) as pipeline:
        lesions = [len(pipeline.predict(f).lesions) for f in frames]
        run_benchmark(
            benchmark,
            lambda: pipeline.predict(next_frame()),
            rounds,
            threads=threads,
            frame=f"{frame_size[0]}x{frame_size[1]}",
            lesions_per_frame=lesions,
        )


def test_bare_invoke(benchmark, model_variants, ph2_frames, variant: str, threads: int, rounds: int) -> None:
    """interpreter.invoke() alone, input already set: the floor the pipeline's overhead is measured against."""
    from edgeskin.runtime.interpreter import make_interpreter
    from edgeskin.tasks.detector import Detector

    path = variant_path(model_variants, "detector", variant)
    with Detector.from_model(path, threads=threads) as detector:
        tensor, _ = detector.preprocess(resized(ph2_frames, (768, 576))[0])
    interpreter = make_interpreter(path, num_threads=threads)
    details = interpreter.get_input_details()[0]
    interpreter.set_tensor(details["index"], np.ascontiguousarray(tensor, dtype=details["dtype"]))
    run_benchmark(benchmark, interpreter.invoke, rounds, model=path.name, threads=threads)


def test_bare_invoke_classifier(benchmark, model_variants, ham_images, variant: str, threads: int, rounds: int) -> None:
    from edgeskin.runtime.interpreter import make_interpreter
    from edgeskin.tasks.classifier import Classifier

    path = variant_path(model_variants, "classifier", variant)
    with Classifier.from_model(path, threads=threads) as classifier:
        tensor = classifier.preprocess(ham_images[0])
    interpreter = make_interpreter(path, num_threads=threads)
    details = interpreter.get_input_details()[0]
    interpreter.set_tensor(details["index"], np.ascontiguousarray(tensor, dtype=details["dtype"]))
    run_benchmark(benchmark, interpreter.invoke, rounds, model=path.name, threads=threads)


def test_cycling_is_deterministic() -> None:
    take = cycling([1, 2, 3])
    assert [take() for _ in range(5)] == [1, 2, 3, 1, 2]
