"""The context view of issue 29 part 3: when the crop loses, classify a wider context as well and combine.

The candidate rules and the selection criterion are fixed in ``docs/context-view.md`` (committed before this ran).
Stages:

1. ``cache``: every frame once through the full pipeline (the shipped detector and classifier unless
   ``--classifier`` / ``--detector`` say otherwise; CAM off; the context view off, so the crop is what the
   pipeline gave before), keeping per frame the first lesion's crop probabilities, box and crop window, the whole
   frame with the spec's test-time views (the reference), the whole frame and the grown window (box + its own
   size per side) as one single view. Frames: the classifier's internal validation images
   (``training/runs/classifier/split.json`` ``val``: HAM10000 and ISIC 2017); reported beside, never used to
   choose: all 100 PH2 images and the labelled images of the split's ISIC 2017 held-out third. The cache is a JSON
   file reused when it exists.
2. ``grid``: each rule of the document (trigger ``u > U or f > F``, context, combination) scored from the cache:
   per source the melanoma AUC (a frame without an answer scores 0) and the share of frames it triggers on.
3. ``choose``: the document's criterion on the internal sources only.
4. ``interval``: a paired bootstrap (``scipy.stats.bootstrap``) 95% interval of the chosen rule's AUC minus the
   whole-frame AUC, per source.

    python -m benchmarks.context_view [--cache /tmp/context_cache.json] [--json OUT] [--limit N]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks.unsure_band import MALIGNANT, MELANOMA, outcome
from edgeskin.core.context import COMBINATIONS, CONTEXTS, GROWN_MARGIN, ContextRule, combine_views, context_measures
from edgeskin.core.crop import crop_with_margin

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
CLASSIFIER_SPLIT = REPO / "training" / "runs" / "classifier" / "split.json"
INTERNAL = ("ham10000", "isic2017")
# Reported beside, never used to choose: all of PH2, and the labelled ISIC 2017 images of the classifier's
# held-out third (``source_holdout`` of its split: no training or selection of the classifier saw them).
BESIDE = ("ph2", "isic2017_holdout")
UPSAMPLING = (1.0, 1.25, 1.5, 2.0, math.inf)  # math.inf: this measure never triggers
AREA = (0.5, 0.7, math.inf)


@dataclass(frozen=True)
class Frame:
    image_id: str
    source: str
    dx: str
    path: Path


def frames(data: Path, split_path: Path, limit: int | None) -> list[Frame]:
    """The internal validation images with their 8-dx labels and source, then the sets reported beside."""
    from edgeskin.datasets import apply_split, load_multisource

    ham, truth = data / "ham10000", data / "isic_ground_truth"
    table = load_multisource(ham / "HAM10000_metadata.csv", ham / "images", data / "isic2018_task1" / "images", truth)
    split = json.loads(split_path.read_text())
    val = apply_split(table, split, "val")
    out = [
        Frame(i, s, val.classes[int(y)], Path(p))
        for i, s, y, p in zip(val.image_ids, val.image_sources, val.labels, val.paths, strict=True)
    ]
    held_out = set(split.get("source_holdout", {}).get("images", ()))
    out += [
        Frame(i, "isic2017_holdout", table.classes[int(y)], Path(p))
        for i, y, p in zip(table.image_ids, table.labels, table.paths, strict=True)
        if i in held_out
    ]
    with (data / "ph2" / "labels.csv").open() as handle:
        rows = sorted((r["image_id"], r["diagnosis"]) for r in csv.DictReader(handle))
    out += [Frame(i, "ph2", dx, data / "ph2" / "images" / f"{i}.jpg") for i, dx in rows]
    if limit is not None:
        out = [f for source in (*INTERNAL, *BESIDE) for f in [g for g in out if g.source == source][:limit]]
    return out


# -- 1. cache ---------------------------------------------------------------------------------------------------
def frame_record(pipeline, frame: Frame) -> dict:
    """One frame through the pipeline, plus the whole frame (test-time views and one view) and the grown window."""
    from edgeskin.image import read_image

    pixels = read_image(frame.path)
    result = pipeline(pixels)
    classifier = pipeline.classifier
    one = ("identity",)
    whole_tta = classifier.classify_many([pixels])[0][0].probabilities
    whole_one = classifier.classify_many([pixels], views=one)[0][0].probabilities
    row = {
        **asdict(frame),
        "path": str(frame.path),
        "size": [int(pixels.shape[1]), int(pixels.shape[0])],
        "outcome": outcome(result),
        "whole_tta": whole_tta.round(6).tolist(),
        "whole_one": whole_one.round(6).tolist(),
        "crop": None,
    }
    if result.lesions:
        top = result.lesions[0]
        grown = crop_with_margin(pixels, top.box, margin=GROWN_MARGIN, copy=False)[0]
        row |= {
            "crop": top.dx.probabilities.round(6).tolist(),
            "box": [float(v) for v in top.box],
            "crop_box": [int(v) for v in top.crop_box],
            "grown_one": classifier.classify_many([grown], views=one)[0][0].probabilities.round(6).tolist(),
        }
    return row


def build_cache(args: argparse.Namespace) -> dict:
    from edgeskin.tasks.pipeline import LesionPipeline

    overrides: dict = {"threads": args.threads, "cam": False, "context": None}
    if args.classifier:
        overrides["classifier"] = args.classifier
    if args.detector:
        overrides["detector"] = args.detector
    items = frames(args.data, args.split, args.limit)
    start = time.monotonic()
    with LesionPipeline.from_defaults(**overrides) as pipeline:
        labels = list(pipeline.dx_labels)
        size = [int(v) for v in pipeline.classifier.spec.input.size]
        rows = []
        for n, frame in enumerate(items, 1):
            rows.append(frame_record(pipeline, frame))
            if n % 20 == 0 or n == len(items):
                print(f"\r{n}/{len(items)} frames, {time.monotonic() - start:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    return {"labels": labels, "input_size": size, "rows": rows}


# -- 2. grid ----------------------------------------------------------------------------------------------------
def rules() -> list[ContextRule | None]:
    """Every candidate of the document; None is the pipeline without a context view."""
    out: list[ContextRule | None] = [None]
    for upsampling, area in itertools.product(UPSAMPLING, AREA):
        if math.isinf(upsampling) and math.isinf(area):
            continue
        for context, combination in itertools.product(CONTEXTS, COMBINATIONS):
            out.append(ContextRule(upsampling, area, context, combination))
    return out


def rule_name(rule: ContextRule | None) -> str:
    if rule is None:
        return "no context view"
    return f"u>{rule.upsampling:g} or f>{rule.area:g}, {rule.context}, {rule.combination}".replace(">inf", ">off")


def frame_probabilities(cache: dict, rows: Sequence[dict], rule: ContextRule | None) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's dx probabilities under ``rule`` (zeros without an answer) and whether the rule triggered."""
    mel = cache["labels"].index("mel")
    size = tuple(cache["input_size"])
    probs, fired = np.zeros((len(rows), len(cache["labels"]))), np.zeros(len(rows), bool)
    for i, row in enumerate(rows):
        if row["crop"] is None:
            continue
        probs[i] = row["crop"]
        if rule is not None:
            upsampling, area = context_measures(row["box"], row["crop_box"], row["size"], size)
            if rule.triggers(upsampling, area):
                context = np.asarray(row["whole_one"] if rule.context == "frame" else row["grown_one"])
                probs[i], fired[i] = combine_views(probs[i], context, rule.combination, mel), True
    return probs, fired


