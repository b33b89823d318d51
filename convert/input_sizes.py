"""The shipped INT8 classifier run at other input sizes or with fewer test-time views, same weights (no training).

MobileNetV2 ends in global average pooling, so the INT8 graph runs at any square input once the interpreter's input
tensor is resized. Each size is scored on the run's internal validation (the images that choose) and on the two
external checks (reported only): the 675 held-out ISIC 2017 images and the 100 PH2 images, mask-box crops with the
pipeline's margin, the spec's 4 test-time views, calibration and refer threshold.

    python -m convert.input_sizes --run DIR --sizes 160 176 192 224 --out results.json
    python -m convert.input_sizes --run DIR --sizes 192 --views identity identity,hflip identity,hflip,vflip,rot180 \
        --out views.json

``DIR`` holds the shipped run's ``config.json`` (``training/runs/classifier-continued/config.json``) and
``split.json`` (``training/runs/classifier/split.json``). The record is ``training/runs/classifier-test-size/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from convert.export_classifier import REPO, classification_metrics, external_sets, load_run, per_source
from edgeskin.models import default_classifier_path
from edgeskin.tasks.classifier import Classifier


def classifier_at(base: Classifier, size: int, tta: tuple[str, ...]) -> Classifier:
    """``base`` with its input resized to ``size`` x ``size`` (a batch of one image's views) and ``tta`` views."""
    if (size, size) == tuple(base.spec.input.size):
        return Classifier(base.model, base.spec, tta=tta)
    model = base.model.with_input_shape((len(tta), size, size, 3))
    spec = dataclasses.replace(base.spec, input=dataclasses.replace(base.spec.input, size=(size, size)))
    return Classifier(model, spec, tta=tta)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 176, 192, 224])
    parser.add_argument(
        "--views", nargs="+", default=None, help="comma-separated view sets to score (default: the spec's views)"
    )
    parser.add_argument("--ph2", type=Path, default=REPO / "../shared/data/ph2")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    run = load_run(args.run)
    margin = run.config["crop"]["val_margin"]
    internal = run.val_crops()
    sources = np.array(run.val.image_sources)
    externals = external_sets(run.config, run.split, run.data, args.ph2, margin)
    base = Classifier.from_model(default_classifier_path(), threads=2)
    threshold = base.spec.malignant_threshold
    view_sets = [tuple(v.split(",")) for v in args.views] if args.views else [base.views]
    results: dict = {"model_sha256": base.spec.sha256, "threshold": threshold, "runs": {}}
    for size, tta in ((s, v) for s in args.sizes for v in view_sets):
        classifier = classifier_at(base, size, tta)
        probs = np.stack([classifier.classify(crop).probabilities for crop in internal])
        row = {"internal": per_source(run.val.labels, probs, sources, threshold)}
        for name, (crops, labels) in externals.items():
            probs = np.stack([classifier.classify(crop).probabilities for crop in crops])
            row[name] = classification_metrics(np.asarray(labels), probs, threshold)
        results["runs"][f"{size}px {','.join(tta)}"] = row
        print(
            size,
            ",".join(tta),
            f"internal 7-dx BACC {row['internal']['all']['dx']['balanced_accuracy']:.4f}",
            *(f"{name} mel AUC {row[name]['melanoma']['auc_p_mel']:.3f}" for name in externals),
            flush=True,
        )
    args.out.write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    from convert.script import run_script

    run_script(main, "python -m convert.input_sizes")
