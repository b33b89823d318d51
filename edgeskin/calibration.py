"""Calibration and triage: temperature scaling, expected calibration error, malignant-referral threshold.

Fitted at conversion time on validation outputs of the INT8 model and stored in its spec; the runtime
only applies them (``Classifier`` divides logits by the temperature, then applies the top-label map when
the spec has one; ``Lesion.refer`` uses the threshold).
"""

from __future__ import annotations

import logging
import math

import numpy as np

logger = logging.getLogger(__name__)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Numerically stable softmax of ``logits / temperature`` over the last axis (float32).

    The one softmax of the project: the runtime's (``edgeskin.tasks.classifier`` re-exports it), the
    calibration fits' and the export's.
    """
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - np.maximum.reduce(z, axis=-1, keepdims=True)  # max and sum are these reductions, minus their wrappers
    e = np.exp(z)
    return (e / np.add.reduce(e, axis=-1, keepdims=True)).astype(np.float32)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    logp = _log_softmax(np.asarray(logits, np.float64) / temperature)
    return float(-logp[np.arange(len(labels)), np.asarray(labels)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature T minimising the validation NLL of softmax(logits / T) (Guo et al., 2017).

    The NLL is unimodal in log T, so a golden-section search on log T converges to the optimum. A fit that
    ends at a bound (:func:`temperature_at_bound`) is logged as a warning: it is no calibration but a sign
    that the logits and labels do not go together (labels in another order, logits of another model or
    already softmaxed, a model no better than chance).
    """
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
        bounds=(np.log(bounds[0]), np.log(bounds[1])),
        method="bounded",
        options={"xatol": 1e-4},
    )
    temperature = float(np.exp(result.x))
    if temperature_at_bound(temperature, bounds):
        logger.warning(
            "the fitted temperature %.5g sits at its bound (%g, %g): the logits barely predict the labels, so it "
            "calibrates nothing; check that the labels and logits belong together",
            temperature, *bounds,
        )  # fmt: skip
    return temperature


def temperature_at_bound(temperature: float, bounds: tuple[float, float] = (0.05, 20.0)) -> bool:
    """Whether a fitted temperature ended within 0.1 % of a bound of its search (e.g. 19.999 of 20)."""
    low, high = bounds
    return temperature <= low * 1.001 or temperature >= high / 1.001


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


# The steepest top-label map the runtime accepts (spec validation) and the default of the fit. A map with
# slope s turns a change dc of the top softmax probability into s * dc: with the shipped classifier's
# logit quantization step (0.033) and temperature (0.80), one INT8 step moves the top softmax probability by
# at most 0.25 * 0.033 / 0.80 = 0.010, so slope 2 keeps the calibrated one within about 0.02. The
# isotonic step function it replaces had slopes in the hundreds (a 0.19 jump for a 0.0005 move).
MAX_TOP_LABEL_SLOPE = 4.0
DEFAULT_TOP_LABEL_SLOPE = 2.0
# What an export aims for: one INT8 logit step moves no calibrated probability by more than this.
MAX_LOGIT_STEP_SENSITIVITY = 0.05


def fit_isotonic_top_label(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, list[float]]:
    """The former step-shaped top-label map: isotonic regression of "the top class is right" on the top
    probability (scikit-learn's knots). Kept to measure what the smooth map replaces; the spec refuses it
    (its slopes are unbounded, see :func:`check_top_label`)."""
    from sklearn.isotonic import IsotonicRegression

    confidence, correct = _top_label_data(probabilities, labels)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(confidence, correct)
    return {"x": [float(v) for v in iso.X_thresholds_], "y": [float(v) for v in iso.y_thresholds_]}


def _top_label_data(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or len(probs) != len(labels) or len(probs) == 0:
        raise ValueError(f"expected (N, n_classes) probabilities and N labels, got {probs.shape} and {labels.shape}")
    return probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64)