def melanoma_scores(cache: dict, rows: Sequence[dict], rule: ContextRule | None) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's melanoma probability under ``rule`` (0 without an answer) and whether the rule triggered."""
    probs, fired = frame_probabilities(cache, rows, rule)
    return probs[:, cache["labels"].index("mel")], fired


def triage(cache: dict, entry: dict, threshold: float) -> dict:
    """Per source: the share of frames referred and the malignant / melanoma frames referred, for the crop only,
    the chosen rule and the whole frame (test-time views), at the classifier's malignant threshold."""
    from edgeskin.labels import malignant_probability

    rule = None if entry["params"] is None else ContextRule(**entry["params"])
    labels = cache["labels"]
    out = {}
    for source in (*INTERNAL, *BESIDE):
        rows = [r for r in cache["rows"] if r["source"] == source]
        answered = np.array([r["crop"] is not None for r in rows])
        malignant = np.array([str(r["dx"]).lower() in MALIGNANT for r in rows])
        views = {
            "crop_only": frame_probabilities(cache, rows, None)[0],
            "chosen": frame_probabilities(cache, rows, rule)[0],
            "whole_frame": np.array([r["whole_tta"] for r in rows]),
        }
        out[source] = {}
        for name, probs in views.items():
            refer = malignant_probability(probs, labels) >= threshold
            refer &= answered if name != "whole_frame" else True
            out[source][name] = {
                "referred": round(float(refer.mean()), 4),
                "malignant_referred": round(float(refer[malignant].mean()), 4),
                "melanoma_referred": round(float(refer[truth(rows)].mean()), 4),
            }
    return out


