"""Calibration and triage: temperature scaling, expected calibration error, malignant-referral threshold.

Fitted at conversion time on validation outputs of the INT8 model and stored in its spec; the runtime
only applies them (``Classifier`` divides logits by the temperature; ``Lesion.refer`` uses the threshold).
"""

from __future__ import annotations

import numpy as np


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    logp = _log_softmax(np.asarray(logits, np.float64) / temperature)
    return float(-logp[np.arange(len(labels)), np.asarray(labels)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature T minimising the validation NLL of softmax(logits / T) (Guo et al., 2017).

    The NLL is unimodal in log T, so a golden-section search on log T converges to the optimum.
    """
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
        bounds=(np.log(bounds[0]), np.log(bounds[1])),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE with equal-width confidence bins: sum over bins of |accuracy - confidence| * share."""
    probs = np.asarray(probabilities, np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def triage_threshold(
    malignant_probability: np.ndarray, is_malignant: np.ndarray, min_sensitivity: float = 0.85
) -> dict:
    """The highest threshold on P(malignant) whose sensitivity is still ≥ ``min_sensitivity``.

    Returns the threshold with the sensitivity and specificity it gives on the data it was fitted on.
    """
    scores = np.asarray(malignant_probability, np.float64)
    positive = np.asarray(is_malignant, bool)
    if positive.sum() == 0 or (~positive).sum() == 0:
        raise ValueError("triage threshold needs both malignant and benign examples")
    best = None
    for threshold in np.unique(scores)[::-1]:
        predicted = scores >= threshold
        sensitivity = (predicted & positive).sum() / positive.sum()
        if sensitivity >= min_sensitivity:
            specificity = (~predicted & ~positive).sum() / (~positive).sum()
            best = {
                "malignant_threshold": float(threshold),
                "sensitivity": float(sensitivity),
                "specificity": float(specificity),
            }
            break
    assert best is not None  # the lowest threshold flags everything: sensitivity 1
    best["min_sensitivity"] = min_sensitivity
    return best
