"""Float TFLite companions of the edge models, for the INT8-vs-float latency rows of the report.

``python -m benchmarks.export_float [--force]`` writes into ``artifacts/bench/``:

* ``<classifier>-float32.tflite`` and ``-float16.tflite`` (float16 weights, float compute): the float Keras
  classifier (``artifacts/classifier/model.keras``) through the same signature as the INT8 export
  (``image`` → ``logits``, ``features``), converted without quantization;
* ``<detector>-float32.tflite`` / ``-float16.tflite``: onnx2tf's float files from the detector export
  (the ``*_float32.tflite`` beside the ``*_full_integer_quant.tflite`` identical to the shipped INT8 model,
  under ``artifacts/detector``), which come from the same ONNX graph as the INT8 model;

each with a spec JSON beside it (the INT8 spec with the file name, checksum and output names of the float
model), so the same :class:`~edgeskin.tasks.Classifier` / :class:`~edgeskin.tasks.Detector` code runs them.
A float file older than the INT8 model it shadows is rebuilt.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.checkout import BENCH_ARTIFACTS, DETECTOR_WORK, REPO, checkout_inputs
from edgeskin.report.common import Missing, keras_baseline, models


def _write_spec(int8_model: Path, float_model: Path, outputs: dict[str, str], note: str) -> None:
    from edgeskin.runtime.spec import sha256_file

    spec = json.loads(int8_model.with_suffix(".json").read_text())
    spec["model_file"] = float_model.name
    spec["sha256"] = sha256_file(float_model)
    spec["name"] = float_model.stem
    spec["outputs"] = {**spec["outputs"], **outputs}
    spec.setdefault("provenance", {})
    spec["provenance"] = {"benchmark_companion_of": int8_model.name, "how": note}
    spec.pop("metrics", None)
    float_model.with_suffix(".json").write_text(json.dumps(spec, indent=1))


def _fresh(path: Path, source: Path, force: bool) -> bool:
    return (
        not force
        and path.is_file()
        and path.with_suffix(".json").is_file()
        and path.stat().st_mtime >= source.stat().st_mtime
    )


def export_classifier(int8_model: Path, keras_model: Path | None = None, force: bool = False) -> list[Path]:
    """float32 and float16 TFLite of the Keras classifier (TensorFlow needed)."""
    keras_model = keras_model or keras_baseline(checkout_inputs(*models()), int8_model)
    targets = {v: BENCH_ARTIFACTS / f"{int8_model.stem}-{v}.tflite" for v in ("float32", "float16")}
    if all(_fresh(p, int8_model, force) and p.stat().st_mtime >= keras_model.stat().st_mtime for p in targets.values()):
        return list(targets.values())
    import keras
    import tensorflow as tf

    from convert.export_classifier import deployable, save_signature_model

    spec = json.loads(int8_model.with_suffix(".json").read_text())
    size = int(spec["input"]["size"][0])
    model = keras.models.load_model(keras_model, compile=False)
    deploy = deployable(model)
    BENCH_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_signature_model(deploy, size, tmp)
        for variant, path in targets.items():
            converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serving_default"])
            if variant == "float16":
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.target_spec.supported_types = [tf.float16]
            path.write_bytes(converter.convert())
            _write_spec(int8_model, path, {}, f"TFLiteConverter, no quantization ({variant}), from {keras_model.name}")
    return list(targets.values())


def export_detector(int8_model: Path, force: bool = False) -> list[Path]:
    """Copy onnx2tf's float detector files beside specs (no TensorFlow needed)."""
    from edgeskin.core.dfl import detector_output_roles
    from edgeskin.runtime.interpreter import TFLiteModel
    from edgeskin.runtime.spec import sha256_file

    # The onnx2tf folder whose full-integer file is the INT8 model itself: its float files share its graph.
    int8_sha = sha256_file(int8_model)
    folders = sorted({p.parent for p in DETECTOR_WORK.rglob(f"{int8_model.stem}_full_integer_quant.tflite")})
    matching = [d for d in folders if sha256_file(d / f"{int8_model.stem}_full_integer_quant.tflite") == int8_sha]
    if not matching:
        raise Missing(
            f"no onnx2tf export under {DETECTOR_WORK} whose INT8 file matches {int8_model.name} "
            "(run convert.export_detector)"
        )
    written = []
    for variant in ("float32", "float16"):
        source = matching[0] / f"{int8_model.stem}_{variant}.tflite"
        if not source.is_file():
            continue
        target = BENCH_ARTIFACTS / f"{int8_model.stem}-{variant}.tflite"
        if not (_fresh(target, int8_model, force) and target.stat().st_mtime >= source.stat().st_mtime):
            BENCH_ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            with TFLiteModel.from_file(target) as model:
                predictions, scores = detector_output_roles(model.outputs)
            _write_spec(
                int8_model,
                target,
                {"predictions": predictions, **({"scores": scores} if scores else {})},
                f"onnx2tf {variant} output of the detector export ({source})",
            )
        written.append(target)
    if not written:
        raise Missing(f"no onnx2tf float detector in {matching[0]}")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when the float files are up to date")
    parser.add_argument("--out", help="also write what was made (or why not) as JSON here")
    args = parser.parse_args(argv)
    classifier, detector = models()
    summary: dict[str, object] = {}
    for what, export in (
        ("classifier", lambda: export_classifier(classifier, force=args.force)),
        ("detector", lambda: export_detector(detector, force=args.force)),
    ):
        try:
            paths = export()
            summary[what] = {p.name: p.stat().st_size for p in paths}
            for path in paths:
                print(f"{what}: {path.relative_to(REPO)} ({path.stat().st_size / 1e6:.2f} MB)")
        except Missing as exc:
            summary[what] = {"missing": f"no float TFLite {what}: {exc}"}
            print(f"{what}: skipped: {exc}", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
