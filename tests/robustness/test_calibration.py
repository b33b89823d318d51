"""edgeskin.calibration on synthetic data with known answers: temperature scaling, ECE, triage threshold."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeskin.calibration import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    temperature_at_bound,
    triage_threshold,
)
from edgeskin.tasks.classifier import softmax  # the runtime's (float32), the one softmax of the project

K = 7


def sample_labels(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One label per row, drawn from that row's distribution."""
    cumulative = probabilities.cumsum(axis=1)
    draws = rng.random((len(probabilities), 1))
    return np.minimum((draws > cumulative).sum(axis=1), probabilities.shape[1] - 1)


def synthetic(n: int, true_temperature: float, seed: int = 0, scale: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Logits z and labels drawn from softmax(z / true_temperature)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, scale, (n, K))
    return logits, sample_labels(softmax(logits, true_temperature), rng)


# -- temperature scaling ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.0, 4.0])
def test_fit_temperature_recovers_a_known_temperature(true_temperature):
    logits, labels = synthetic(20_000, true_temperature, seed=int(true_temperature * 10))
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.06)
    nll = negative_log_likelihood(logits, labels, fitted)
    for other in (true_temperature * 0.8, true_temperature * 1.25, 1.0):
        assert nll <= negative_log_likelihood(logits, labels, other) + 1e-9


def test_fit_temperature_stays_inside_its_bounds_and_flags_them(caplog):
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1, (500, K))
    labels = logits.argmax(axis=1)  # perfectly separable: the NLL keeps falling as T -> 0
    assert fit_temperature(logits, labels, bounds=(0.05, 20.0)) == pytest.approx(0.05, rel=0.01)
    labels = rng.integers(0, K, 500)  # labels unrelated to the logits: best is T -> infinity
    with caplog.at_level("WARNING", logger="edgeskin.calibration"):
        stuck = fit_temperature(logits, labels, bounds=(0.05, 20.0))
    assert stuck == pytest.approx(20.0, rel=0.01) and temperature_at_bound(stuck)
    assert "sits at its bound" in caplog.text
    caplog.clear()
    logits, labels = synthetic(2000, 1.5)
    with caplog.at_level("WARNING", logger="edgeskin.calibration"):
        assert not temperature_at_bound(fit_temperature(logits, labels))
    assert caplog.text == ""
    assert temperature_at_bound(19.999) and temperature_at_bound(0.05) and not temperature_at_bound(19.9)


# -- expected calibration error ----------------------------------------------------------------------------------


def test_ece_is_about_zero_for_calibrated_predictions():
    rng = np.random.default_rng(2)
    probabilities = softmax(rng.normal(0, 2.5, (40_000, K)))
    labels = sample_labels(probabilities, rng)  # drawn from the predictions themselves: calibrated
    assert expected_calibration_error(probabilities, labels) < 0.015


def test_ece_is_large_for_over_confident_predictions_and_temperature_scaling_fixes_it():
    logits, labels = synthetic(20_000, true_temperature=3.0, seed=3)
    over_confident = softmax(logits)  # the truth is softmax(z / 3): these are far too sharp
    before = expected_calibration_error(over_confident, labels)
    assert before > 0.2
    after = expected_calibration_error(softmax(logits, fit_temperature(logits, labels)), labels)
    assert after < 0.02


def test_ece_of_exact_cases():
    labels = np.array([0, 0, 1, 1])
    # Confidence 1 and always right: 0. Confidence 1 and always wrong: 1.
    assert expected_calibration_error(np.eye(2)[labels], labels) == 0.0
    assert expected_calibration_error(np.eye(2)[1 - labels], labels) == 1.0
    # Confidence 0.75, right 3 times out of 4: 0.
    probabilities = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probabilities, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    # Confidence 0.75, right 2 times out of 4: |0.5 - 0.75| = 0.25.
    assert expected_calibration_error(probabilities, np.array([0, 0, 1, 1])) == pytest.approx(0.25)