def truth(rows: Sequence[dict]) -> np.ndarray:
    return np.array([str(r["dx"]).lower() in MELANOMA for r in rows])


def auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def grid(cache: dict) -> dict:
    """Per source: the references (whole frame, crop only) and every rule's AUC and trigger rate."""
    mel = cache["labels"].index("mel")
    out: dict = {"sources": {}, "rules": []}
    by_source = {s: [r for r in cache["rows"] if r["source"] == s] for s in (*INTERNAL, *BESIDE)}
    for source, rows in by_source.items():
        y = truth(rows)
        out["sources"][source] = {
            "frames": len(rows),
            "melanomas": int(y.sum()),
            "unanswered": sum(r["crop"] is None for r in rows),
            "whole_frame_auc": auc(y, np.array([r["whole_tta"][mel] for r in rows])),
            "whole_frame_one_view_auc": auc(y, np.array([r["whole_one"][mel] for r in rows])),
            "crop_only_auc": auc(y, melanoma_scores(cache, rows, None)[0]),
        }
    for rule in rules():
        entry: dict = {"rule": rule_name(rule), "params": None if rule is None else asdict(rule), "sources": {}}
        for source, rows in by_source.items():
            scores, fired = melanoma_scores(cache, rows, rule)
            entry["sources"][source] = {"auc": auc(truth(rows), scores), "trigger_rate": float(fired.mean())}
        internal = [entry["sources"][s] for s in INTERNAL]
        entry["mean_auc"] = float(np.mean([s["auc"] for s in internal]))
        entry["margins"] = {s: entry["sources"][s]["auc"] - out["sources"][s]["whole_frame_auc"] for s in INTERNAL}
        n = [out["sources"][s]["frames"] for s in INTERNAL]
        entry["internal_trigger_rate"] = float(np.average([s["trigger_rate"] for s in internal], weights=n))
        out["rules"].append(entry)
    return out


# -- 3. choose --------------------------------------------------------------------------------------------------
def choose(table: dict, slack: float = 0.01) -> tuple[dict, bool]:
    """The document's criterion: every internal source within ``slack`` of the whole frame, then the highest
    mean AUC (to three decimals), then fewer triggers, the frame context, mean/logit/max_mel. Returns the rule
    and whether it passed the first step (False: the best smallest margin)."""

    def tie_break(entry: dict) -> tuple:
        params = entry["params"] or {"context": "frame", "combination": "mean"}
        return (
            entry["internal_trigger_rate"],
            CONTEXTS.index(params["context"]),
            COMBINATIONS.index(params["combination"]),
        )

    passing = [e for e in table["rules"] if min(e["margins"].values()) >= -slack]
    if passing:
        return min(passing, key=lambda e: (-round(e["mean_auc"], 3), *tie_break(e))), True
    return max(table["rules"], key=lambda e: min(e["margins"].values())), False


