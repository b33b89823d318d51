"""Evaluation metrics against hand-computed and scikit-learn answers; AP for detection; plots."""

from __future__ import annotations

import numpy as np
import pytest

from edgeskin.evaluation import (
    average_precision,
    classification_metrics,
    classify_report,
    detection_report,
    isic_csv,
    malignant_metrics,
    save_classification_plots,
    stratified_sample,
    top_box_ious,
)
from edgeskin.labels import DX8_CLASSES, DX_CLASSES, GROUPS

metrics = pytest.importorskip("sklearn.metrics", reason="needs scikit-learn (pip install 'edgeskin[eval]')")

LABELS3 = ("a", "b", "c")


def _onehot(pred, k=3, confidence=0.8):
    probs = np.full((len(pred), k), (1 - confidence) / (k - 1))
    probs[np.arange(len(pred)), pred] = confidence
    return probs


def test_a_hand_made_case_gives_the_hand_computed_numbers():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    m = classification_metrics(y, _onehot(pred), LABELS3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)  # mean recall
    # per class: a P 1/2 R 1/2; b P 2/3 R 1; c P 1 R 1/2
    assert m["per_class"]["a"] == {
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "support": 2,
        "auc": pytest.approx(m["per_class"]["a"]["auc"]),
    }
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3) and m["per_class"]["b"]["f1"] == pytest.approx(0.8)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3, abs=1e-6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]] and m["labels"] == list(LABELS3)


def test_metrics_equal_scikit_learn_on_random_predictions():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 300)
    y[:7] = np.arange(7)
    probs = rng.dirichlet(np.ones(7), 300)
    probs[np.arange(300), y] += 0.3  # informative but imperfect
    probs /= probs.sum(1, keepdims=True)
    m = classification_metrics(y, probs, DX_CLASSES)
    pred = probs.argmax(1)
    assert m["accuracy"] == pytest.approx(metrics.accuracy_score(y, pred), abs=1e-6)
    assert m["balanced_accuracy"] == pytest.approx(metrics.balanced_accuracy_score(y, pred), abs=1e-6)
    assert m["macro_f1"] == pytest.approx(metrics.f1_score(y, pred, average="macro"), abs=1e-6)
    assert m["auc"] == pytest.approx(metrics.roc_auc_score(y, probs, multi_class="ovr", average="macro"), abs=1e-6)
    assert m["confusion_matrix"] == metrics.confusion_matrix(y, pred).tolist()


def test_perfect_predictions_score_1_and_shuffled_ones_do_not():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(7), 20)
    perfect = classification_metrics(y, _onehot(y, 7, 0.9), DX_CLASSES)
    assert perfect["accuracy"] == perfect["balanced_accuracy"] == perfect["macro_f1"] == perfect["auc"] == 1.0
    shuffled = classification_metrics(y, _onehot(rng.permutation(y), 7, 0.9), DX_CLASSES)
    assert shuffled["balanced_accuracy"] < 0.5 and shuffled["auc"] < 0.75


def test_a_class_absent_from_the_truth_does_not_break_the_auc():
    y = np.array([0, 0, 1, 1])  # no "c"
    probs = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.35, 0.55]])
    m = classification_metrics(y, probs, LABELS3)
    assert m["auc"] == pytest.approx(1.0) and m["per_class"]["c"]["auc"] is None and m["per_class"]["c"]["support"] == 0


def test_groups_sum_their_dx_and_malignant_uses_the_threshold_or_the_top_group():
    i = DX_CLASSES.index
    y = np.array([i("mel"), i("bcc"), i("nv"), i("nv"), i("akiec")])
    p = np.zeros((5, 7))
    p[0, [i("mel"), i("nv")]] = [0.35, 0.65]  # malignant 0.35: refer at 0.3, not by the top group
    p[1, i("bcc")] = 1.0
    p[2, i("nv")] = 1.0
    p[3, [i("mel"), i("nv")]] = [0.4, 0.6]  # a benign lesion referred at 0.3
    p[4, [i("akiec"), i("bkl"), i("df")]] = [0.4, 0.3, 0.3]  # top dx akiec, but top group Benign (0.6)
    report = classify_report(y, p, malignant_threshold=0.3)
    assert report["n"] == 5
    assert report["dx"]["accuracy"] == pytest.approx(4 / 5)  # mel → nv wrong; bcc, nv, nv, akiec right
    assert report["group"]["labels"] == list(GROUPS)
    assert report["group"]["accuracy"] == pytest.approx(3 / 5)  # mel → Benign and akiec → Benign (0.6) wrong
    assert report["group"]["confusion_matrix"][GROUPS.index("SCC")][GROUPS.index("Benign")] == 1
    with_threshold = report["malignant"]
    assert with_threshold["counts"] == {"tp": 3, "fn": 0, "tn": 1, "fp": 1}
    assert with_threshold["sensitivity"] == 1.0 and with_threshold["specificity"] == 0.5
    assert with_threshold["rule"].startswith("malignant probability") and with_threshold["threshold"] == 0.3
    top_group = malignant_metrics(y, p, None)
    assert top_group["counts"] == {"tp": 1, "fn": 2, "tn": 2, "fp": 0}
    assert top_group["sensitivity"] == pytest.approx(1 / 3) and top_group["specificity"] == 1.0
    assert "most probable group" in top_group["rule"]


