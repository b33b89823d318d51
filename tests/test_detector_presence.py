"""benchmarks/detector_presence.py: the threshold curve, the presence/unsure choice and the breakdown."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.detector_presence import breakdown, choose_thresholds, curve, top_record


def _records():
    lesion = lambda i, s, dx="nv", iou=0.9: {"id": f"l{i}", "dx": dx, "score": s, "iou": iou}  # noqa: E731
    return {
        "ph2_val": [lesion(0, 0.9), lesion(1, 0.5, "melanoma"), lesion(2, 0.2, iou=0.3)],
        "isic_heldout": [lesion(3, 0.8, "mel"), lesion(4, 0.7)],
        "ham_val": [lesion(5, 0.95), lesion(6, 0.6)],
        "non_lesion": [
            {"id": f"n{i}", "source": "skin", "score": s, "iou": 0.0} for i, s in enumerate((0.1, 0.3, 0.55))
        ],
    }


def test_curve_counts_misses_hits_and_false_lesions():
    rows = {r["threshold"]: r for r in curve(_records(), grid=(0.25, 0.5, 0.6))}
    assert rows[0.5]["ph2_val_below"] == pytest.approx(1 / 3, abs=1e-4)  # 0.2 < 0.5
    assert rows[0.6]["ph2_val_melanoma_below"] == 1  # the melanoma at 0.5
    assert rows[0.6]["ph2_val_malignant_below"] == 1 and "ham_val_malignant_below" not in rows[0.6]
    assert rows[0.5]["ph2_val_reported_hit"] == pytest.approx(2 / 3, abs=1e-4)
    assert rows[0.5]["non_lesion_fp"] == pytest.approx(1 / 3, abs=1e-4) and rows[0.6]["non_lesion_fp"] == 0.0


def test_choice_presence_by_false_lesions_and_unsure_by_misses():
    rows = curve(_records(), grid=(0.1, 0.15, 0.25, 0.5, 0.6))
    choice = choose_thresholds(rows, max_fp=0.0, max_miss=0.0)
    assert choice["presence"] == 0.6  # lowest threshold with no non-lesion frame at or above it
    assert choice["unsure"] == 0.15  # highest <= presence with no lesion (0.2 is the lowest) below it
    with pytest.raises(ValueError, match="no threshold"):
        choose_thresholds(curve({"non_lesion": [{"score": 1.0}]}, grid=(0.5,)), max_fp=0.0)


def test_unsure_never_dismisses_a_malignant_lesion_of_any_kind():
    # A BCC at 0.12 in HAM val: with at most one miss in two allowed, only malignancy keeps unsure below 0.12.
    records = _records()
    records["ham_val"].append({"id": "b", "dx": "bcc", "score": 0.12, "iou": 0.9})
    rows = curve(records, grid=(0.1, 0.15, 0.25, 0.5, 0.6))
    choice = choose_thresholds(rows, max_fp=0.0, max_miss=0.5, choose_on=("isic_heldout", "ham_val"))
    assert choice["unsure"] == 0.1 and "no malignant lesion" in choice["rule"]
    # A curve written before the malignant field existed is checked on its melanomas only.
    old = [{k: v for k, v in r.items() if not k.endswith("_malignant_below")} for r in rows]
    assert choose_thresholds(old, max_fp=0.0, max_miss=0.5, choose_on=("isic_heldout", "ham_val"))["unsure"] == 0.6


def test_breakdown_per_diagnosis():
    table = breakdown(_records(), presence=0.6, unsure=0.25)
    ph2 = table["ph2_val"]
    assert ph2["all"] == {**ph2["all"], "n": 3, "reported": 1, "unsure": 1, "no_lesion_found": 1}
    assert ph2["melanoma"]["unsure"] == 1 and ph2["melanoma"]["no_lesion_found"] == 0
    assert table["non_lesion"]["skin"]["reported"] == 0 and table["non_lesion"]["skin"]["unsure"] == 2


def test_top_record_uses_the_highest_score():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    record = top_record(boxes, np.array([0.3, 0.8]), [np.array([20, 20, 30, 30])])
    assert record["score"] == 0.8 and record["iou"] == 1.0
    assert top_record(np.zeros((0, 4)), np.zeros(0), [])["score"] == 0.0


def test_unsure_chosen_only_on_the_named_sets_and_records_rechosen(tmp_path, capsys):
    import json

    from benchmarks.detector_presence import main

    rows = curve(_records(), grid=(0.1, 0.15, 0.25, 0.5, 0.6))
    # Without PH2 val (its lowest lesion scores 0.2), the lowest lesion is HAM's 0.6: unsure may rise to 0.6.
    choice = choose_thresholds(rows, max_fp=0.0, max_miss=0.0, choose_on=("isic_heldout", "ham_val"))
    assert choice["unsure"] == 0.6 and choice["choose_on"] == ["isic_heldout", "ham_val"]
    assert "isic_heldout, ham_val" in choice["rule"]
    with pytest.raises(ValueError, match="choose_on"):
        choose_thresholds(rows, choose_on=("non_lesion",))
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps({"model": "m.tflite", "records": _records(), "invoke_ms": {"p50": 1.0}}))
    out = tmp_path / "again.json"
    assert main(["--records", str(saved), "--max-fp", "0", "--max-miss", "0", "--choose-on", "ham_val",
                 "--json", str(out)]) == 0  # fmt: skip
    result = json.loads(out.read_text())
    assert result["model"] == "m.tflite" and result["invoke_ms"] == {"p50": 1.0}
    assert result["reported_at"] == {"presence": 0.56, "unsure": 0.56}  # the 0.01 grid: just above 0.55
    assert result["breakdown"]["ph2_val"]["all"]["no_lesion_found"] == 2  # measured, not chosen on
    with pytest.raises(SystemExit):
        main(["--records", str(saved), "--model", "m.tflite"])
    capsys.readouterr()
