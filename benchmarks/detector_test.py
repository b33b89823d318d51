"""The detector and the pipeline on the detector test split (issue 29, parts 4 and 2), beside the validation sets.

Sets: the detector's validation sets (``benchmarks.detector_presence.lesion_sets``: the PH2 validation half, the
ISIC held-out third, the HAM10000 validation images), all chosen on; and the test split of
``benchmarks/detector_test_split.json`` per source (``test_ham10000``, ``test_isic2018``), chosen on by nothing.
Images are read as the validation sets are (HAM10000 back to 4:3 at 320 px, boxes from the expert masks).

Per set, with the shipped models unless ``--detector`` / ``--classifier`` say otherwise:

* detector (``detector_presence.measure`` / ``breakdown`` at the pipeline's presence and unsure thresholds):
  reported hits at IoU >= 0.5 (reported and hitting, over all images), top-box mean IoU, found (top score at or
  above the unsure floor) and reported rates;
* lesions whose mask covers more than half of the frame: count, found rate, top-score quantiles, how many score
  below the unsure floor, in the unsure band and at or above presence;
* pipeline (``benchmarks.unsure_band.record`` / ``lesion_summary``): melanomas and lesion frames without an answer;
  melanoma AUC of the pipeline (the top lesion's melanoma probability; a frame without an answer scores 0) and
  of the whole frame classified alone, on the labelled images the classifier did not train on (its split's
  ``train`` list: this leaves out most HAM10000 validation images and the test split's ``classifier_trained``), with a paired
  bootstrap 95% interval of their difference (``scipy.stats.bootstrap``, stratified by class).

    python -m benchmarks.detector_test --json OUT.json [--markdown OUT.md] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from benchmarks.detector_test_split import CLASSIFIER_SPLIT, DATA, SPLIT_FILE
from benchmarks.unsure_band import MELANOMA, lesion_summary, record

LARGE_SHARE = 0.5
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 1.0)
LoadRow = tuple[str, str, Callable[[], tuple[np.ndarray, list]]]


# -- images -------------------------------------------------------------------------------------------------
def test_sets(split: dict, data: Path) -> tuple[dict[str, list[LoadRow]], dict[str, float]]:
    """``({"test_<source>": [(id, dx, load)]}, {id: mask share})`` of the test split."""
    from training.detector_masks import MaskDatasetConfig, heldout_sets

    config = MaskDatasetConfig(data_root=str(data))
    sets = heldout_sets(config, None, None)
    items = {it.image_id: it for it in sets["train"]["ham"] + sets["ham_val"] + sets["train"]["isic"]}
    items.update({it.image_id: it for it in sets["isic_heldout"]})
    missing = [i for ids in split["ids"].values() for i in ids if i not in items]
    if missing:
        raise SystemExit(f"test split: {len(missing)} ids have no image with a mask under {data}, e.g. {missing[0]}")
    out = {f"test_{source}": [_row(items[i], config) for i in ids] for source, ids in split["ids"].items()}
    return out, {i: _share(items[i]) for ids in split["ids"].values() for i in ids}


def _row(item, config) -> LoadRow:
    from training.detector_masks import box_from_mask, read_pair

    def load():
        image, mask = read_pair(item, config.ham_width if item.source == "ham10000" else None)
        return image, [box_from_mask(mask)]

    return item.image_id, item.dx, load


def _share(item) -> float:
    from training.detector_data import read_mask

    return float(read_mask(item.mask_path).mean())


def validation_shares() -> dict[str, float]:
    from benchmarks.detector_presence import PH2_SPLIT
    from training.detector_masks import MaskDatasetConfig, heldout_sets

    sets = heldout_sets(MaskDatasetConfig(), PH2_SPLIT)
    return {it.image_id: _share(it) for name in ("ph2_val", "isic_heldout", "ham_val") for it in sets[name]}


# -- figures ------------------------------------------------------------------------------------------------
def large_lesions(records: Sequence[dict], shares: dict[str, float], presence: float, unsure: float) -> dict:
    """Found rate and top-score distribution of the lesions whose mask covers more than half of the frame."""
    scores = np.array([r["score"] for r in records if shares.get(r["id"], 0.0) > LARGE_SHARE])
    if not len(scores):
        return {"n": 0}
    return {
        "n": int(len(scores)),
        "found_rate": round(float((scores >= unsure).mean()), 4),
        "below_unsure": int((scores < unsure).sum()),
        "unsure_band": int(((scores >= unsure) & (scores < presence)).sum()),
        "at_presence": int((scores >= presence).sum()),
        "score_quantiles": {str(q): round(float(np.quantile(scores, q)), 4) for q in QUANTILES},
    }


def auc_difference(y: np.ndarray, pipeline: np.ndarray, whole: np.ndarray, seed: int = 0) -> dict:
    """Melanoma AUCs of both scores and a paired bootstrap 95% interval of pipeline minus whole frame."""
    from scipy.stats import bootstrap
    from sklearn.metrics import roc_auc_score

    positives = int(y.sum())
    out: dict = {"n": int(len(y)), "melanomas": positives}
    if positives == 0 or positives == len(y):
        return out
    out["pipeline_auc"] = round(float(roc_auc_score(y, pipeline)), 4)
    out["whole_frame_auc"] = round(float(roc_auc_score(y, whole)), 4)
    out["difference"] = round(out["pipeline_auc"] - out["whole_frame_auc"], 4)
    if min(positives, len(y) - positives) < 5:
        out["interval"] = None
        out["interval_note"] = "fewer than 5 melanomas or 5 others: no interval"
        return out

    # Resampled within melanomas and within the others (indices, so each image keeps both of its scores): every
    # resample has both classes and the same class counts, as the AUC needs.
    positives_at, others_at = np.flatnonzero(y == 1), np.flatnonzero(y == 0)

    def statistic(pos, neg):
        rows = np.r_[positives_at[pos.astype(int)], others_at[neg.astype(int)]]
        return roc_auc_score(y[rows], pipeline[rows]) - roc_auc_score(y[rows], whole[rows])

    result = bootstrap(
        (np.arange(len(positives_at)), np.arange(len(others_at))), statistic, vectorized=False, n_resamples=2000,
        method="percentile", random_state=np.random.default_rng(seed),
    )  # fmt: skip
    low, high = result.confidence_interval
    out["interval"] = [round(float(low), 4), round(float(high), 4)]
    return out


def pipeline_figures(rows: Sequence[dict], exclude: set[str]) -> dict:
    """Unanswered melanomas and lesion frames (all images), and the AUCs on the labelled, classifier-unseen ones."""
    summary = lesion_summary(rows)
    unanswered = {k: v["n"] - v["lesion"] - v["lesion_unsure"] for k, v in summary.items() if k != "malignant"}
    return {
        "outcomes": summary,
        "melanomas_unanswered": unanswered["melanoma"],
        "frames_unanswered": unanswered["all"],
        "frames_unanswered_rate": round(unanswered["all"] / max(1, summary["all"]["n"]), 4),
        "auc": melanoma_aucs([r for r in rows if r["id"] not in exclude]),
        "auc_with_classifier_trained": melanoma_aucs(rows),
    }


def melanoma_aucs(rows: Sequence[dict]) -> dict:
    """:func:`auc_difference` on the labelled ``rows``; a frame without an answer scores 0 for the pipeline."""
    labelled = [r for r in rows if r["dx"]]
    y = np.array([str(r["dx"]).lower() in MELANOMA for r in labelled], dtype=int)
    pipe = np.array([r["mel"] if r["outcome"].startswith("lesion") else 0.0 for r in labelled])
    return auc_difference(y, pipe, np.array([r["whole_mel"] for r in labelled]))


def melanoma_probability(result) -> float:
    if not result.lesions:
        return 0.0
    dx = result.lesions[0].dx
    return float(sum(p for label, p in zip(dx.labels, dx.probabilities, strict=True) if label in MELANOMA))


def run_pipelines(sets: dict[str, list[LoadRow]], args: argparse.Namespace) -> dict[str, list[dict]]:
    from edgeskin.tasks.pipeline import LesionPipeline

    overrides: dict = {"threads": args.threads, "cam": False}
    if args.classifier:
        overrides["classifier"] = args.classifier
    detector = {"detector": args.detector} if args.detector else {}
    out: dict[str, list[dict]] = {}
    with (
        LesionPipeline.from_defaults(**overrides, **detector) as pipe,
        LesionPipeline.from_defaults(**overrides, detector=None) as whole,
    ):
        for name, rows in sets.items():
            out[name] = []
            for n, (image_id, dx, load) in enumerate(rows, 1):
                image = load()[0]
                result = pipe(image)
                fields = {"id": image_id, "dx": dx, "mel": round(melanoma_probability(result), 6)}
                out[name].append(record(result, **fields, whole_mel=round(melanoma_probability(whole(image)), 6)))
                print(f"\rpipeline {name}: {n}/{len(rows)}", end="", file=sys.stderr)
            print(file=sys.stderr)
    return out


def thresholds(detector: str | None) -> tuple[float, float]:
    """The presence and unsure thresholds the pipeline uses with this detector (its spec's)."""
    from edgeskin.tasks.pipeline import LesionPipeline

    with LesionPipeline.from_defaults(cam=False, **({"detector": detector} if detector else {})) as pipe:
        return float(pipe.min_confidence), float(pipe.unsure_confidence)


# -- report -------------------------------------------------------------------------------------------------
DETECTOR_KEYS = ("n", "reported_hit_iou50", "top_mean_iou", "top_iou50", "no_lesion_found_rate")


def detector_figures(records: Sequence[dict], presence: float, unsure: float) -> dict:
    """``detector_presence.breakdown``'s figures of one set: reported hits, top-box IoU, found and reported rates."""
    from benchmarks.detector_presence import breakdown

    if not records:
        return {"n": 0}
    figures = breakdown({"set": list(records)}, presence, unsure)["set"]["all"]
    block = {k: figures[k] for k in DETECTOR_KEYS}
    block["found_rate"] = round(1.0 - block.pop("no_lesion_found_rate"), 4)
    block["reported_rate"] = round(figures["reported"] / max(1, block["n"]), 4)
    return block


def summarise(records: dict, rows: dict, shares: dict, exclude: set[str], presence: float, unsure: float) -> dict:
    """Per set: the detector's figures (all images, and apart by mask share), the large lesions, the pipeline."""
    out = {}
    for name, recs in records.items():
        small = [r for r in recs if shares.get(r["id"], 0.0) <= LARGE_SHARE]
        large = [r for r in recs if shares.get(r["id"], 0.0) > LARGE_SHARE]
        out[name] = {
            "detector": detector_figures(recs, presence, unsure),
            "detector_by_size": {
                "mask_up_to_half": detector_figures(small, presence, unsure),
                "mask_over_half": detector_figures(large, presence, unsure),
            },
            "large": large_lesions(recs, shares, presence, unsure),
            "pipeline": pipeline_figures(rows[name], exclude) if name in rows else None,
        }
    return out


def markdown(summary: dict, presence: float, unsure: float, split: dict) -> str:
    lines = [
        "# Detector test split: the shipped detector and pipeline beside the validation sets",
        "",
        f"`python -m benchmarks.detector_test` on `benchmarks/detector_test_split.json` (sha256 "
        f"`{split['sha256'][:16]}…`, drawn {split['date']}); thresholds presence {presence} / unsure {unsure}. "
        "Validation sets were chosen on; the test sets were not.",
        "",
        "| test source | images | mask > half the frame | classifier trained on | eligible | excluded images (trained / "
        "classic builder read / chosen on / quality gate chose on) |",
        "|---|---|---|---|---|---|",
        *(
            f"| {s} | {split['counts'][s]} | {split['large_counts'][s]} | {split['classifier_trained_counts'][s]} | "
            f"{split['eligible_counts'][s]} | "
            + " / ".join(str(split["excluded_counts"][k].get(s, 0)) for k in split["excluded_counts"])
            + " |"
            for s in split["counts"]
        ),
        "",
        "Detector (top box; found: top score ≥ unsure; reported: ≥ presence; reported hit: reported and IoU ≥ 0.5):",
        "",
        "| set | n | reported hit IoU≥0.5 | top-box mean IoU | found | reported |",
        "|---|---|---|---|---|---|",
    ]
    for name, block in summary.items():
        parts = {"": block["detector"], ", mask ≤ half": block["detector_by_size"]["mask_up_to_half"],
                 ", mask > half": block["detector_by_size"]["mask_over_half"]}  # fmt: skip
        for suffix, d in parts.items():
            if d["n"]:
                lines.append(f"| {name}{suffix} | {d['n']} | {d['reported_hit_iou50']:.1%} | {d['top_mean_iou']:.4f} | "
                             f"{d['found_rate']:.1%} | {d['reported_rate']:.1%} |")  # fmt: skip
    lines += ["", "Lesions whose mask covers more than half of the frame (top detector score):", "",
              "| set | n | found | < unsure | unsure band | ≥ presence | min / 5% / 25% / median / 75% / max |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, block in summary.items():
        g = block["large"]
        if not g["n"]:
            lines.append(f"| {name} | 0 | | | | | |")
            continue
        q = " / ".join(f"{v:.2f}" for v in g["score_quantiles"].values())
        lines.append(f"| {name} | {g['n']} | {g['found_rate']:.1%} | {g['below_unsure']} | {g['unsure_band']} | "
                     f"{g['at_presence']} | {q} |")  # fmt: skip
    lines += ["", "Pipeline (melanoma AUC on the labelled images the classifier did not train on; a frame without an "
              "answer scores 0; paired bootstrap 95% interval of the difference, stratified by class, 2,000 resamples):", "",
              "| set | melanomas unanswered | frames unanswered | AUC n (mel) | pipeline AUC | whole-frame AUC | "
              "difference [95% CI] |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, block in summary.items():
        p = block["pipeline"]
        if p is None:
            continue
        a, mel = p["auc"], p["outcomes"]["melanoma"]["n"]
        diff = _difference(a)
        lines.append(f"| {name} | {p['melanomas_unanswered']} of {mel} | {p['frames_unanswered']} of "
                     f"{p['outcomes']['all']['n']} ({p['frames_unanswered_rate']:.1%}) | {a['n']} ({a['melanomas']}) | "
                     f"{a.get('pipeline_auc', '')} | {a.get('whole_frame_auc', '')} | {diff} |")  # fmt: skip
    lines += ["", "The same AUCs on every labelled image, the classifier's training images included (not a fair test of "
              "the classifier; shown for the sets where it trained on most images):", "",
              "| set | AUC n (mel) | pipeline AUC | whole-frame AUC | difference [95% CI] |", "|---|---|---|---|---|"]  # fmt: skip
    for name, block in summary.items():
        if block["pipeline"] is not None:
            a = block["pipeline"]["auc_with_classifier_trained"]
            lines.append(f"| {name} | {a['n']} ({a['melanomas']}) | {a.get('pipeline_auc', '')} | "
                         f"{a.get('whole_frame_auc', '')} | {_difference(a)} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _difference(auc: dict) -> str:
    if "difference" not in auc:
        return ""
    ci = auc.get("interval")
    return f"{auc['difference']:+.4f}" + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else " (no interval: < 5 melanomas)")


def measure_all(sets: dict[str, list[LoadRow]], args: argparse.Namespace) -> tuple[dict, dict, float, float]:
    """The detector's top-box records and the pipeline's records of every set, and the thresholds used."""
    from benchmarks.detector_presence import measure, tflite_predictor
    from edgeskin.models import default_detector_path

    presence, unsure = thresholds(args.detector)
    predict, _ = tflite_predictor(args.detector or default_detector_path(), args.threads)
    records = measure(predict, sets, [])
    records.pop("non_lesion")
    return records, run_pipelines(sets, args), presence, unsure


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, required=True, help="write the summary and every record here")
    parser.add_argument("--markdown", type=Path, help="write the Markdown summary here")
    parser.add_argument("--split", type=Path, default=SPLIT_FILE)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--detector", help="detector .tflite (default: the shipped one)")
    parser.add_argument("--classifier", help="classifier .tflite (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, help="only the first N images of each set (a quick look, not a result)")
    parser.add_argument("--skip-validation", action="store_true", help="only the test split")
    parser.add_argument("--records", type=Path, help="summarise the records of an earlier --json instead of running")
    args = parser.parse_args(argv)
    if not args.split.is_file():
        parser.error(f"--split: no such file {args.split}")
    if not (args.data / "ham10000").is_dir():
        parser.error(f"--data: expected the shared data folder with ham10000/, got {args.data}")
    from benchmarks.detector_presence import lesion_sets

    start = time.monotonic()
    split = json.loads(args.split.read_text())
    sets, shares = test_sets(split, args.data)
    if not args.skip_validation:
        sets = {**lesion_sets(None), **sets}
        shares.update(validation_shares())
    if args.limit:
        sets = {name: rows[: args.limit] for name, rows in sets.items()}
    if args.records:
        earlier = json.loads(args.records.read_text())
        records, rows = earlier["records"]["detector"], earlier["records"]["pipeline"]
        presence, unsure = earlier["thresholds"]["presence"], earlier["thresholds"]["unsure"]
    else:
        records, rows, presence, unsure = measure_all(sets, args)
    exclude = set(json.loads(CLASSIFIER_SPLIT.read_text())["train"])  # the shipped classifier's training images
    summary = summarise(records, rows, shares, exclude, presence, unsure)
    document = {
        "split_sha256": split["sha256"],
        "thresholds": {"presence": presence, "unsure": unsure},
        "seconds": round(time.monotonic() - start, 1),
        "summary": summary,
        "records": {"detector": records, "pipeline": rows},
        "mask_shares": {i: round(v, 4) for i, v in shares.items()},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=1) + "\n")
    text = markdown(summary, presence, unsure, split)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