def test_average_precision_by_hand():
    # 3 ground truths; ranked predictions TP, FP, TP → P = 1, 1/2, 2/3 at R = 1/3, 1/3, 2/3.
    # Envelope: 1 up to R 1/3, 2/3 up to R 2/3, then 0 → AP = 1/3 + 2/9.
    assert average_precision([0.9, 0.8, 0.7], [True, False, True], 3) == pytest.approx(1 / 3 + 2 / 9)
    assert average_precision([0.7, 0.9, 0.8], [True, True, False], 3) == pytest.approx(1 / 3 + 2 / 9)  # order by score
    assert average_precision([0.9, 0.8], [True, True], 2) == pytest.approx(1.0)
    assert average_precision([0.9, 0.8], [False, True], 1) == pytest.approx(0.5)
    assert average_precision([], [], 4) == 0.0


def test_detection_report_definitions():
    gt = [np.array([0, 0, 10, 10.0]), np.array([0, 0, 10, 10.0]), np.array([0, 0, 10, 10.0]), None]
    predictions = [
        (np.array([[0, 0, 10, 10], [0, 0, 10, 5]]), np.array([0.9, 0.5])),  # top box IoU 1, a duplicate
        (np.array([[0, 0, 10, 4], [1, 0, 10, 10]]), np.array([0.8, 0.3])),  # top box IoU 0.4, best 0.9
        (np.zeros((0, 4)), np.zeros(0)),  # no box: IoU 0
        (np.array([[0, 0, 5, 5]]), np.array([0.95])),  # empty mask: a false positive
    ]
    report = detection_report(gt, predictions)
    assert report["n"] == 3 and report["no_box"] == 1 and report["empty_masks"] == 1
    assert report["mean_iou"] == pytest.approx((1 + 0.4 + 0) / 3)
    assert report["median_iou"] == pytest.approx(0.4)
    assert report["iou50_rate"] == pytest.approx(1 / 3)
    assert report["best_box_iou"]["mean_iou"] == pytest.approx((1 + 0.9 + 0) / 3)
    assert report["best_box_iou"]["iou50_rate"] == pytest.approx(2 / 3)
    # Ranked: 0.95 FP, 0.9 TP, 0.8 FP, 0.5 FP (duplicate), 0.3 TP; 3 ground truths.
    # P = 0, 1/2, 1/3, 1/4, 2/5 at R = 0, 1/3, 1/3, 1/3, 2/3 → AP = 1/3 * 1/2 + 1/3 * 2/5.
    assert report["map50"] == pytest.approx(1 / 6 + 2 / 15)


def _box(x: float, y: float, size: float = 10.0) -> np.ndarray:
    return np.array([x, y, x + size, y + size], np.float32)