def fit_top_label(
    probabilities: np.ndarray,
    labels: np.ndarray,
    max_slope: float = DEFAULT_TOP_LABEL_SLOPE,
    min_per_knot: int = 40,
    min_spacing: float = 0.02,
) -> dict[str, list[float] | float]:
    """Smooth top-label calibration map: monotone, continuous, piecewise linear, slope at most ``max_slope``.

    Temperature scaling cannot fix a model trained with class weights: its confidence is too high on
    the rare classes and too low on the common one at the same time. This recalibrates the confidence of
    the predicted class itself (top-label calibration, Gupta & Ramdas, ICLR 2022); :func:`apply_top_label`
    keeps the predicted class. Unlike isotonic regression, whose step function lets one INT8 logit step
    jump a probability by 0.19 (issue 13), the map is the least-squares fit (Brier score) of "the top class
    is right" by a piecewise-linear function with knots at quantiles of the top probability (at least
    ``min_per_knot`` validation rows between knots, knots at least ``min_spacing`` apart) whose every
    segment rises with a slope in ``[0, max_slope]``: a bounded-variable least-squares problem in the
    start value and the rises. Outside the knots the map is flat. Returns ``{"x", "y", "max_slope"}``
    (what the spec stores).
    """
    from scipy.optimize import lsq_linear

    if not (0 < max_slope <= MAX_TOP_LABEL_SLOPE):
        raise ValueError(f"max_slope: expected a value in (0, {MAX_TOP_LABEL_SLOPE}], got {max_slope}")
    confidence, correct = _top_label_data(probabilities, labels)
    order = np.sort(confidence)
    knots = [float(order[0])]
    for i in range(min_per_knot, len(order), min_per_knot):
        if order[i] - knots[-1] >= min_spacing and order[-1] - order[i] >= min_spacing:
            knots.append(float(order[i]))
    if order[-1] > knots[-1]:
        knots.append(float(order[-1]))
    x = np.asarray(knots)
    if len(x) == 1:  # all rows share one confidence: a constant map at their accuracy
        return {"x": [float(x[0])], "y": [float(correct.mean())], "max_slope": float(max_slope)}
    width = np.diff(x)
    # g(c) = y0 + sum_i d_i * clip((c - x_{i-1}) / width_i, 0, 1), 0 <= d_i <= max_slope * width_i
    ramps = np.clip((confidence[:, None] - x[None, :-1]) / width[None, :], 0.0, 1.0)
    design = np.concatenate([np.ones((len(confidence), 1)), ramps], axis=1)
    lower = np.zeros(len(x))
    upper = np.concatenate([[1.0], max_slope * width])
    fit = lsq_linear(design, correct, bounds=(lower, upper), method="bvls")
    # Clipping the knots to [0, 1] keeps the map monotone and can only lower a segment's slope; the rises
    # are trimmed by a hair so the stored knots pass the slope check after floating-point rounding.
    rises = np.minimum(fit.x[1:], max_slope * width * (1 - 1e-9))
    y = np.clip(fit.x[0] + np.concatenate([[0.0], np.cumsum(rises)]), 0.0, 1.0)
    return {"x": [float(v) for v in x], "y": [float(v) for v in y], "max_slope": float(max_slope)}


# The map acts in full once the top class leads the runner-up by this much probability, and not at all at
# a tie: otherwise a decision that flips between two near-equal classes would swap a calibrated and a
# rescaled value (a jump), the cliff that made IMD045 read nv 0.52 on x86 and bkl 0.56 on aarch64.
TOP_LABEL_FULL_LEAD = 0.1


