"""benchmarks.presence_evidence: which frames lose their answer per variant, and the rule's verdict."""

from __future__ import annotations

from benchmarks.presence_evidence import loses, summarise, verdict


def lesion(dx, outcome="lesion", verdict_=None):
    return {"dx": dx, "outcome": outcome, "verdict": verdict_}


def photo(outcome="lesion", verdict_=None, kind="natural (augmented)"):
    return {"kind": kind, "outcome": outcome, "verdict": verdict_}


def test_only_frames_answered_at_presence_lose_their_answer() -> None:
    assert loses(lesion("nv", verdict_="scene"), "A")
    assert not loses(lesion("nv", verdict_="plain skin"), "A")
    assert loses(lesion("nv", verdict_="plain skin"), "B")
    # An unsure-band answer already passed the verdict; a frame without an answer has nothing to lose.
    assert not loses(lesion("nv", "lesion_unsure", "scene"), "B")
    assert not loses(lesion("nv", "no_lesion_found", "scene"), "B")


def records(ham_rows, seed_rows):
    return {
        "lesions": {"isic_heldout": [lesion("nv")] * 10, "ham_val": ham_rows},
        "non_lesion": {f"seed {s}": seed_rows for s in (0, 1, 2)},
    }


def test_a_variant_that_costs_a_melanoma_is_not_adopted() -> None:
    rule = verdict(
        summarise(records([lesion("mel", verdict_="scene")] + [lesion("nv")] * 9, [photo(verdict_="scene")]))
    )
    assert rule["A"]["malignant_lost"] == 1 and not rule["A"]["adopt"]
    assert rule["A"]["non_lesion_change"]["natural (augmented)"] == -3


def test_a_variant_that_only_removes_non_lesion_answers_is_adopted() -> None:
    seeds = [photo(verdict_="scene"), photo(verdict_="plain skin", kind="skin (PH2 val)")]
    rule = verdict(summarise(records([lesion("nv")] * 10, seeds)))
    assert rule["A"]["adopt"] and rule["B"]["adopt"]
    assert rule["B"]["non_lesion_change"] == {"natural (augmented)": -3, "skin (PH2 val)": -3}
    assert rule["A"]["non_lesion_change"]["skin (PH2 val)"] == 0


def test_losing_more_than_two_per_thousand_lesion_frames_fails() -> None:
    ham = [lesion("nv", verdict_="scene")] + [lesion("nv")] * 9  # 1 of 20 lost: 5%
    rule = verdict(summarise(records(ham, [photo(verdict_="scene")])))
    assert rule["A"]["lesions_lost"] == 1 and not rule["A"]["passes"]["2_at_most_0.2pct_lost"]