# -- malignant triage threshold ---------------------------------------------------------------------------------


def brute_force(scores: np.ndarray, positive: np.ndarray, min_sensitivity: float) -> tuple[float, float, float]:
    """The largest threshold t (among all reals) with sensitivity(score >= t) >= min_sensitivity: it is always
    one of the scores, since between two scores the predictions do not change."""
    best = None
    for t in np.unique(scores):
        predicted = scores >= t
        sensitivity = (predicted & positive).sum() / positive.sum()
        if sensitivity >= min_sensitivity:
            best = (float(t), float(sensitivity), float((~predicted & ~positive).sum() / (~positive).sum()))
    assert best is not None
    return best


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.integers(0, 20).map(lambda v: v / 20), st.booleans()),  # coarse scores: many ties
        min_size=2,
        max_size=60,
    ).filter(lambda rows: any(p for _, p in rows) and not all(p for _, p in rows)),
    min_sensitivity=st.sampled_from([0.5, 0.85, 0.9, 0.95, 1.0]),
)
def test_triage_threshold_is_the_largest_threshold_with_the_sensitivity(data, min_sensitivity):
    scores = np.array([s for s, _ in data])
    positive = np.array([p for _, p in data])
    result = triage_threshold(scores, positive, min_sensitivity)
    threshold, sensitivity, specificity = brute_force(scores, positive, min_sensitivity)
    assert result["malignant_threshold"] == threshold
    assert result["sensitivity"] == pytest.approx(sensitivity) and result["sensitivity"] >= min_sensitivity
    assert result["specificity"] == pytest.approx(specificity)
    assert result["min_sensitivity"] == min_sensitivity
    above = scores[scores > threshold]
    if above.size:  # the next score up would lose sensitivity
        next_up = above.min()
        assert ((scores >= next_up) & positive).sum() / positive.sum() < min_sensitivity


def test_triage_threshold_on_a_known_case():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    positive = np.array([1, 1, 0, 1, 0, 1, 0, 0, 1, 0], bool)
    # 5 malignant; 4 of 5 (0.8) are at >= 0.4, all 5 at >= 0.1.
    assert triage_threshold(scores, positive, 0.8)["malignant_threshold"] == 0.4
    result = triage_threshold(scores, positive, 0.85)
    assert result["malignant_threshold"] == 0.1 and result["sensitivity"] == 1.0
    assert result["specificity"] == pytest.approx(1 / 5)


@pytest.mark.parametrize("positive", [np.zeros(5, bool), np.ones(5, bool)], ids=["all benign", "all malignant"])
def test_triage_threshold_needs_both_classes(positive):
    with pytest.raises(ValueError, match="needs both malignant and benign examples"):
        triage_threshold(np.linspace(0, 1, 5), positive)


# -- top-label calibration ----------------------------------------------------------------------------------


