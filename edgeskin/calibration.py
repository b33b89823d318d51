"""Calibration and triage: temperature scaling, expected calibration error, malignant-referral threshold.

Fitted at conversion time on validation outputs of the INT8 model and stored in its spec; the runtime
only applies them (``Classifier`` divides logits by the temperature, then applies the top-label map when
the spec has one; ``Lesion.refer`` uses the threshold).
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


def fit_top_label(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, list[float]]:
    """Top-label calibration map: isotonic regression of "the top class is right" on the top probability.

    Temperature scaling cannot fix a model trained with class weights: its confidence is too high on
    the rare classes and too low on the common one at the same time. This recalibrates the confidence of
    the predicted class itself (top-label calibration, Gupta & Ramdas, ICLR 2022), with scikit-learn's
    IsotonicRegression; :func:`apply_top_label` keeps the predicted class. Returns the knots of the
    monotone piecewise-linear map ``{"x": [...], "y": [...]}`` (what the spec stores).
    """
    from sklearn.isotonic import IsotonicRegression

    probs = np.asarray(probabilities, np.float64)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(confidence, correct)
    return {"x": [float(v) for v in iso.X_thresholds_], "y": [float(v) for v in iso.y_thresholds_]}


def apply_top_label(probabilities: np.ndarray, mapping: dict) -> np.ndarray:
    """Probabilities whose top value follows ``mapping`` (:func:`fit_top_label`); the top class stays on top.

    The other classes share what is left in their original proportions. Where the mapped confidence
    would fall to or below the rescaled runner-up, it is set halfway between that level and the original
    confidence, so the decision (argmax) never changes and keeps a lead. Works on (n_classes,) or (N, n_classes) arrays; rows sum to 1.
    """
    probs = np.asarray(probabilities, np.float64)
    single = probs.ndim == 1
    probs = np.atleast_2d(probs)
    top = probs.argmax(axis=1)
    rows = np.arange(len(probs))
    confidence = probs[rows, top]
    mapped = np.interp(confidence, mapping["x"], mapping["y"])
    others = probs.copy()
    others[rows, top] = 0.0
    rest = others.sum(axis=1)
    runner_up = others.max(axis=1)
    # With the others scaled by (1 - g) / rest, the runner-up becomes r (1 - g) / rest, so g must stay above
    # floor = r / (rest + r). The original confidence c is above that floor whenever c > r; where the map
    # would go below it, g takes the midpoint of floor and c, which keeps a visible lead (not a tie that
    # rounding could turn into another class).
    with np.errstate(divide="ignore", invalid="ignore"):
        floor = np.where(rest > 0, runner_up / (rest + runner_up), 0.0)
    mapped = np.where(mapped > floor, mapped, 0.5 * (floor + confidence))
    mapped = np.clip(mapped, 0.0, 1.0)
    tied = confidence <= runner_up  # no lead to keep: the row is left as it is
    scale = np.where(rest > 0, (1.0 - mapped) / np.where(rest > 0, rest, 1.0), 0.0)
    out = others * scale[:, None]
    out[rows, top] = np.where(rest > 0, mapped, 1.0)
    out[tied] = probs[tied]
    return out[0] if single else out


def check_top_label(mapping: object) -> None:
    """Raise ValueError unless ``mapping`` is a valid ``{"x": [...], "y": [...]}`` monotone map on [0, 1]."""
    if not isinstance(mapping, dict) or set(mapping) != {"x", "y"}:
        raise ValueError(f'expected {{"x": [...], "y": [...]}}, got {mapping!r:.80}')
    x, y = np.asarray(mapping["x"], np.float64), np.asarray(mapping["y"], np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 1:
        raise ValueError("x and y must be lists of the same non-zero length")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite numbers")
    if (x < 0).any() or (x > 1).any() or (y < 0).any() or (y > 1).any():
        raise ValueError("x and y must lie in [0, 1]")
    if (np.diff(x) < 0).any() or (np.diff(y) < 0).any():
        raise ValueError("x and y must be non-decreasing")


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