def apply_top_label(probabilities: np.ndarray, mapping: dict, full_lead: float = TOP_LABEL_FULL_LEAD) -> np.ndarray:
    """Probabilities whose top value follows ``mapping`` (:func:`fit_top_label`); the top class stays on top.

    The other classes share what is left in their original proportions. The mapped confidence never falls
    below the point halfway between the level that would tie the rescaled runner-up and the original
    confidence, so the decision (argmax) never changes and keeps a lead. Where the top class leads the
    runner-up by less than ``full_lead``, the confidence moves only that fraction of the way from the
    softmax value to the mapped one, so the result is continuous in the probabilities, across decision
    flips too (at a tie the row is left as it is). Works on (n_classes,) or (N, n_classes) arrays; rows
    sum to 1.
    """
    probs = np.asarray(probabilities, np.float64)
    single = probs.ndim == 1
    probs = np.atleast_2d(probs)
    if len(probs) == 1:  # one image (the runtime's case): the same arithmetic on scalars, a fraction of the calls
        row = _top_label_row(probs[0], mapping, full_lead)
        if row is not None:
            return row if single else row[np.newaxis]
    top = probs.argmax(axis=1)
    rows = np.arange(len(probs))
    confidence = probs[rows, top]
    mapped = np.interp(confidence, mapping["x"], mapping["y"])
    others = probs.copy()
    others[rows, top] = 0.0
    rest = others.sum(axis=1)
    runner_up = others.max(axis=1)
    # With the others scaled by (1 - g) / rest, the runner-up becomes r (1 - g) / rest, so g must stay above
    # floor = r / (rest + r). The original confidence c is above that floor whenever c > r; g never goes
    # below the midpoint of floor and c, which keeps a visible lead (not a tie that rounding could turn
    # into another class). A maximum of two continuous functions: no jump where the map meets the floor.
    with np.errstate(divide="ignore", invalid="ignore"):
        floor = np.where(rest > 0, runner_up / (rest + runner_up), 0.0)
    mapped = np.clip(np.maximum(mapped, 0.5 * (floor + confidence)), 0.0, 1.0)
    tied = confidence <= runner_up  # no lead to keep: the row is left as it is
    scale = np.where(rest > 0, (1.0 - mapped) / np.where(rest > 0, rest, 1.0), 0.0)
    out = others * scale[:, None]
    out[rows, top] = np.where(rest > 0, mapped, 1.0)
    if full_lead > 0:
        # Blending the whole rows (the same as moving the top value part of the way and rescaling the others)
        # keeps the order exactly where the lead is tiny: there the row stays the softmax to the last bit.
        weight = np.clip((confidence - runner_up) / full_lead, 0.0, 1.0)[:, None]
        out = np.where(weight >= 1.0, out, (1.0 - weight) * probs + weight * out)
    out[tied] = probs[tied]
    return out[0] if single else out


def _top_label_row(probs: np.ndarray, mapping: dict, full_lead: float) -> np.ndarray | None:
    """:func:`apply_top_label` of one (n_classes,) float64 row, operation for operation: its scalars on Python
    floats (IEEE doubles, as numpy's float64), its few row-wide steps on the row itself, so the result is
    bit-identical to the batch form; None for a row that is not finite."""
    top = int(probs.argmax())
    confidence = float(probs[top])
    others = probs.copy()
    others[top] = 0.0
    rest, runner_up = float(others.sum()), float(others.max())
    if not (math.isfinite(confidence) and math.isfinite(rest)):
        return None
    if confidence <= runner_up:  # tied: left as it is
        return probs.copy()
    mapped = float(np.interp(confidence, mapping["x"], mapping["y"]))
    floor = runner_up / (rest + runner_up) if rest > 0 else 0.0
    mapped = min(max(max(mapped, 0.5 * (floor + confidence)), 0.0), 1.0)
    out = others * ((1.0 - mapped) / rest if rest > 0 else 0.0)
    out[top] = mapped if rest > 0 else 1.0
    if full_lead > 0:
        weight = min(max((confidence - runner_up) / full_lead, 0.0), 1.0)
        if weight < 1.0:
            out = (1.0 - weight) * probs + weight * out
    return out


