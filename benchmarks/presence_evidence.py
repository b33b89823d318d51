"""The frame's evidence verdict for boxes at or above the presence threshold (issue 29; docs/presence-evidence-rule.md).

For every frame of the lesion sets and of the non-lesion seeds, runs the pipeline as it is (the shipped models,
no CAM) and records its outcome (``benchmarks.unsure_band.record``) and, for a frame with an answer,
``edgeskin.core.evidence.lesion_evidence`` of its top lesion's box, with its verdict under ``EvidenceThresholds()``. Then
counts, per variant of the rule file (A: the scene verdict also at presence; B: both verdicts also at presence),
the lesion frames that would lose their answer and the non-lesion frames that would stay answered.

    python -m benchmarks.presence_evidence --json OUT.json [--seeds 0 1 2 3 4 5] [--no-test-split]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from benchmarks.unsure_band import DATA, MALIGNANT, MELANOMA, lesion_items, record

VARIANTS = {"A": ("scene",), "B": ("scene", "plain skin")}
CHOOSING_LESIONS = ("isic_heldout", "ham_val")
CHOOSING_SEEDS = ("seed 0", "seed 1", "seed 2")


def measure(pipeline, frame, **fields) -> dict:
    """The pipeline's record of ``frame``; for an answered frame also its top box's evidence and verdict."""
    from edgeskin.core.evidence import lesion_evidence
    from edgeskin.image import validate_frame

    result = pipeline(frame)
    row = record(result, **fields)
    if result.lesions:  # only an answered frame can lose its answer
        evidence = lesion_evidence(validate_frame(frame), result.lesions[0].box, pipeline.unsure_evidence.work_side)
        row["evidence"] = evidence.to_dict()
        row["verdict"] = evidence.verdict(pipeline.unsure_evidence)
    return row


def run_sets(pipeline, sets: dict[str, list]) -> dict[str, list[dict]]:
    out = {}
    for name, items in sets.items():
        out[name] = [measure(pipeline, load(), id=image_id, dx=dx) for image_id, dx, load in items]
        print(f"{name}: {len(items)} frames", file=sys.stderr)
    return out


def run_seeds(pipeline, seeds: Iterable[int]) -> dict[str, list[dict]]:
    from benchmarks.detector_presence import non_lesion_frames

    out = {}
    for seed in seeds:
        out[f"seed {seed}"] = [measure(pipeline, f.pixels, id=f.name, kind=f.source) for f in non_lesion_frames(seed)]
        print(f"non-lesion seed {seed}", file=sys.stderr)
    return out


def loses(row: dict, variant: str) -> bool:
    """Would this frame, answered at presence now, lose its answer under ``variant``?"""
    return row["outcome"] == "lesion" and row.get("verdict") in VARIANTS[variant]


def answered(row: dict, variant: str | None) -> bool:
    return row["outcome"].startswith("lesion") and not (variant and loses(row, variant))


def lesion_counts(rows: Sequence[dict], variant: str | None) -> dict:
    def part(dxs):
        return [r for r in rows if dxs is None or str(r["dx"]).lower() in dxs]

    return {
        group: {"n": len(part(dxs)), "unanswered": sum(not answered(r, variant) for r in part(dxs))}
        for group, dxs in (("all", None), ("melanoma", MELANOMA), ("malignant", MALIGNANT))
    }


def non_lesion_counts(rows: Sequence[dict], variant: str | None) -> dict:
    kinds = sorted({r["kind"] for r in rows})
    return {
        k: {
            "n": sum(r["kind"] == k for r in rows),
            "answered": sum(r["kind"] == k and answered(r, variant) for r in rows),
        }
        for k in kinds
    }


def summarise(records: dict) -> dict:
    out = {}
    for variant in (None, *VARIANTS):
        out[variant or "now"] = {
            "lesions": {name: lesion_counts(rows, variant) for name, rows in records["lesions"].items()},
            "non_lesion": {seed: non_lesion_counts(rows, variant) for seed, rows in records["non_lesion"].items()},
        }
    return out


def verdict(summary: dict) -> dict:
    """The rule of docs/presence-evidence-rule.md on the choosing sets, per variant."""
    now = summary["now"]
    out = {}
    for variant in VARIANTS:
        s = summary[variant]
        lost_malignant = sum(
            s["lesions"][n]["malignant"]["unanswered"] - now["lesions"][n]["malignant"]["unanswered"]
            for n in CHOOSING_LESIONS
        )
        lost_all = sum(
            s["lesions"][n]["all"]["unanswered"] - now["lesions"][n]["all"]["unanswered"] for n in CHOOSING_LESIONS
        )
        n_all = sum(s["lesions"][n]["all"]["n"] for n in CHOOSING_LESIONS)
        kinds = sorted({k for seed in CHOOSING_SEEDS for k in s["non_lesion"][seed]})
        change = {
            k: sum(
                s["non_lesion"][seed][k]["answered"] - now["non_lesion"][seed][k]["answered"] for seed in CHOOSING_SEEDS
            )
            for k in kinds
        }
        passes = {
            "1_no_malignant_lost": lost_malignant == 0,
            "2_at_most_0.2pct_lost": lost_all <= 0.002 * n_all,
            "3_non_lesion_falls": any(v < 0 for v in change.values()) and all(v <= 0 for v in change.values()),
        }
        out[variant] = {"malignant_lost": lost_malignant, "lesions_lost": lost_all, "n_lesions": n_all,
                        "non_lesion_change": change, "passes": passes, "adopt": all(passes.values())}  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--no-test-split", action="store_true", help="leave out the detector test split")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)

    from edgeskin.tasks.pipeline import LesionPipeline

    start = time.monotonic()
    sets = lesion_items(args.data)
    if not args.no_test_split:
        from benchmarks.detector_test import test_sets
        from benchmarks.detector_test_split import SPLIT_FILE

        for name, rows in test_sets(json.loads(SPLIT_FILE.read_text()), args.data)[0].items():
            sets[name] = [(i, dx, (lambda load=load: load()[0])) for i, dx, load in rows]  # image, not its boxes
    with LesionPipeline.from_defaults(threads=args.threads, cam=False) as pipeline:
        records = {"non_lesion": run_seeds(pipeline, args.seeds), "lesions": run_sets(pipeline, sets)}
    summary = summarise(records)
    result = {"summary": summary, "rule": verdict(summary), "seconds": round(time.monotonic() - start, 1)}
    print(json.dumps(result["rule"], indent=1))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**result, "records": records}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
