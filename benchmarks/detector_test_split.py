"""The detector test split (issue 29, part 4): real dermoscopy that no detector run trained on or was chosen on.

Written once to ``benchmarks/detector_test_split.json`` and never changed. The rule, fixed before the split was
drawn (it is also recorded in the file):

1. **Excluded** (``excluded`` in the file, recomputed here from the records, not from memory):

   * every HAM10000 / ISIC 2017-2018 Task 1 image a mask-recipe detector trained on: the picks of
     ``training.detector_masks.draw_items`` for the data config of each run of the shipped chain
     (``training/configs/detector*.yaml``, seed and counts as committed; continued6 reused continued5's dataset);
   * every HAM10000 image the first detector's builder (thresholded HAM boxes, ``detector-classic.yaml``) read:
     the first ``seen`` images of its seeded order, a superset of the 1,650 it kept;
   * the sets detectors and their thresholds were chosen on: the PH2 validation half (and the PH2 training
     half, trained on), the ISIC held-out third and the HAM10000 validation images of
     ``training/runs/detector/isic_holdout.json`` (ultralytics' ``best.pt`` choice, ``detector_presence
     --choose-on``, each continuation's ship rule, the unsure-band evidence limits);
   * the images the quality gate's defaults were chosen on (``benchmarks.quality_thresholds`` part ``choose``,
     300 per source, seed 0), since the pipeline figures pass through the gate;
   * every image of a lesion (HAM10000 ``lesion_id``, ISIC 2019 metadata ``lesion_id``) with an excluded image.

2. **Eligible**: the other HAM10000 and ISIC Task 1 images with a non-empty expert mask (no PH2 image is left).
3. **Drawn**: every eligible ISIC image; every eligible image whose mask covers more than half of the frame
   ("large"); and, with ``numpy.random.default_rng(29)``, eligible HAM10000 images of the classifier's validation
   split (``training/runs/classifier/split.json``) until 400 HAM images are outside the classifier's training set.
   Images the classifier trained on are listed in ``classifier_trained``: detector figures use them, the
   pipeline's AUC figures leave them out.

    python -m benchmarks.detector_test_split --out benchmarks/detector_test_split.json   # once
    python -m benchmarks.detector_test_split --check benchmarks/detector_test_split.json  # recompute and compare
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
SPLIT_FILE = REPO / "benchmarks" / "detector_test_split.json"
CONFIGS = REPO / "training" / "configs"
# The data configs of every mask-recipe detector run (training/runs/detector-masks/*): base and continued share
# detector.yaml's draws with detector-continue.yaml; continued6 trained on continued5's dataset.
MASK_RECIPES = (
    "detector.yaml",
    "detector-continue.yaml",
    "detector-continue2.yaml",
    "detector-continue3.yaml",
    "detector-continue4.yaml",
    "detector-continue5.yaml",
    "detector-continue6-384.yaml",
    "detector-composites-draw.yaml",
)
CLASSIC_RECIPE = "detector-classic.yaml"
CLASSIFIER_SPLIT = REPO / "training" / "runs" / "classifier" / "split.json"
SEED = 29
HAM_OUTSIDE_CLASSIFIER = 400
LARGE_SHARE = 0.5
SOURCES = ("ham10000", "isic2018")
RULE = (
    "Excluded: every HAM10000/ISIC Task 1 image any mask-recipe detector run trained on (training.detector_masks."
    "draw_items for each committed data config), every HAM10000 image the first (classic) detector's builder read, "
    "the sets detectors and thresholds were chosen on (PH2 both halves, the ISIC held-out third and the HAM10000 "
    "validation images of training/runs/detector/isic_holdout.json), the quality gate's 'choose' images (300 per "
    "source, seed 0), and every image of a lesion with an excluded image. Eligible: the other HAM10000 and ISIC "
    "Task 1 images with a non-empty expert mask. Drawn: every eligible ISIC image, every eligible image whose mask "
    "covers more than half of the frame, and eligible HAM10000 images of the classifier's validation split drawn "
    "with numpy.random.default_rng(29) until 400 HAM images lie outside the classifier's training set. "
    "classifier_trained lists the drawn images the classifier trained on: the pipeline's AUC leaves them out."
)


def id_checksum(ids_by_source: dict[str, Sequence[str]]) -> str:
    """SHA-256 of the sorted ids of every source, one per line (``source/id``)."""
    lines = sorted(f"{source}/{i}" for source, ids in ids_by_source.items() for i in ids)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


# -- what the detectors touched -----------------------------------------------------------------------------
def mask_recipe_draws(config_name: str) -> dict[str, set[str]]:
    """``{source: ids}`` a mask-recipe data config trains on (HAM, ISIC; PH2 is excluded as a whole)."""
    from training.detector_masks import ISIC_HOLDOUT, draw_items, heldout_sets, load_mask_dataset_config

    config = load_mask_dataset_config(CONFIGS / config_name)
    sets = heldout_sets(config, REPO / "training" / "runs" / "detector" / "ph2_split.json", ISIC_HOLDOUT)
    drawn = draw_items(sets, config, np.random.default_rng(config.seed))
    return {"ham10000": {i.image_id for i in drawn.ham_train}, "isic2018": {i.image_id for i in drawn.isic_train}}


def classic_seen(work: Path) -> dict:
    """The HAM10000 ids the classic detector's builder read (its stages 1-2 rerun; PH2 files go to ``work``)."""
    import yaml

    from training.detector_data import (
        DatasetConfig,
        derive_ham_samples,
        ham_box_size_correction,
        load_ph2,
        measure_labeller,
        split_ph2,
        write_ph2_train,
    )

    config = DatasetConfig()
    for key, value in (yaml.safe_load((CONFIGS / CLASSIC_RECIPE).read_text())["data"]).items():
        setattr(config, key, tuple(value) if isinstance(value, list) else value)
    for split in ("train", "val"):
        for kind in ("images", "labels"):
            (work / kind / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    items = load_ph2(config.ph2_root)
    split = split_ph2(items, n_val=config.ph2_val, seed=config.split_seed)
    train_items = [it for it in items if it.image_id in set(split["train"])]
    write_ph2_train(work, train_items, config, rng, progress=False)
    # derive_ham_samples draws its order first from this state: keep it to name the images it read.
    order_rng = np.random.default_rng()
    order_rng.bit_generator.state = rng.bit_generator.state
    correction = ham_box_size_correction(measure_labeller(train_items, config.ham_width), config.correct_ham_box_size)
    derivation = derive_ham_samples(config, correction, rng, progress=False)
    paths = sorted(Path(config.ham_images).glob("*.jpg"))
    order = order_rng.permutation(len(paths))
    seen = [paths[i].stem for i in order[: derivation.counts["seen"]]]
    kept = {s.image_id for s in derivation.samples}
    if not kept <= set(seen):
        raise RuntimeError("classic detector: the kept HAM images are not a prefix of its order; the rerun drifted")
    return {"counts": derivation.counts, "seen": seen}


def selection_ids() -> dict[str, set[str]]:
    """The committed sets detectors and their thresholds were chosen on, by source."""
    holdout = json.loads((REPO / "training" / "runs" / "detector" / "isic_holdout.json").read_text())
    ph2 = json.loads((REPO / "training" / "runs" / "detector" / "ph2_split.json").read_text())
    return {"ham10000": set(holdout["ham_val"]), "isic2018": set(holdout["heldout"]), "ph2": set(ph2["val"])}


def quality_choose_ids(data: Path) -> dict[str, set[str]]:
    """The images the quality gate's defaults were chosen on (``benchmarks.quality_thresholds``, part choose)."""
    from benchmarks.quality_thresholds import sample, source_images

    pools = source_images(data)
    names = {"ham10000": "ham10000", "isic2018_task1": "isic2018"}
    return {names[s]: {im.image_id for im in sample(pools[s], "choose", 300, 0)} for s in names}


# -- the split ----------------------------------------------------------------------------------------------
def lesion_groups(data: Path) -> dict[str, str]:
    """``{image_id: lesion id}`` from the HAM10000 and ISIC 2019 metadata (the image id when unknown)."""
    from edgeskin.datasets import read_isic2019_lesion_ids
    from training.detector_masks import ham_labels

    groups = dict(ham_labels(data / "ham10000" / "HAM10000_metadata.csv")[1])
    metadata = data / "isic_ground_truth" / "ISIC_2019_Training_Metadata.csv"
    if metadata.is_file():
        groups.update(read_isic2019_lesion_ids(metadata))
    return groups


def mask_share(mask_path: str) -> float:
    from training.detector_data import read_mask

    return float(read_mask(mask_path).mean())


def draw_split(data: Path, excluded: dict[str, dict[str, list[str]]], classifier_split: dict) -> dict:
    """Apply the rule (module docstring) to the images of ``data`` given the ``excluded`` ids."""
    from training.detector_masks import MaskDatasetConfig, heldout_sets

    sets = heldout_sets(MaskDatasetConfig(data_root=str(data)), REPO / "training/runs/detector/ph2_split.json")
    items = sets["train"]["ham"] + sets["ham_val"] + sets["train"]["isic"] + sets["isic_heldout"]
    groups = lesion_groups(data)
    out_ids = {i for by_source in excluded.values() for ids in by_source.values() for i in ids}
    out_groups = {groups.get(i, i) for i in out_ids}
    eligible = [
        it for it in items if it.image_id not in out_ids and groups.get(it.image_id, it.image_id) not in out_groups
    ]
    shares = {it.image_id: mask_share(it.mask_path) for it in eligible}
    eligible = [it for it in eligible if shares[it.image_id] > 0]
    trained = set(classifier_split["train"])
    chosen = {it.image_id for it in eligible if it.source == "isic2018" or shares[it.image_id] > LARGE_SHARE}
    ham_pool = sorted(
        it.image_id for it in eligible if it.source == "ham10000" and it.image_id in set(classifier_split["val"])
    )
    need = HAM_OUTSIDE_CLASSIFIER - sum(1 for i in chosen if i in set(ham_pool))
    rng = np.random.default_rng(SEED)
    rest = [i for i in ham_pool if i not in chosen]
    chosen |= {rest[k] for k in rng.permutation(len(rest))[: max(0, need)]}
    ids = {s: sorted(it.image_id for it in eligible if it.source == s and it.image_id in chosen) for s in SOURCES}
    return {
        "ids": ids,
        "large": {s: sorted(i for i in ids[s] if shares[i] > LARGE_SHARE) for s in SOURCES},
        "classifier_trained": {s: sorted(i for i in ids[s] if i in trained) for s in SOURCES},
        "eligible_counts": {s: sum(it.source == s for it in eligible) for s in SOURCES},
    }


def excluded_ids(data: Path, work: Path) -> tuple[dict[str, dict[str, list[str]]], dict]:
    """Every id excluded by the rule, per reason and source, and the classic builder's counts."""
    trained: dict[str, set[str]] = {s: set() for s in SOURCES}
    for name in MASK_RECIPES:
        for source, ids in mask_recipe_draws(name).items():
            trained[source] |= ids
    classic = classic_seen(work)
    selection = selection_ids()
    excluded = {
        "detector_trained": {s: sorted(v) for s, v in trained.items()},
        "classic_detector_read": {"ham10000": sorted(classic["seen"])},
        "detector_selection": {s: sorted(v) for s, v in selection.items() if s != "ph2"},
        "quality_gate_choose": {s: sorted(v) for s, v in quality_choose_ids(data).items()},
    }
    return excluded, classic["counts"]


def build(data: Path, work: Path, date: str | None = None) -> dict:
    excluded, classic_counts = excluded_ids(data, work)
    split = draw_split(data, excluded, json.loads(CLASSIFIER_SPLIT.read_text()))
    return {
        "rule": RULE,
        "seed": SEED,
        "date": date or datetime.date.today().isoformat(),
        "sources": {"ham10000": "ham10000/images/<id>.jpg", "isic2018": "isic2018_task1/images/<id>.jpg"},
        "counts": {s: len(v) for s, v in split["ids"].items()},
        "large_counts": {s: len(v) for s, v in split["large"].items()},
        "classifier_trained_counts": {s: len(v) for s, v in split["classifier_trained"].items()},
        "eligible_counts": split["eligible_counts"],
        "sha256": id_checksum(split["ids"]),
        "ids": split["ids"],
        "large": split["large"],
        "classifier_trained": split["classifier_trained"],
        "excluded_counts": {k: {s: len(v) for s, v in by.items()} for k, by in excluded.items()},
        "classic_detector_builder_counts": classic_counts,
        "excluded": excluded,
    }


def compare(
    recorded: dict, rebuilt: dict, keys: Iterable[str] = ("ids", "large", "classifier_trained", "excluded")
) -> list[str]:
    return [key for key in keys if recorded.get(key) != rebuilt.get(key)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", type=Path, help="write the split here (refuses to overwrite)")
    mode.add_argument("--check", type=Path, help="recompute the split and compare it with this file")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/edgeskin-detector-test-split"), help="scratch folder")
    args = parser.parse_args(argv)
    if args.out and args.out.exists():
        parser.error(f"--out: {args.out} exists; the test split is written once and never changed")
    if not (args.data / "ham10000").is_dir():
        parser.error(f"--data: expected the shared data folder with ham10000/, got {args.data}")
    recorded = json.loads(args.check.read_text()) if args.check else None
    split = build(args.data, args.work, recorded["date"] if recorded else None)
    print(f"counts {split['counts']}, large {split['large_counts']}, classifier-trained "
          f"{split['classifier_trained_counts']}, eligible {split['eligible_counts']}, sha256 {split['sha256']}")  # fmt: skip
    if recorded is not None:
        differ = compare(recorded, split)
        print("matches the recorded split" if not differ else f"differs from the recorded split in {differ}")
        return 1 if differ else 0
    args.out.write_text(json.dumps(split, indent=1) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
