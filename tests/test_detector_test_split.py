"""benchmarks/detector_test_split.json: the detector test split's integrity (no ../shared needed), its rebuild
from the records (with ../shared), and the report's figures on small tables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from benchmarks.detector_test import auc_difference, large_lesions, pipeline_figures
from benchmarks.detector_test_split import (
    CLASSIFIER_SPLIT,
    DATA,
    SPLIT_FILE,
    id_checksum,
    mask_recipe_draws,
    selection_ids,
)

ISIC_ID = re.compile(r"^ISIC_\d{7}$")


@pytest.fixture(scope="module")
def split() -> dict:
    return json.loads(SPLIT_FILE.read_text())


def test_checksum_and_counts_match_the_ids(split):
    assert id_checksum(split["ids"]) == split["sha256"]
    assert split["counts"] == {s: len(v) for s, v in split["ids"].items()}
    assert sum(split["counts"].values()) >= 300
    for key in ("large", "classifier_trained"):
        for source, ids in split[key].items():
            assert set(ids) <= set(split["ids"][source]), f"{key} {source}: ids outside the split"
            assert split[f"{key}_counts"][source] == len(ids)


def test_ids_follow_the_sources_naming_scheme(split):
    assert set(split["ids"]) == {"ham10000", "isic2018"}
    for source, ids in split["ids"].items():
        assert ids == sorted(set(ids)), f"{source}: ids not sorted and unique"
        bad = [i for i in ids if not ISIC_ID.match(i)]
        assert not bad, f"{source}: ids outside the ISIC_<7 digits> scheme, e.g. {bad[:3]}"
    assert not set(split["ids"]["ham10000"]) & set(split["ids"]["isic2018"])


def test_no_overlap_with_training_or_selection_ids(split):
    chosen = {i for ids in split["ids"].values() for i in ids}
    for reason, by_source in split["excluded"].items():
        for source, ids in by_source.items():
            assert not chosen & set(ids), f"{reason} {source} overlaps the test split"
    for source, ids in selection_ids().items():  # the committed records themselves
        assert not chosen & ids, f"selection set {source} overlaps the test split"
    classifier = json.loads(CLASSIFIER_SPLIT.read_text())
    unseen = chosen - set(classifier["train"])
    assert unseen == chosen - {i for ids in split["classifier_trained"].values() for i in ids}
    assert sum(i in set(classifier["val"]) for i in split["ids"]["ham10000"]) >= 400


def test_the_rule_is_recorded(split):
    for key in ("rule", "seed", "date", "sources", "excluded_counts"):
        assert split[key], key
    assert split["excluded_counts"] == {k: {s: len(v) for s, v in by.items()} for k, by in split["excluded"].items()}


@pytest.mark.skipif(not (DATA / "ham10000" / "masks").is_dir(), reason="needs ../shared/data (HAM10000, ISIC masks)")
def test_recorded_training_ids_are_the_recipes_draws(split):
    """The mask recipes' draws recomputed from the committed configs equal the recorded training ids."""
    drawn: dict[str, set[str]] = {"ham10000": set(), "isic2018": set()}
    for name in ("detector.yaml", "detector-continue3.yaml", "detector-continue5.yaml"):
        for source, ids in mask_recipe_draws(name).items():
            drawn[source] |= ids
    assert {s: sorted(v) for s, v in drawn.items()} == split["excluded"]["detector_trained"]


def test_large_lesions_counts_the_bands():
    records = [{"id": f"i{k}", "score": s} for k, s in enumerate((0.05, 0.2, 0.5, 0.9, 0.99))]
    shares = {"i0": 0.6, "i1": 0.7, "i2": 0.8, "i3": 0.51, "i4": 0.4}  # i4 is not large
    out = large_lesions(records, shares, presence=0.44, unsure=0.13)
    assert (out["n"], out["below_unsure"], out["unsure_band"], out["at_presence"]) == (4, 1, 1, 2)
    assert out["found_rate"] == 0.75 and out["score_quantiles"]["1.0"] == 0.9
    assert large_lesions(records, {}, 0.44, 0.13) == {"n": 0}


def test_pipeline_figures_score_unanswered_frames_zero_and_leave_out_classifier_training():
    def row(i, dx, outcome, mel, whole):
        return {"id": i, "dx": dx, "outcome": outcome, "mel": mel, "whole_mel": whole, "refer": True}

    rows = [row("a", "mel", "lesion", 0.9, 0.2), row("b", "mel", "no_lesion_found", 0.0, 0.8)]
    rows += [row(f"n{k}", "nv", "lesion", 0.1 * (k + 1), 0.5) for k in range(5)]
    rows.append(row("t", "mel", "lesion", 0.0, 1.0))  # trained on: left out of the AUC
    out = pipeline_figures(rows, exclude={"t"})
    assert out["melanomas_unanswered"] == 1 and out["frames_unanswered"] == 1
    assert out["auc"]["n"] == 7 and out["auc"]["melanomas"] == 2
    # pipeline: a (0.9) above all naevi, b (0) below all: 5/10; whole frame: b 0.8 above, a 0.2 below: 5/10
    assert out["auc"]["pipeline_auc"] == pytest.approx(0.5) and out["auc"]["whole_frame_auc"] == pytest.approx(0.5)


def test_auc_difference_interval_brackets_a_clear_gain():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(30), np.zeros(120)].astype(int)
    good = y + rng.normal(0, 0.3, len(y))
    poor = y + rng.normal(0, 2.0, len(y))
    out = auc_difference(y, good, poor)
    low, high = out["interval"]
    assert out["difference"] > 0 and low <= out["difference"] <= high and low > 0
    assert auc_difference(y[:10], good[:10], poor[:10]) == {"n": 10, "melanomas": 10}
    few = auc_difference(y[26:40], good[26:40], poor[26:40])
    assert few["interval"] is None and "pipeline_auc" in few


def test_the_split_file_is_not_rewritten(tmp_path: Path):
    from benchmarks.detector_test_split import main

    existing = tmp_path / "split.json"
    existing.write_text("{}")
    with pytest.raises(SystemExit):
        main(["--out", str(existing), "--data", str(DATA)])
    assert existing.read_text() == "{}"


def test_summarise_splits_the_detector_figures_by_mask_share():
    from benchmarks.detector_test import summarise

    records = {
        "s": [{"id": "a", "dx": "nv", "score": 0.9, "iou": 0.9}, {"id": "b", "dx": "mel", "score": 0.3, "iou": 0.2}]
    }
    out = summarise(records, {}, {"a": 0.7, "b": 0.1}, set(), presence=0.44, unsure=0.13)["s"]
    assert out["detector"]["n"] == 2 and out["detector"]["reported_hit_iou50"] == 0.5
    assert out["detector_by_size"]["mask_over_half"]["reported_hit_iou50"] == 1.0
    assert out["detector_by_size"]["mask_up_to_half"]["reported_rate"] == 0.0
    assert out["detector_by_size"]["mask_up_to_half"]["found_rate"] == 1.0 and out["pipeline"] is None