def check_top_label(mapping: object) -> None:
    """Raise ValueError unless ``mapping`` is a valid smooth top-label map (:func:`fit_top_label`).

    ``{"x": [...], "y": [...]}`` (optionally ``"max_slope"``): knots in [0, 1], non-decreasing, and no
    segment steeper than ``max_slope`` (default and at most :data:`MAX_TOP_LABEL_SLOPE`). A step-shaped
    map (isotonic regression, or repeated x with different y) is refused: it turns one INT8 logit step
    into a jump of the probability.
    """
    if not isinstance(mapping, dict) or not {"x", "y"} <= set(mapping) or set(mapping) - {"x", "y", "max_slope"}:
        raise ValueError(f'expected {{"x": [...], "y": [...], "max_slope": s}}, got {mapping!r:.80}')
    x, y = np.asarray(mapping["x"], np.float64), np.asarray(mapping["y"], np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 1:
        raise ValueError("x and y must be lists of the same non-zero length")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite numbers")
    if (x < 0).any() or (x > 1).any() or (y < 0).any() or (y > 1).any():
        raise ValueError("x and y must lie in [0, 1]")
    if (np.diff(x) < 0).any() or (np.diff(y) < 0).any():
        raise ValueError("x and y must be non-decreasing")
    max_slope = mapping.get("max_slope", MAX_TOP_LABEL_SLOPE)
    if (
        isinstance(max_slope, bool)
        or not isinstance(max_slope, (int, float))
        or not 0 < max_slope <= MAX_TOP_LABEL_SLOPE
    ):
        raise ValueError(f"max_slope must be a number in (0, {MAX_TOP_LABEL_SLOPE}], got {max_slope!r}")
    dx, dy = np.diff(x), np.diff(y)
    steep = dy > max_slope * dx + 1e-12
    if steep.any():
        i = int(np.argmax(steep))
        slope = "a vertical step" if dx[i] == 0 else f"slope {dy[i] / dx[i]:.3g}"
        raise ValueError(
            f"{slope} between x = {x[i]:.6g} and {x[i + 1]:.6g} exceeds the maximum slope {max_slope:g}: a "
            "step-shaped map makes probabilities jump with one INT8 logit step; refit it with "
            "edgeskin.calibration.fit_top_label (python -m convert.refit_calibration)"
        )


def calibrated_probabilities(
    logits: np.ndarray,
    temperature: float = 1.0,
    top_label: dict | None = None,
    full_lead: float = TOP_LABEL_FULL_LEAD,
) -> np.ndarray:
    """What the runtime reports for (N, n_classes) logits: softmax(logits / T), then the top-label map."""
    probs = softmax(logits, temperature)
    return probs if top_label is None else apply_top_label(probs, top_label, full_lead)


def logit_step_sensitivity(
    logits: np.ndarray,
    step: float,
    temperature: float = 1.0,
    top_label: dict | None = None,
    full_lead: float = TOP_LABEL_FULL_LEAD,
) -> dict[str, float | int]:
    """The largest change of any output probability when one logit moves by one quantization step.

    For every row of ``logits`` (N, n_classes), every class and both directions, the logit is moved by
    ``step`` (the INT8 output's scale: one step of a single-view model, or every view of a test-time
    averaged one moving together) and the calibrated probabilities (:func:`calibrated_probabilities`)
    are recomputed. Returns the maximum absolute change over all of them, where it happened, and the
    99th percentile over rows of each row's largest change.
    """
    z = np.asarray(logits, np.float64)
    if z.ndim != 2 or len(z) == 0 or not step > 0:
        raise ValueError(f"expected (N, n_classes) logits and a positive step, got {z.shape} and {step}")
    n, k = z.shape
    base = calibrated_probabilities(z, temperature, top_label, full_lead)
    worst = np.zeros(n)
    where = np.zeros(n, dtype=np.int64)
    for j in range(k):
        for sign in (1.0, -1.0):
            moved = z.copy()
            moved[:, j] += sign * step
            change = np.abs(calibrated_probabilities(moved, temperature, top_label, full_lead) - base).max(axis=1)
            better = change > worst
            worst = np.where(better, change, worst)
            where = np.where(better, j, where)
    row = int(np.argmax(worst))
    return {
        "max": float(worst[row]),
        "p99": float(np.quantile(worst, 0.99)),
        "row": row,
        "logit": int(where[row]),
        "step": float(step),
        "rows": n,
    }


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


def fit_calibration(
    logits: np.ndarray,
    labels: np.ndarray,
    logit_step: float,
    max_slope: float = DEFAULT_TOP_LABEL_SLOPE,
    n_bins: int = 15,
    crossfit_repeats: int = 20,
    max_sensitivity: float = MAX_LOGIT_STEP_SENSITIVITY,
) -> tuple[dict, np.ndarray]:
    """Temperature, then the smooth top-label map, on (N, n_classes) validation logits; with the figures.

    What an export stores as the spec's ``"calibration"``: the temperature and the map (fitted on all rows),
    ECE before and after (in-sample, and 2-fold cross-fitted: each half calibrated by the other half's
    fit, the honest estimate; on alternating rows as before, and averaged over ``crossfit_repeats`` random
    halvings, since one halving of a few hundred rows moves the ECE by about ±0.01), and the one-step logit sensitivity (:func:`logit_step_sensitivity`, with
    ``logit_step`` the INT8 logits' scale) of the temperature alone, of the former isotonic step map and of
    the smooth map. When one step would move a probability by more than ``max_sensitivity`` with the
    map's slope, the map is refitted with a lower slope (1.5, 1, 0.75, 0.5) until it does not (the slope
    used is the map's ``max_slope``; ``sensitivity_target_met`` says whether it was reached: a temperature
    alone moves a probability by up to step / 4T, which no map can undo). Returns that dict and the
    calibrated probabilities of the rows.
    """
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels)
    temperature = fit_temperature(logits, labels)
    scaled = calibrated_probabilities(logits, temperature)
    for slope in [max_slope] + [s for s in (1.5, 1.0, 0.75, 0.5) if s < max_slope]:
        top_label = fit_top_label(scaled, labels, max_slope=slope)
        after = logit_step_sensitivity(logits, logit_step, temperature, top_label)
        if after["max"] <= max_sensitivity:
            break
    max_slope = top_label["max_slope"]
    calibrated = apply_top_label(scaled, top_label)
    alternating = _crossfit_ece(logits, labels, [np.arange(len(labels)) % 2], max_slope, n_bins)
    halvings = [np.random.default_rng(seed).permutation(len(labels)) % 2 for seed in range(crossfit_repeats)]
    repeated = _crossfit_ece(logits, labels, halvings, max_slope, n_bins)
    # The former map as it ran (isotonic step function, no lead weighting), for the before/after figures.
    isotonic = fit_isotonic_top_label(scaled, labels)
    sensitivity = {
        "temperature_only": logit_step_sensitivity(logits, logit_step, temperature),
        "isotonic_step_map_before": logit_step_sensitivity(logits, logit_step, temperature, isotonic, full_lead=0.0),
        "smooth_map_after": after,
    }
    calibration = {
        "temperature": round(temperature, 5),
        "temperature_at_bound": temperature_at_bound(temperature),
        "top_label": top_label,
        "ece_before": round(expected_calibration_error(calibrated_probabilities(logits), labels, n_bins), 5),
        "ece_after_temperature": round(expected_calibration_error(scaled, labels, n_bins), 5),
        "ece_after": round(expected_calibration_error(calibrated, labels, n_bins), 5),
        "ece_after_temperature_2fold_crossfit": alternating["temperature"][0],
        "ece_after_2fold_crossfit": alternating["smooth"][0],
        "ece_isotonic_step_map_2fold_crossfit": alternating["isotonic"][0],
        f"ece_2fold_crossfit_{crossfit_repeats}_random_halvings": {
            name: {"mean": mean, "std": std} for name, (mean, std) in repeated.items()
        },
        "ece_bins": n_bins,
        "logit_step_sensitivity": {
            "definition": (
                "largest change of any calibrated probability when one logit moves by one INT8 step "
                "(the logits output's scale), over the rows it was fitted on"
            ),
            "logit_step": round(float(logit_step), 6),
            **{name: _rounded(report) for name, report in sensitivity.items()},
            "target": max_sensitivity,
            "sensitivity_target_met": bool(after["max"] <= max_sensitivity),
        },
    }
    return calibration, calibrated


