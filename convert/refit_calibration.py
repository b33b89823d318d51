"""Refit a shipped classifier's calibration (temperature + smooth top-label map) and triage in its spec.

Runs the INT8 model through the edgeskin runtime on its validation split (resize, profile, the spec's
test-time views averaged: what the export measures), then :func:`edgeskin.calibration.fit_calibration`
and the malignant triage threshold on the calibrated probabilities, and rewrites the spec's
``calibration``, ``triage`` and ``metrics.int8_calibrated``. The export (``convert.export_classifier``)
does the same on a fresh model; this is for a model already in ``edgeskin/models``::

    python -m convert.refit_calibration --spec edgeskin/models/edgeskin-mnv2-cls.json --write --ship

Without ``--write`` it only prints the figures; a shipped spec is rewritten only with ``--ship`` too. The spec's old calibration is ignored when the model is
run (its step-shaped map is what this replaces).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from convert.ship import is_shipped_folder
from edgeskin.calibration import calibrated_probabilities, fit_calibration, triage_threshold
from edgeskin.labels import malignant_index
from edgeskin.runtime.spec import ModelSpec, sha256_file

REPO = Path(__file__).resolve().parents[1]

log = logging.getLogger("refit_calibration")


def logits_step(model_path: Path, output: str) -> float:
    """The quantization step (scale) of the model's logits output."""
    from edgeskin.runtime.interpreter import TFLiteModel

    model = TFLiteModel.from_file(str(model_path), num_threads=1)
    try:
        info = model.output(output)
        if not info.is_quantized:
            raise SystemExit(f"{model_path}: output {output!r} is not quantized; no INT8 step to measure")
        return float(info.scale)
    finally:
        model.close()


def validation_logits(spec_data: dict, model_path: Path, image_paths: list[Path], threads: int = 2) -> np.ndarray:
    """(N, n_classes) INT8 logits averaged over the spec's views, through the runtime, uncalibrated."""
    from tqdm import tqdm

    from edgeskin.core.views import apply_view
    from edgeskin.image import read_image
    from edgeskin.runtime.interpreter import TFLiteModel
    from edgeskin.tasks.classifier import Classifier

    plain = {**spec_data, "calibration": {}}
    spec = ModelSpec.from_dict(plain)
    model = TFLiteModel.from_file(str(model_path), num_threads=threads)
    with Classifier(model, spec) as classifier:
        name = spec.outputs["probabilities"]
        out = np.zeros((len(image_paths), spec.num_classes))
        for n, path in enumerate(tqdm(image_paths, desc="validation", mininterval=10)):
            x = classifier.preprocess(read_image(path))
            out[n] = np.mean(
                [classifier.model.run(apply_view(view, x))[name].reshape(-1) for view in classifier.views], axis=0
            )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(REPO / "edgeskin/models/edgeskin-mnv2-cls.json"))
    parser.add_argument("--split", help="split JSON (default: the spec's provenance.split_file)")
    parser.add_argument("--metadata", help="HAM10000 metadata CSV (default: the spec's training config)")
    parser.add_argument("--images", help="image folder (default: the spec's training config)")
    parser.add_argument("--logits", help="cache of the validation logits (.npz): read if present, else written")
    parser.add_argument("--min-sensitivity", type=float, help="triage sensitivity (default: the spec's)")
    parser.add_argument("--write", action="store_true", help="rewrite the spec (default: print only)")
    parser.add_argument(
        "--ship", action="store_true", help="with --write: allow rewriting a shipped spec in edgeskin/models (says so)"
    )
    args = parser.parse_args(argv)
    if args.write and is_shipped_folder(Path(args.spec).parent) and not args.ship:
        parser.error(
            f"--write: {args.spec} is a shipped spec; add --ship to rewrite it (or copy it and its model elsewhere)"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from convert.export_classifier import classification_metrics
    from edgeskin.datasets import apply_split, load_ham10000

    spec_path = Path(args.spec)
    data = json.loads(spec_path.read_text())
    model_path = spec_path.with_name(data["model_file"])
    provenance = data.get("provenance", {})
    config = provenance.get("training_config", {})
    metadata, images = args.metadata or config.get("metadata"), args.images or config.get("images")
    if not (metadata and images):
        raise SystemExit(
            f"{spec_path.name}: no HAM10000 metadata/images in its training config (a multi-source model: its "
            "export, convert.export_classifier, calibrates it); give --metadata and --images for a HAM10000 model"
        )
    split = json.loads((REPO / (args.split or provenance["split_file"])).read_text())
    dataset = load_ham10000(REPO / metadata, REPO / images)
    val = apply_split(dataset, split, "val")
    labels = list(data["labels"])
    if labels != list(dataset.classes):
        raise SystemExit(f"the spec's labels {labels} are not the dataset's label order")

    cache = Path(args.logits) if args.logits else None
    if cache is not None and cache.is_file():
        stored = np.load(cache)
        logits = stored["logits"]
        if list(stored["image_ids"]) != list(val.image_ids):
            raise SystemExit(f"{cache}: cached logits are for other images than the split's validation part")
    else:
        logits = validation_logits(data, model_path, [Path(p) for p in val.paths])
        if cache is not None:
            np.savez(cache, logits=logits, image_ids=np.asarray(val.image_ids))
    step = logits_step(model_path, data["outputs"]["probabilities"])
    views = data.get("tta") or ["identity"]
    calibration, calibrated = fit_calibration(logits, val.labels, step)
    calibration["fitted_on"] = f"validation split ({len(val)} images), INT8 logits averaged over the views {views}"
    malignant = malignant_index(labels)
    previous = data.get("triage", {})
    triage = triage_threshold(
        calibrated[:, malignant].sum(1),
        np.isin(val.labels, malignant),
        args.min_sensitivity or previous.get("min_sensitivity", 0.85),
    )
    print(json.dumps({"calibration": calibration, "triage": triage}, indent=1))
    if args.write:
        data["calibration"] = calibration
        data["triage"] = triage
        metrics = data.setdefault("metrics", {})
        metrics["int8_uncalibrated"] = classification_metrics(
            val.labels, calibrated_probabilities(logits), dx_labels=tuple(labels)
        )
        metrics["int8_calibrated"] = classification_metrics(val.labels, calibrated, dx_labels=tuple(labels))
        data.setdefault("provenance", {})["calibration_refit"] = {
            "command": "python -m convert.refit_calibration --write",
            "date": time.strftime("%Y-%m-%d"),
            "note": "calibration, triage and the INT8 validation metrics re-measured through this runtime "
            "(bit-exact INTER_LINEAR_EXACT resize); the other metrics are the export's",
        }
        spec = ModelSpec.from_dict(data)  # validates the new map
        before = sha256_file(spec_path)
        spec.save(spec_path)
        log.info("wrote %s (sha256 %s before, %s now)", spec_path, before[:12], sha256_file(spec_path)[:12])
    return 0


if __name__ == "__main__":
    from convert.script import run_script

    run_script(main, "python -m convert.refit_calibration")
