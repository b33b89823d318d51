"""The ship rule's comparison (benchmarks/compare_classifiers.py) on synthetic score tables with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import compare_classifiers as cc
from edgeskin.labels import DX8_CLASSES, DX_CLASSES

N_PER_SOURCE = 300
CLASSES = ("mel", "nv", "bkl", "bcc")  # the dx of the synthetic truth
RESAMPLES = 100  # the rule's 2,000 in the real comparison; fewer keep these tests fast


def make_set(seed: int = 0) -> cc.EvalSet:
    """Two sources of N_PER_SOURCE images; truth drawn from CLASSES (a fifth melanomas), 8-dx indices."""
    rng = np.random.default_rng(seed)
    n = 2 * N_PER_SOURCE
    names = rng.choice(CLASSES, size=n, p=[0.2, 0.5, 0.2, 0.1])
    labels = np.array([DX8_CLASSES.index(d) for d in names])
    ids = tuple(f"IMG_{i:05d}" for i in range(n))
    sources = np.array(["ham10000"] * N_PER_SOURCE + ["isic2017"] * N_PER_SOURCE)
    return cc.EvalSet(cc.DECIDING_SET, ids, sources, labels, [], decides=True)


def probabilities(item: cc.EvalSet, skill: np.ndarray, labels=DX8_CLASSES, seed: int = 1) -> np.ndarray:
    """Softmax of noise plus ``skill`` (per image) on the true class: skill 0 is chance, 6 near perfect."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(item.labels), len(labels)))
    truth = [labels.index(DX8_CLASSES[y]) if DX8_CLASSES[y] in labels else 0 for y in item.labels]
    logits[np.arange(len(truth)), truth] += skill
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def scored(name: str, role: str, item: cc.EvalSet, skill, labels=DX8_CLASSES, trained=(), seed: int = 1) -> cc.Scored:
    skill = np.broadcast_to(np.asarray(skill, float), item.labels.shape)
    entry = cc.ModelEntry(name=name, role=role, path=Path(f"{name}.tflite"))
    probs = probabilities(item, skill, labels, seed)
    return cc.Scored(entry, tuple(labels), 0.3, {item.name: probs}, frozenset(trained), {})


def per_source_skill(item: cc.EvalSet, ham: float, isic: float) -> np.ndarray:
    return np.where(item.sources == "ham10000", ham, isic)


def test_a_clearly_better_candidate_passes_and_ships():
    item = make_set()
    predecessor = scored("old", "predecessor", item, 1.0, labels=DX_CLASSES, seed=2)
    candidate = scored("new", "candidate", item, 4.0, seed=3)
    result = cc.run_comparison([predecessor, candidate], [item], {}, RESAMPLES)
    assert result.decisions["new"]["passes"], result.decisions["new"]["failed"]
    assert result.ships == "new"
    for source in cc.SOURCES:
        low, high = result.comparisons["new"]["old"][source]["melanoma_auc"]["ci95"]
        assert 0 < low <= high


def test_worse_on_one_source_beyond_its_interval_fails_even_when_the_mean_improves():
    item = make_set()
    predecessor = scored("old", "predecessor", item, 1.0, seed=2)
    # Far better on HAM10000, clearly worse on ISIC 2017: the mean improves, one source falls.
    candidate = scored("new", "candidate", item, per_source_skill(item, 6.0, 0.2), seed=3)
    result = cc.run_comparison([predecessor, candidate], [item], {}, RESAMPLES)
    decision = result.decisions["new"]
    assert not decision["passes"] and result.ships is None
    failed = {(c["rule"], c["source"]) for c in decision["failed"]}
    assert (1, "isic2017") in failed and (1, "ham10000") not in failed
    assert all(c["passed"] for c in decision["checks"] if c["rule"] == 2)  # the means did improve


def test_a_mean_that_does_not_improve_fails():
    item = make_set()
    predecessor = scored("old", "predecessor", item, 2.0, seed=2)
    same = scored("same", "candidate", item, 2.0, seed=2)  # the predecessor's own scores: no difference at all
    decision = cc.run_comparison([predecessor, same], [item], {}, RESAMPLES).decisions["same"]
    assert all(c["passed"] for c in decision["checks"] if c["rule"] == 1)  # intervals [0, 0] reach 0
    assert {c["rule"] for c in decision["failed"]} == {2}
    assert not decision["passes"]