def _crossfit_ece(
    logits: np.ndarray, labels: np.ndarray, halvings: list[np.ndarray], max_slope: float, n_bins: int
) -> dict[str, tuple[float, float]]:
    """Held-out ECE (mean, std over halves) of temperature alone, + isotonic step map, + smooth map: each
    half calibrated by a fit on the other half, for each 0/1 assignment of rows in ``halvings``."""
    eces: dict[str, list[float]] = {"temperature": [], "isotonic": [], "smooth": []}
    for halving in halvings:
        for part in (0, 1):
            fit, held = halving != part, halving == part
            t = fit_temperature(logits[fit], labels[fit])
            fitted = calibrated_probabilities(logits[fit], t)
            held_out = calibrated_probabilities(logits[held], t)
            isotonic = fit_isotonic_top_label(fitted, labels[fit])
            smooth = fit_top_label(fitted, labels[fit], max_slope=max_slope)
            for name, probs in (
                ("temperature", held_out),
                ("isotonic", apply_top_label(held_out, isotonic, full_lead=0.0)),
                ("smooth", apply_top_label(held_out, smooth)),
            ):
                eces[name].append(expected_calibration_error(probs, labels[held], n_bins))
    return {name: (round(float(np.mean(v)), 5), round(float(np.std(v)), 5)) for name, v in eces.items()}


def _rounded(report: dict) -> dict:
    return {k: round(v, 5) if isinstance(v, float) else v for k, v in report.items()}