def step_reliability(n: int, seed: int = 0, width: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Top probabilities spread over [0.35, 0.99] but right 55 % of the time below 0.6 and 92 % above 0.8,
    rising linearly between (slope 1.85; ``width=0``: a step at 0.7): a reliability curve no single
    temperature can straighten (a power of the probabilities is smooth)."""
    rng = np.random.default_rng(seed)
    top = rng.uniform(0.35, 0.99, n)
    rest = rng.dirichlet(np.ones(K - 1), n) * (1.0 - top)[:, None]
    probs = np.concatenate([top[:, None], rest], axis=1)
    rise = np.clip((top - 0.7 + width / 2) / width, 0.0, 1.0) if width > 0 else (top > 0.7).astype(float)
    correct = rng.random(n) < 0.55 + 0.37 * rise
    wrong = 1 + rng.integers(0, K - 1, n)
    return probs, np.where(correct, 0, wrong)


def test_top_label_map_lowers_ece_where_temperature_scaling_cannot():
    from edgeskin.calibration import apply_top_label, fit_top_label

    probs, labels = step_reliability(8000, seed=1)
    fit_p, fit_y, test_p, test_y = probs[:4000], labels[:4000], probs[4000:], labels[4000:]
    t = fit_temperature(np.log(fit_p), fit_y)
    temperature_only = expected_calibration_error(softmax(np.log(test_p), t), test_y)
    mapping = fit_top_label(softmax(np.log(fit_p), t), fit_y)
    both = expected_calibration_error(apply_top_label(softmax(np.log(test_p), t), mapping), test_y)
    assert temperature_only > 0.05  # the step leaves a clear miscalibration
    assert both < 0.03 and both < temperature_only / 2  # on held-out rows, not the ones it was fitted on


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.01, 30.0), min_size=K, max_size=K),
    st.lists(st.floats(0.0, 1.0), min_size=2, max_size=8),
)
def test_top_label_map_keeps_the_decision_and_a_distribution(row, knots_y):
    from edgeskin.calibration import apply_top_label

    probs = np.asarray(row) / np.sum(row)
    knots_y = sorted(knots_y)
    mapping = {"x": list(np.linspace(0.0, 1.0, len(knots_y))), "y": knots_y}
    out = apply_top_label(probs, mapping)
    assert out.min() >= 0.0 and abs(out.sum() - 1.0) < 1e-9
    top = probs.argmax()
    if np.sort(probs)[-2] == probs[top]:  # a tie in the input has no decision to keep: left unchanged
        np.testing.assert_array_equal(out, probs)
        return
    assert out.argmax() == top and out[top] > np.delete(out, top).max()
    others = np.delete(out, top)
    if others.sum() > 0:  # the others keep their proportions
        np.testing.assert_allclose(others / others.sum(), np.delete(probs, top) / (1 - probs[top]), atol=1e-9)


def test_one_row_gives_the_same_bits_as_the_same_row_in_a_batch():
    # The runtime calibrates one image at a time through a scalar path; it must be the batch arithmetic exactly.
    from edgeskin.calibration import apply_top_label

    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (3000, K))
    logits[:300, 1] = logits[:300, 0]  # ties at the top
    logits[300:400, 2] = logits[300:400].max(axis=1) + rng.uniform(0, 0.3, 100)  # small leads: the blend
    probs = softmax(logits)
    probs[400 : 400 + K] = np.eye(K)  # one-hot rows: nothing left for the others
    mapping = {"x": [0.0, 0.3, 0.6, 1.0], "y": [0.05, 0.2, 0.7, 0.97]}
    for full_lead in (0.1, 0.0):
        batch = apply_top_label(probs, mapping, full_lead)
        for row, expected in zip(probs, batch, strict=True):
            np.testing.assert_array_equal(apply_top_label(row, mapping, full_lead), expected)
            np.testing.assert_array_equal(apply_top_label(row[np.newaxis], mapping, full_lead)[0], expected)


def test_a_one_hot_row_stays_one_hot():
    from edgeskin.calibration import apply_top_label

    out = apply_top_label(np.array([[0.0, 1.0, 0.0]]), {"x": [0.0, 1.0], "y": [0.2, 0.6]})
    np.testing.assert_array_equal(out, [[0.0, 1.0, 0.0]])


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"x": [0.1, 0.5]}, "expected"),
        ({"x": [0.5, 0.1], "y": [0.1, 0.2]}, "non-decreasing"),
        ({"x": [0.1, 0.5], "y": [0.1, 1.5]}, r"lie in \[0, 1\]"),
        ({"x": [0.1], "y": [0.1, 0.2]}, "same non-zero length"),
    ],
)
def test_a_bad_top_label_map_is_refused_by_the_spec(mapping, message):
    from edgeskin.errors import SpecError
    from edgeskin.runtime.spec import ModelSpec

    data = {
        "name": "m",
        "task": "classification",
        "input": {"size": [4, 4]},
        "labels": ["a", "b"],
        "outputs": {"probabilities": "p"},
        "calibration": {"temperature": 1.0, "top_label": mapping},
    }
    with pytest.raises(SpecError, match=f"calibration.top_label: .*{message}"):
        ModelSpec.from_dict(data)


# -- smooth top-label map (issue 13: no cliff-edge outputs) --------------------------------------------------


def test_the_top_label_map_is_monotone_continuous_and_its_slope_bounded():
    from edgeskin.calibration import check_top_label, fit_isotonic_top_label, fit_top_label

    probs, labels = step_reliability(2000, seed=2, width=0.0)  # a true step: the worst case for a smooth fit
    for max_slope in (0.5, 2.0, 4.0):
        mapping = fit_top_label(probs, labels, max_slope=max_slope)
        x, y = np.asarray(mapping["x"]), np.asarray(mapping["y"])
        assert mapping["max_slope"] == max_slope and len(x) >= 2
        assert (np.diff(x) >= 0.02).all() and (np.diff(y) >= 0).all()
        assert (np.diff(y) <= max_slope * np.diff(x)).all()
        check_top_label(mapping)  # what the spec accepts
    # It follows the data: far below and above the step it is near 0.55 and 0.92.
    assert abs(np.interp(0.45, x, y) - 0.55) < 0.05 and abs(np.interp(0.95, x, y) - 0.92) < 0.05
    # The isotonic map it replaces is step-shaped and refused.
    with pytest.raises(ValueError, match="exceeds the maximum slope"):
        check_top_label(fit_isotonic_top_label(probs, labels))


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"x": [0.5, 0.5], "y": [0.4, 0.6]}, "a vertical step"),
        ({"x": [0.5, 0.51], "y": [0.4, 0.6]}, "slope 20 .* exceeds the maximum slope 4"),
        ({"x": [0.4, 0.6], "y": [0.4, 0.6], "max_slope": 0.5}, "slope 1 .* exceeds the maximum slope 0.5"),
        ({"x": [0.4, 0.6], "y": [0.4, 0.6], "max_slope": 9}, r"max_slope must be a number in \(0, 4"),
        ({"x": [0.4], "y": [0.4], "kind": "step"}, "expected"),
    ],
)
def test_step_shaped_maps_are_refused(mapping, message):
    from edgeskin.calibration import check_top_label

    with pytest.raises(ValueError, match=message):
        check_top_label(mapping)


def test_the_map_is_continuous_across_a_decision_flip():
    """Two near-equal classes swapping places must not swap a calibrated and a rescaled value (the IMD045
    case: nv 0.52 on one machine, bkl 0.56 on the other)."""
    from edgeskin.calibration import apply_top_label

    mapping = {"x": [0.3, 0.6], "y": [0.3, 0.9]}
    for eps in (1e-3, 1e-6):
        a = apply_top_label(np.array([0.4 + eps, 0.4 - eps, 0.2]), mapping)
        b = apply_top_label(np.array([0.4 - eps, 0.4 + eps, 0.2]), mapping)
        assert np.abs(a - b).max() < 30 * eps
    # Without the lead weighting (the former behaviour) the same flip jumps.
    a = apply_top_label(np.array([0.4 + 1e-6, 0.4 - 1e-6, 0.2]), mapping, full_lead=0.0)
    b = apply_top_label(np.array([0.4 - 1e-6, 0.4 + 1e-6, 0.2]), mapping, full_lead=0.0)
    assert np.abs(a - b).max() > 0.1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-6.0, 6.0), min_size=K, max_size=K), st.integers(0, K - 1), st.sampled_from([1.0, -1.0]))
def test_small_logit_moves_give_small_probability_moves(row, k, sign):
    """Lipschitz in the logits: |dp| <= (1/4 + max_slope * 1/4 + lead term) |dz| / T, everywhere."""
    from edgeskin.calibration import calibrated_probabilities

    mapping = {"x": [0.2, 0.5, 0.9], "y": [0.1, 0.7, 0.95], "max_slope": 2.0}
    z = np.asarray(row)[None]
    moved = z.copy()
    moved[0, k] += sign * 1e-4
    change = np.abs(calibrated_probabilities(moved, 0.8, mapping) - calibrated_probabilities(z, 0.8, mapping)).max()
    assert change < 1e-4 / 0.8 * 12


def test_calibrated_probabilities_are_the_runtime_softmax_then_the_map():
    """One softmax: the export's calibrated probabilities are the runtime's, to the last bit."""
    from edgeskin.calibration import apply_top_label, calibrated_probabilities

    logits = np.random.default_rng(5).normal(0, 3, (50, K))
    mapping = {"x": [0.2, 0.5, 0.9], "y": [0.1, 0.7, 0.95], "max_slope": 2.0}
    np.testing.assert_array_equal(calibrated_probabilities(logits, 0.8), softmax(logits, 0.8))
    np.testing.assert_array_equal(
        calibrated_probabilities(logits, 0.8, mapping), apply_top_label(softmax(logits, 0.8), mapping)
    )


def test_logit_step_sensitivity_matches_a_brute_force_search():
    from edgeskin.calibration import calibrated_probabilities, logit_step_sensitivity

    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (40, 4))
    mapping = {"x": [0.3, 0.7], "y": [0.2, 0.9]}
    report = logit_step_sensitivity(logits, 0.05, 0.9, mapping)
    worst = 0.0
    for n in range(len(logits)):
        base = calibrated_probabilities(logits[n : n + 1], 0.9, mapping)
        for j in range(4):
            for sign in (1, -1):
                moved = logits[n : n + 1].copy()
                moved[0, j] += sign * 0.05
                worst = max(worst, np.abs(calibrated_probabilities(moved, 0.9, mapping) - base).max())
    assert report["max"] == pytest.approx(worst, rel=1e-12) and report["rows"] == 40
    # Temperature alone: a softmax moves by at most step / (4 T) (the largest entry of its Jacobian).
    assert logit_step_sensitivity(logits, 0.05, 0.9)["max"] <= 0.05 / (4 * 0.9) + 1e-12


def test_the_step_map_is_what_amplified_one_int8_step():
    """On data like the shipped classifier's, the isotonic step map amplifies one INT8 logit step about
    tenfold; the smooth map at most by its slope."""
    from edgeskin.calibration import fit_isotonic_top_label, fit_top_label, logit_step_sensitivity

    logits, labels = synthetic(3000, 1.0, seed=4)
    probs = softmax(logits)
    step = 0.0326  # the shipped classifier's logit scale
    iso = logit_step_sensitivity(logits, step, 1.0, fit_isotonic_top_label(probs, labels), full_lead=0.0)["max"]
    smooth = logit_step_sensitivity(logits, step, 1.0, fit_top_label(probs, labels))["max"]
    plain = logit_step_sensitivity(logits, step, 1.0)["max"]
    assert iso > 5 * plain
    assert smooth <= 4 * plain and smooth < 0.05


def test_fit_calibration_reports_ece_and_the_one_step_sensitivity():
    from edgeskin.calibration import check_top_label, fit_calibration

    logits, labels = synthetic(4000, 2.0, seed=5)
    calibration, calibrated = fit_calibration(logits, labels, logit_step=0.03, crossfit_repeats=2)
    check_top_label(calibration["top_label"])
    assert calibration["temperature"] == pytest.approx(2.0, rel=0.1)
    # 2000 held-out rows per half: ECE's sampling noise alone is about 0.02-0.03 here.
    assert calibration["ece_before"] > 0.15 and calibration["ece_after_2fold_crossfit"] < 0.045
    assert set(calibration["ece_2fold_crossfit_2_random_halvings"]) == {"temperature", "isotonic", "smooth"}
    sensitivity = calibration["logit_step_sensitivity"]
    assert sensitivity["logit_step"] == 0.03
    assert sensitivity["smooth_map_after"]["max"] < sensitivity["isotonic_step_map_before"]["max"]
    assert calibrated.shape == logits.shape and np.allclose(calibrated.sum(1), 1)
    assert (calibrated.argmax(1) == logits.argmax(1)).all()  # the decision is unchanged


@pytest.mark.shared
def test_the_shipped_map_keeps_one_int8_step_under_0_05():
    """The shipped classifier's spec: smooth map, and one step of its INT8 logits moves no calibrated
    probability by more than 0.05 on 20,000 random logit vectors spanning its output range."""
    from edgeskin.calibration import check_top_label, logit_step_sensitivity
    from edgeskin.models import default_classifier_path
    from edgeskin.runtime.interpreter import TFLiteModel
    from edgeskin.runtime.spec import load_spec

    path = default_classifier_path()
    spec = load_spec(path.with_suffix(".json"))
    top_label = spec.calibration.get("top_label")
    check_top_label(top_label)
    model = TFLiteModel.from_file(str(path), num_threads=1)
    info = model.output(spec.outputs["probabilities"])
    model.close()
    low, high = (-128 - info.zero_point) * info.scale, (127 - info.zero_point) * info.scale
    rng = np.random.default_rng(0)
    logits = rng.uniform(low, high, (20000, spec.num_classes)) * rng.uniform(0.05, 1.0, (20000, 1))
    report = logit_step_sensitivity(logits, info.scale, spec.temperature, top_label)
    assert report["max"] <= 0.05, report
    recorded = spec.calibration["logit_step_sensitivity"]["smooth_map_after"]["max"]
    assert recorded <= 0.05


def test_the_model_card_states_the_calibration_sensitivity_and_the_guarantee():
    import json
    from pathlib import Path

    from convert.model_card import REPRODUCIBILITY, classifier_section

    root = Path(__file__).resolve().parents[2]
    spec = json.loads((root / "edgeskin/models/edgeskin-mnv2-cls.json").read_text())
    section = classifier_section(spec, (root / "edgeskin/models" / spec["model_file"]).stat().st_size)
    s = spec["calibration"]["logit_step_sensitivity"]
    assert f"at most {s['smooth_map_after']['max']}" in section and "smooth top-label map" in section
    assert f"{s['isotonic_step_map_before']['max']} with the isotonic step map" in section
    assert "bit-identical on x86-64 and on aarch64" in REPRODUCIBILITY and "Edge TPU" in REPRODUCIBILITY
    card = (root / "edgeskin/models/MODEL_CARD.md").read_text()
    # the committed card was generated from this spec
    assert f"at most {s['smooth_map_after']['max']}" in card and REPRODUCIBILITY in card


def test_fit_calibration_lowers_the_slope_until_one_step_is_under_the_target():
    """A coarser INT8 output (a larger step) would move probabilities too far with slope 2: the export then
    refits a flatter map rather than ship one above the target, and says whether the target was met."""
    from edgeskin.calibration import check_top_label, fit_calibration

    logits, labels = synthetic(3000, 0.7, seed=6)
    calibration, _ = fit_calibration(logits, labels, logit_step=0.12, crossfit_repeats=1, max_sensitivity=0.05)
    check_top_label(calibration["top_label"])
    report = calibration["logit_step_sensitivity"]
    plain = report["temperature_only"]["max"]
    assert plain < 0.05  # reachable: the temperature alone stays under it
    assert calibration["top_label"]["max_slope"] < 2.0
    assert report["smooth_map_after"]["max"] <= 0.05 and report["sensitivity_target_met"] is True
    # Unreachable target: reported as missed, with the flattest map tried.
    calibration, _ = fit_calibration(logits, labels, logit_step=0.12, crossfit_repeats=1, max_sensitivity=plain / 2)
    assert calibration["logit_step_sensitivity"]["sensitivity_target_met"] is False
    assert calibration["top_label"]["max_slope"] == 0.5