def test_images_a_model_trained_on_are_left_out_of_its_comparisons_and_figures():
    item = make_set()
    # The predecessor "trained on" the first 100 HAM10000 images and is perfect there, poor elsewhere.
    trained = item.image_ids[:100]
    skill = np.where(np.isin(item.image_ids, trained), 50.0, 0.5)
    predecessor = scored("old", "predecessor", item, skill, trained=trained, seed=2)
    candidate = scored("new", "candidate", item, 2.0, seed=3)
    comparison = cc.compare(candidate, predecessor, item, RESAMPLES)
    assert comparison["ham10000"]["n"] == N_PER_SOURCE - 100
    assert comparison["isic2017"]["n"] == N_PER_SOURCE
    kept = ~np.isin(item.image_ids, trained) & (item.sources == "ham10000")
    expected = cc.rule_metric(
        "melanoma_auc",
        cc.rule_scores(item.labels[kept], predecessor.probabilities[item.name][kept], predecessor.labels),
    )
    assert comparison["ham10000"]["melanoma_auc"]["predecessor"] == pytest.approx(expected, abs=1e-6)
    figures = cc.model_metrics(predecessor, [item], {i: i for i in item.image_ids})[item.name]["ham10000"]
    assert figures["n"] == N_PER_SOURCE - 100 and figures["trained_on_left_out"] == 100
    assert figures["same_lesion_trained"] == 0  # each synthetic image is its own lesion, and trained ones are out


def test_same_lesion_images_are_counted_not_removed():
    item = make_set()
    model = scored("old", "predecessor", item, 2.0, trained=item.image_ids[:1])
    lesion_of = {image_id: "L0" if image_id in item.image_ids[:3] else image_id for image_id in item.image_ids}
    figures = cc.model_metrics(model, [item], lesion_of)[item.name]["ham10000"]
    assert figures["n"] == N_PER_SOURCE - 1 and figures["same_lesion_trained"] == 2


def test_the_bootstrap_is_paired_seeded_and_redraws_resamples_without_both_classes():
    is_melanoma = np.zeros(12, bool)
    is_melanoma[0] = True  # 1 in 12: about a third of plain draws would hold no melanoma
    indices = cc.resample_indices(is_melanoma, n_resamples=300)
    assert indices.shape == (300, 12)
    assert is_melanoma[indices].any(axis=1).all() and not is_melanoma[indices].all(axis=1).any()
    np.testing.assert_array_equal(indices, cc.resample_indices(is_melanoma, n_resamples=300))
    # Paired: the same resampled images for both models, so a model against itself differs by exactly 0 in
    # every resample (independent resamples of the two would spread the difference around 0).
    item = make_set()
    model = scored("m", "candidate", item, 1.0)
    rows = item.sources == "ham10000"
    scores = cc.rule_scores(item.labels[rows], model.probabilities[item.name][rows], model.labels)
    for metric in cc.RULE_METRICS:
        result = cc.paired_difference(metric, scores, scores, cc.resample_indices(scores.is_melanoma, 200))
        assert result["ci95"] == [0.0, 0.0] and result["difference"] == 0.0


def test_the_interval_is_the_percentile_interval_of_the_paired_differences():
    item = make_set()
    rows = item.sources == "isic2017"
    a = cc.rule_scores(
        item.labels[rows], scored("a", "candidate", item, 2.0, seed=3).probabilities[item.name][rows], DX8_CLASSES
    )
    b = cc.rule_scores(
        item.labels[rows], scored("b", "predecessor", item, 1.0, seed=4).probabilities[item.name][rows], DX8_CLASSES
    )
    indices = cc.resample_indices(a.is_melanoma, 100)
    diffs = [
        cc.rule_metric("balanced_accuracy_7dx", a.take(i)) - cc.rule_metric("balanced_accuracy_7dx", b.take(i))
        for i in indices
    ]
    result = cc.paired_difference("balanced_accuracy_7dx", a, b, indices)
    assert result["ci95"] == pytest.approx(list(np.percentile(diffs, [2.5, 97.5])), abs=1e-6)


