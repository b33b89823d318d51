"""Out-of-distribution check of a classifier on PH2: melanoma against naevi, on data it never saw.

``python -m benchmarks.ph2_classification [--model M ...] [--out FILE]``

The 100 PH2 images (20 melanomas, 80 common or atypical
naevi; another clinic, another camera) are a second, independent test that nothing was tuned or selected
on. Each image is classified on the expert mask's box with the pipeline's margin (so the detector plays no
part), and also on the whole frame. Reported per model: AUC of P(mel) and of P(malignant) for melanoma
against naevi (scikit-learn), and at the spec's triage threshold the share of melanomas referred and of
naevi referred. 20 melanomas make every figure coarse: one image is 5 points of sensitivity.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.checkout import DATA
from edgeskin.report.common import emit_json, models


def _mask_box(mask_path: str) -> np.ndarray:
    import cv2

    mask = cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE)
    ys, xs = np.nonzero(mask > 127)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def score_model(model_path: Path, items) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from edgeskin.core.crop import crop_with_margin
    from edgeskin.image import read_image
    from edgeskin.labels import malignant_probability
    from edgeskin.tasks.classifier import Classifier

    is_mel = np.array([item.diagnosis == "melanoma" for item in items])
    from edgeskin.runtime.spec import sha256_file

    out: dict[str, Any] = {
        "model": model_path.name,
        "sha256": sha256_file(model_path),
        "melanomas": int(is_mel.sum()),
        "naevi": int((~is_mel).sum()),
    }
    with Classifier.from_model(model_path, threads=2) as classifier:
        threshold = classifier.spec.malignant_threshold
        labels = list(classifier.labels)
        mel = labels.index("mel")
        for view in ("lesion_box", "whole_frame"):
            probs = []
            for item in items:
                image = read_image(item.image_path)
                if view == "lesion_box":
                    image, _ = crop_with_margin(image, _mask_box(item.mask_path))
                result = classifier.classify(image)
                probs.append(result.probabilities)
            probs = np.asarray(probs)
            malignant = malignant_probability(probs, labels)
            row = {
                "melanoma_auc_p_mel": round(float(roc_auc_score(is_mel, probs[:, mel])), 4),
                "melanoma_auc_p_malignant": round(float(roc_auc_score(is_mel, malignant)), 4),
                "top1_mel_on_melanomas": round(float((probs[is_mel].argmax(1) == mel).mean()), 4),
            }
            if threshold is not None:
                row["triage_threshold"] = threshold
                row["melanomas_referred"] = round(float((malignant[is_mel] >= threshold).mean()), 4)
                row["naevi_referred"] = round(float((malignant[~is_mel] >= threshold).mean()), 4)
            out[view] = row
    return out


def main(argv: list[str] | None = None) -> int:
    from training.detector_data import load_ph2

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="classifier .tflite (repeatable; default: the shipped one)")
    parser.add_argument("--ph2", default=str(DATA / "ph2"), help="PH2 folder (images/, masks/, labels.csv)")
    parser.add_argument("--out", help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)
    items = load_ph2(args.ph2)
    paths = [Path(m) for m in args.model] if args.model else [models()[0]]
    return emit_json({"images": len(items), "models": [score_model(p, items) for p in paths]}, args.out)


if __name__ == "__main__":
    sys.exit(main())
