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
    triage_threshold,
)

K = 7


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


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


def test_fit_temperature_stays_inside_its_bounds():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1, (500, K))
    labels = logits.argmax(axis=1)  # perfectly separable: the NLL keeps falling as T -> 0
    assert fit_temperature(logits, labels, bounds=(0.05, 20.0)) == pytest.approx(0.05, rel=0.01)
    labels = rng.integers(0, K, 500)  # labels unrelated to the logits: best is T -> infinity
    assert fit_temperature(logits, labels, bounds=(0.05, 20.0)) == pytest.approx(20.0, rel=0.01)


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


def step_reliability(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Top probabilities spread over [0.35, 0.99] but right 55 % of the time below 0.7 and 92 % above:
    a reliability curve no single temperature can straighten (a power of the probabilities is smooth)."""
    rng = np.random.default_rng(seed)
    top = rng.uniform(0.35, 0.99, n)
    rest = rng.dirichlet(np.ones(K - 1), n) * (1.0 - top)[:, None]
    probs = np.concatenate([top[:, None], rest], axis=1)
    correct = rng.random(n) < np.where(top > 0.7, 0.92, 0.55)
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