def test_a_bootstrap_without_both_classes_is_refused():
    with pytest.raises(cc.CompareError, match="melanomas and other lesions"):
        cc.resample_indices(np.zeros(5, bool))


def test_the_7dx_view_folds_ak_and_scc_into_akiec():
    labels = np.array([DX8_CLASSES.index("scc"), DX8_CLASSES.index("ak")])
    probs = np.zeros((2, 8))
    probs[:, DX8_CLASSES.index("ak")] = 0.3
    probs[:, DX8_CLASSES.index("scc")] = 0.3
    probs[:, DX8_CLASSES.index("nv")] = 0.4  # the 8-dx argmax is nv, the 7-dx one akiec (0.6)
    scores = cc.rule_scores(labels, probs, DX8_CLASSES)
    assert (scores.y7 == DX_CLASSES.index("akiec")).all() and (scores.predicted7 == DX_CLASSES.index("akiec")).all()


def test_rule3_ranks_passing_candidates_by_mean_auc_then_balanced_accuracy():
    decisions = {"x": {"passes": True}, "y": {"passes": True}, "z": {"passes": False}}
    means = {
        "x": {"melanoma_auc": 0.900, "balanced_accuracy_7dx": 0.70},
        "y": {"melanoma_auc": 0.897, "balanced_accuracy_7dx": 0.75},  # a tie on AUC (within 0.005)
        "z": {"melanoma_auc": 0.990, "balanced_accuracy_7dx": 0.90},  # fails the rule: never ships
    }
    assert cc.choose(decisions, means) == "y"
    means["y"]["melanoma_auc"] = 0.890
    assert cc.choose(decisions, means) == "x"
    assert cc.choose({"z": {"passes": False}}, means) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("role=candidate,name=x", "path= is required"),
        ("role=boss,name=x,path=m.tflite", "role must be one of"),
        ("role=candidate,name=x,path=m.tflite,colour=red", "unknown key"),
        ("role=candidate,name=x,path", "key=value"),
        ("role=candidate,name=x,path=missing.tflite", "no model file"),
        ("role=candidate,name=x,path=m.tflite,views=3", "views must be one of"),
    ],
)
def test_bad_model_options_give_one_line_errors(text, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if "missing" not in text:
        (tmp_path / "m.tflite").write_bytes(b"")
    with pytest.raises(cc.CompareError, match=message):
        cc.parse_model(text)


def test_a_candidate_needs_a_predecessor_and_names_are_unique(tmp_path):
    entry = cc.ModelEntry(name="x", role="candidate", path=tmp_path / "x.tflite")
    with pytest.raises(cc.CompareError, match="predecessor"):
        cc.check_entries([entry])
    with pytest.raises(cc.CompareError, match="unique"):
        cc.check_entries([entry, entry])


def test_excluding_by_lesion_leaves_out_every_image_of_a_trained_lesion():
    item = make_set()
    model = scored("old", "predecessor", item, 2.0, trained=item.image_ids[:1])
    lesion_of = {image_id: "L0" if image_id in item.image_ids[:3] else image_id for image_id in item.image_ids}
    widened = cc.widen_to_lesions(model, lesion_of)
    assert widened.trained == frozenset(item.image_ids[:3])
    figures = cc.model_metrics(widened, [item], lesion_of)[item.name]["ham10000"]
    assert figures["n"] == N_PER_SOURCE - 3 and figures["same_lesion_trained"] == 0


def test_the_report_names_the_decision_and_labels_a_dry_run():
    import argparse

    item = make_set()
    predecessor = scored("old", "predecessor", item, 1.0, seed=2)
    dry = scored("mock", "dry-run", item, 1.0, seed=2)
    for model in (predecessor, dry):
        model.record.update(file="m.tflite", sha256="0" * 64, kind="INT8", views=["identity"], scores="calibrated")
    result = cc.run_comparison([predecessor, dry], [item], {}, 20)
    args = argparse.Namespace(split="split.json", note=["a note"], exclude="images")
    text = cc.markdown(cc.build_report(args, [item], result, 1.0))
    assert "**mock** (DRY RUN, not a candidate): fails the rule" in text
    assert "Ships: no candidate" in text and "- a note" in text