# -- 4. interval ------------------------------------------------------------------------------------------------
def interval(cache: dict, entry: dict, resamples: int, seed: int) -> dict:
    """Per source: the chosen rule's AUC minus the whole-frame AUC, with a paired bootstrap 95% interval."""
    from scipy.stats import bootstrap
    from sklearn.metrics import roc_auc_score

    rule = None if entry["params"] is None else ContextRule(**entry["params"])
    mel = cache["labels"].index("mel")
    out = {}
    for source in (*INTERNAL, *BESIDE):
        rows = [r for r in cache["rows"] if r["source"] == source]
        y, chosen = truth(rows), melanoma_scores(cache, rows, rule)[0]
        whole = np.array([r["whole_tta"][mel] for r in rows])

        def difference(index: np.ndarray, y=y, chosen=chosen, whole=whole) -> float:
            index = index.astype(int)
            if y[index].all() or not y[index].any():
                return 0.0  # a resample with one class only (rare): no ranking to compare
            return roc_auc_score(y[index], chosen[index]) - roc_auc_score(y[index], whole[index])

        res = bootstrap(
            (np.arange(len(rows)),),
            difference,
            vectorized=False,
            n_resamples=resamples,
            method="percentile",
            random_state=np.random.default_rng(seed),
        )
        out[source] = {
            "difference": float(difference(np.arange(len(rows)))),
            "ci95": [float(res.confidence_interval.low), float(res.confidence_interval.high)],
        }
    return out


def print_report(table: dict, chosen: dict, passed: bool, ci: dict, referred: dict, top: int) -> None:
    for source, ref in table["sources"].items():
        print(
            f"{source:9s} frames {ref['frames']:5d}  melanomas {ref['melanomas']:4d}  unanswered {ref['unanswered']:3d}  "
            f"whole frame {ref['whole_frame_auc']:.4f} (one view {ref['whole_frame_one_view_auc']:.4f})  "
            f"crop only {ref['crop_only_auc']:.4f}"
        )
    ranked = sorted(table["rules"], key=lambda e: -e["mean_auc"])
    print(f"\nrules by internal mean melanoma AUC (top {top} of {len(ranked)}):")
    for e in ranked[:top]:
        cells = "  ".join(
            f"{s} {e['sources'][s]['auc']:.4f} ({e['sources'][s]['trigger_rate']:.0%})" for s in (*INTERNAL, *BESIDE)
        )
        print(f"  {e['rule']:38s} mean {e['mean_auc']:.4f}  {cells}")
    print(
        f"\nchosen: {chosen['rule']} ({'passes' if passed else 'FAILS'} the whole-frame - 0.01 limit on every source)"
    )
    for source, row in ci.items():
        print(
            f"  {source:9s} AUC - whole frame {row['difference']:+.4f}, 95% CI [{row['ci95'][0]:+.4f}, {row['ci95'][1]:+.4f}]"
        )
    print("referred at the classifier's malignant threshold (all frames / malignant / melanomas):")
    for source, block in referred.items():
        cells = "  ".join(
            f"{name} {r['referred']:.3f} / {r['malignant_referred']:.3f} / {r['melanoma_referred']:.3f}"
            for name, r in block.items()
        )
        print(f"  {source:9s} {cells}")


def classifier_threshold(classifier: str | None) -> float:
    """The classifier spec's malignant threshold (the shipped classifier's by default)."""
    from edgeskin.models import default_classifier_path
    from edgeskin.runtime.spec import load_spec

    path = Path(classifier) if classifier else default_classifier_path()
    return float(load_spec(path.with_suffix(".json")).malignant_threshold)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", help="classifier .tflite (default: the shipped one)")
    parser.add_argument("--detector", help="detector .tflite (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--split", type=Path, default=CLASSIFIER_SPLIT, help="the classifier's split.json")
    parser.add_argument("--cache", type=Path, help="per-frame outputs: read when it exists, else written")
    parser.add_argument("--limit", type=int, help="at most this many frames per source (a quick look)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--top", type=int, default=20, help="rules to print")
    parser.add_argument("--json", type=Path, help="write the grid, the choice and the intervals here")
    args = parser.parse_args(argv)

    if args.cache is not None and args.cache.is_file():
        cache = json.loads(args.cache.read_text())
    else:
        cache = build_cache(args)
        if args.cache is not None:
            args.cache.parent.mkdir(parents=True, exist_ok=True)
            args.cache.write_text(json.dumps(cache) + "\n")
    table = grid(cache)
    chosen, passed = choose(table)
    ci = interval(cache, chosen, args.resamples, seed=0)
    referred = triage(cache, chosen, classifier_threshold(args.classifier))
    print_report(table, chosen, passed, ci, referred, args.top)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        summary = {"chosen": chosen, "passed": passed, "intervals": ci, "referred": referred, **table}
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
