"""Composite and close-up draws: each detector's top box on the validation slices of several detector datasets.

Issue 12's composites line (small, off-centre lesions: top box IoU >= 0.5 on >= 95%) is measured over several
draws, because one draw of about 60 composites moves by a few points from draw to draw. A draw is the validation
part of a dataset built by ``training.detector_masks`` from a config (its seed, its generator). The lesions come
from the held-out images, so no detector trained on them; a draw that was a training run's own dataset was seen by
that run's epoch choice, which the records say.

    python -m training.detector_masks --config training/configs/detector-composites-draw.yaml --out DRAW5
    python -m benchmarks.detector_draws --draw "draw 5=DRAW5" [--draw "draw 1=DRAW1" ...] \\
        --model shipped=edgeskin/models/edgeskin-yolov5n-det.tflite --model candidate=CAND.tflite \\
        [--threads 1] [--json OUT.json]

Each model runs through ``edgeskin.tasks.Detector`` at confidence 0.01 (``detector_presence.tflite_predictor``),
so every image gets its top box. Per draw, slice and model: n, the share with top box IoU >= 0.5, the mean top-box
IoU, and the share hit at IoU >= 0.5 with a score >= 0.25; then the same pooled over the draws.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from benchmarks.detector_presence import Predict, dataset_slices, tflite_predictor, top_record

SLICES = ("composite_val", "closeup_val")
POOLED = "all draws pooled"


def _summary(iou: np.ndarray, score: np.ndarray) -> dict:
    if not len(iou):
        return {"n": 0, "top_iou50": None, "mean_iou": None, "hit_at_0.25": None}
    return {
        "n": int(len(iou)),
        "top_iou50": round(float(np.mean(iou >= 0.5)), 4),
        "mean_iou": round(float(iou.mean()), 4),
        "hit_at_0.25": round(float(np.mean((iou >= 0.5) & (score >= 0.25))), 4),
    }


def score_draws(draws: Mapping[str, Path], predictors: Mapping[str, Predict]) -> dict:
    """``{draw or POOLED: {slice: {model: summary}}}`` over every draw's validation composites and close-ups."""
    result: dict[str, dict] = {}
    pooled: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for draw, folder in draws.items():
        slices = dataset_slices(Path(folder))
        if not any(slices.values()):
            raise FileNotFoundError(
                f"{draw}: no validation composites or close-ups under {Path(folder) / 'images' / 'val'}"
            )
        for slice_name in SLICES:
            images = [load() for _, _, load in slices[slice_name]]
            for model, predict in predictors.items():
                records = [top_record(*predict(image), truths) for image, truths in images]
                pairs = [(r["iou"], r["score"]) for r in records]
                pooled.setdefault((slice_name, model), []).extend(pairs)
                values = np.asarray(pairs, np.float64).reshape(-1, 2)
                result.setdefault(draw, {}).setdefault(slice_name, {})[model] = _summary(values[:, 0], values[:, 1])
    for (slice_name, model), pairs in pooled.items():
        values = np.asarray(pairs, np.float64).reshape(-1, 2)
        result.setdefault(POOLED, {}).setdefault(slice_name, {})[model] = _summary(values[:, 0], values[:, 1])
    return result


def format_table(result: Mapping[str, Mapping]) -> str:
    """One line per draw, slice and model."""
    lines = []
    for draw, slices in result.items():
        for slice_name, models in slices.items():
            for model, row in models.items():
                if not row["n"]:
                    lines.append(f"{draw:30s} {slice_name:13s} {model:20s} n=  0")
                    continue
                lines.append(
                    f"{draw:30s} {slice_name:13s} {model:20s} n={row['n']:3d} top>=0.5 {row['top_iou50']:.3f} "
                    f"mean {row['mean_iou']:.3f} conf>=0.25&hit {row['hit_at_0.25']:.3f}"
                )
    return "\n".join(lines)


def _pairs(values: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--{what} takes NAME=PATH, got {value!r}")
        out[name] = path
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draw", action="append", required=True, help="NAME=DATASET_DIR (repeatable)")
    parser.add_argument("--model", action="append", required=True, help="NAME=MODEL.tflite (repeatable)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the table as JSON")
    args = parser.parse_args(argv)
    draws = {name: Path(path) for name, path in _pairs(args.draw, "draw").items()}
    missing = [f"{name} ({path})" for name, path in draws.items() if not (path / "images" / "val").is_dir()]
    if missing:
        print(f"no dataset with a validation split for: {', '.join(missing)}", file=sys.stderr)
        return 2
    predictors = {
        name: tflite_predictor(path, threads=args.threads)[0] for name, path in _pairs(args.model, "model").items()
    }
    result = score_draws(draws, predictors)
    print(format_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