def test_detection_report_matches_several_boxes_per_image():
    # Ranked: 0.9 hit (image 1), 0.8 miss (image 1, far away), 0.7 hit (image 2, IoU 0.67 >= 0.5).
    # Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1: the envelope gives AP = 1/2 * 1 + 1/2 * 2/3.
    gt = [_box(0, 0)[None], _box(0, 0)[None]]
    predictions = [(np.stack([_box(0, 0), _box(50, 50)]), np.array([0.9, 0.8])), (_box(2, 0)[None], np.array([0.7]))]
    assert detection_report(gt, predictions)["map50"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    # Two lesions in one scene: each box takes the free ground truth it overlaps most, so both count.
    scene = np.stack([_box(0, 0), _box(40, 40)])
    report = detection_report([scene], [(np.stack([_box(40, 40), _box(1, 0)]), np.array([0.9, 0.6]))])
    assert report["map50"] == pytest.approx(1.0)
    assert report["mean_iou"] == pytest.approx(1.0)  # the top box with its nearest ground truth
    # A second box on a taken ground truth is a duplicate; no ground truth at all: no AP.
    one = _box(0, 0)[None]
    assert detection_report([one], [(np.stack([_box(0, 0), _box(1, 0)]), np.array([0.9, 0.8]))])["map50"] == 1.0
    assert detection_report([one], [(np.zeros((0, 4)), np.zeros(0))])["map50"] == 0.0  # no predictions
    assert detection_report([np.zeros((0, 4))], [(one, np.array([0.5]))])["map50"] is None


def test_detection_report_per_image_records():
    one = _box(0, 0)[None]
    predictions = [(np.stack([_box(2, 0), _box(0, 0)]), np.array([0.4, 0.9])), (one, np.array([0.3]))]
    report = detection_report([_box(0, 0), None], predictions, image_ids=["lesion", "empty"])
    assert report["per_image"]["lesion"] == {"iou": 1.0, "box": [0, 0, 10, 10], "truth": [[0, 0, 10, 10]], "n_boxes": 2}
    assert report["per_image"]["empty"] == {"iou": None, "box": [0, 0, 10, 10], "truth": [], "n_boxes": 1}
    assert "per_image" not in detection_report([_box(0, 0)], predictions[1:])
    with pytest.raises(ValueError, match="one image id per image"):
        detection_report([_box(0, 0)], predictions[1:], image_ids=["a", "b"])


def test_top_box_iou_is_the_highest_scoring_box():
    top, best = top_box_ious(np.array([0, 0, 10, 10]), np.array([[0, 0, 10, 10], [0, 0, 5, 5]]), np.array([0.2, 0.9]))
    assert top == pytest.approx(0.25) and best == pytest.approx(1.0)
    assert top_box_ious(np.array([0, 0, 10, 10]), np.zeros((0, 4)), np.zeros(0)) == (0.0, 0.0)


@pytest.mark.parametrize(
    "y, probs, message",
    [([0, 1], np.zeros((3, 3)), "one label per prediction"), ([0, 5], np.zeros((2, 3)), "class indices"),
     ([0], np.zeros((1, 2)), r"shape \(n, 3\)"), ([], np.zeros((0, 3)), "at least one")],
)  # fmt: skip
def test_malformed_predictions_are_refused(y, probs, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(np.asarray(y), probs, LABELS3)


def test_plots_are_written_as_png_files(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(7), 6)
    p = rng.dirichlet(np.ones(7), len(y))
    report = classify_report(y, p)
    paths = save_classification_plots(y, p, report, tmp_path / "plots")
    assert sorted(x.name for x in paths) == [
        "confusion_dx.png",
        "confusion_group.png",
        "roc_dx.png",
        "roc_group.png",
        "roc_malignant.png",
    ]
    assert all(x.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and x.stat().st_size > 5000 for x in paths)


# -- quick checks and the ISIC format --------------------------------------------------------------------------


def test_a_stratified_sample_keeps_the_class_shares_not_the_first_rows():
    labels = np.repeat([0, 1, 2], [500, 300, 200])  # sorted by class, as HAM10000's metadata nearly is
    chosen = stratified_sample(labels, 20)
    assert np.bincount(labels[chosen], minlength=3).tolist() == [10, 6, 4]  # the first 20 rows: [20, 0, 0]
    assert (np.diff(chosen) > 0).all()  # file order, no repeats
    np.testing.assert_array_equal(chosen, stratified_sample(labels, 20))  # seeded
    assert not np.array_equal(chosen, stratified_sample(labels, 20, seed=1))
    np.testing.assert_array_equal(stratified_sample(labels[:5], 9), np.arange(5))
    with pytest.raises(ValueError, match="positive"):
        stratified_sample(labels, 0)


@pytest.mark.parametrize(
    ("dx_labels", "header"),
    [
        (DX_CLASSES, "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC"),  # ISIC 2018 Task 3
        (DX8_CLASSES, "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC"),  # ISIC 2019 without UNK
    ],
)
def test_isic_csv_writes_the_challenge_columns(dx_labels, header):
    k = len(dx_labels)
    probabilities = np.full((2, k), 0.0, np.float32)
    probabilities[0, dx_labels.index("mel")] = 0.7
    probabilities[0, dx_labels.index("nv")] = np.float32(0.3) + np.float32(1e-7)
    probabilities[1, dx_labels.index("bcc")] = 1.0000001  # a float32 sum just over 1: clipped
    lines = isic_csv(["ISIC_1", "ISIC_2"], probabilities, dx_labels).splitlines()
    assert lines[0] == header
    columns = header.split(",")
    first = dict(zip(columns, lines[1].split(","), strict=True))
    assert first["image"] == "ISIC_1" and first["MEL"] == "0.7" and first["BCC"] == "0.0"
    assert np.float32(first["NV"]) == probabilities[0, dx_labels.index("nv")]  # reads back as the same float32
    assert dict(zip(columns, lines[2].split(","), strict=True))["BCC"] == "1.0"
    with pytest.raises(ValueError, match="dx_labels"):
        isic_csv(["a"], np.ones((1, 3)), ("a", "b", "c"))
    with pytest.raises(ValueError, match="expected shape"):
        isic_csv(["a", "b"], probabilities[:1], dx_labels)
