"""Evaluation metrics and plots for ``edgeskin evaluate`` (classification, triage, localisation).

Pure functions on arrays: predictions in, JSON-ready dicts out. Classification metrics come from
scikit-learn and plots from matplotlib (Agg backend, files only); both are imported lazily inside the
functions that need them (``pip install 'edgeskin[eval]'``). Detection metrics are numpy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeskin.core.boxes import box_iou
from edgeskin.errors import require
from edgeskin.labels import (
    DX8_CLASSES,
    DX_CLASSES,
    GROUPS,
    ISIC2018_COLUMNS,
    ISIC2019_COLUMNS,
    dx7_matrix,
    dx_index_to_group_index,
    malignant_index,
    malignant_probability,
    to_dx7,
    to_groups,
)

__all__ = [
    "average_precision",
    "classification_metrics",
    "classify_report",
    "detection_report",
    "iou_summary",
    "isic_csv",
    "malignant_metrics",
    "plot_confusion_matrix",
    "plot_roc_curves",
    "save_classification_plots",
    "stratified_sample",
    "top_box_ious",
]

_PURPOSE = "edgeskin evaluation"


def _sklearn_metrics() -> Any:
    return require("sklearn.metrics", "eval", _PURPOSE)


def _round(value: float | None, digits: int = 6) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def _check_predictions(y_true: np.ndarray, probabilities: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(np.int64).reshape(-1)
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != n_labels:
        raise ValueError(f"probabilities: expected shape (n, {n_labels}), got {p.shape}")
    if len(y) != len(p):
        raise ValueError(f"expected one label per prediction, got {len(y)} labels and {len(p)} predictions")
    if len(y) == 0:
        raise ValueError("expected at least one prediction, got none")
    if y.min() < 0 or y.max() >= n_labels:
        raise ValueError(f"labels: expected class indices in [0, {n_labels}), got values in [{y.min()}, {y.max()}]")
    return y, p


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, probabilities: np.ndarray, labels: Sequence[str]
) -> dict[str, Any]:
    """Multi-class metrics of predicted probabilities against integer labels.

    Args:
        y_true: (n,) true class indices into ``labels``.
        probabilities: (n, K) predicted probabilities in ``labels`` order; the prediction is the argmax.
        labels: The K class names.

    Returns:
        ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present in ``y_true``, as
        scikit-learn), ``macro_f1`` (scikit-learn's macro F1 over the classes present in the truth or the
        predictions), ``auc`` (one-vs-rest ROC AUC averaged over the classes that have both positives and
        negatives in ``y_true``; equal to ``roc_auc_score(multi_class="ovr", average="macro")`` when every
        class is present; None when no class qualifies), ``per_class`` ({label: precision, recall, f1,
        support, auc}), ``confusion_matrix`` (rows: true, columns: predicted) and ``labels`` (its order).
    """
    metrics = _sklearn_metrics()
    labels = list(labels)
    y, p = _check_predictions(np.asarray(y_true), probabilities, len(labels))
    pred = p.argmax(axis=1)
    index = list(range(len(labels)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true" and zero-division notes
        balanced = metrics.balanced_accuracy_score(y, pred)
        macro_f1 = metrics.f1_score(y, pred, average="macro", zero_division=0)
        precision, recall, f1, support = metrics.precision_recall_fscore_support(y, pred, labels=index, zero_division=0)
    per_class_auc: list[float | None] = []
    for k in index:
        positives = y == k
        if positives.all() or not positives.any():
            per_class_auc.append(None)
        else:
            per_class_auc.append(float(metrics.roc_auc_score(positives, p[:, k])))
    defined = [a for a in per_class_auc if a is not None]
    return {
        "accuracy": _round(metrics.accuracy_score(y, pred)),
        "balanced_accuracy": _round(balanced),
        "macro_f1": _round(macro_f1),
        "auc": _round(float(np.mean(defined))) if defined else None,
        "per_class": {
            name: {
                "precision": _round(precision[k]),
                "recall": _round(recall[k]),
                "f1": _round(f1[k]),
                "support": int(support[k]),
                "auc": _round(per_class_auc[k]),
            }
            for k, name in enumerate(labels)
        },
        "confusion_matrix": metrics.confusion_matrix(y, pred, labels=index).tolist(),
        "labels": labels,
    }


def _referred(
    y_true_dx: Sequence[int] | np.ndarray,
    dx_probabilities: np.ndarray,
    dx_labels: Sequence[str],
    threshold: float | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The checked labels and probabilities, and the pipeline's refer decision for each row."""
    from edgeskin.labels import refer_decision

    y, p = _check_predictions(np.asarray(y_true_dx), dx_probabilities, len(dx_labels))
    return y, p, refer_decision(p.astype(np.float32), dx_labels, threshold)


def malignant_metrics(
    y_true_dx: Sequence[int] | np.ndarray,
    dx_probabilities: np.ndarray,
    threshold: float | None = None,
    dx_labels: Sequence[str] = DX_CLASSES,
) -> dict[str, Any]:
    """Sensitivity and specificity of the refer decision for malignant lesions (mel, bcc, akiec).

    The decision is the pipeline's (:func:`edgeskin.tasks.pipeline.refer_decision`): malignant
    probability >= ``threshold`` when the model has a triage threshold, else "the most probable of
    the 4 groups is not Benign". ``rule`` says which was used.
    """
    from edgeskin.labels import refer_rule

    y, p, decided = _referred(y_true_dx, dx_probabilities, dx_labels, threshold)
    malignant = malignant_index(dx_labels)
    truth = np.isin(y, malignant)
    tp = int((truth & decided).sum())
    fn = int((truth & ~decided).sum())
    tn = int((~truth & ~decided).sum())
    fp = int((~truth & decided).sum())
    auc = None
    if truth.any() and not truth.all():
        auc = float(_sklearn_metrics().roc_auc_score(truth, malignant_probability(p, dx_labels)))
    return {
        "sensitivity": _round(tp / (tp + fn)) if tp + fn else None,
        "specificity": _round(tn / (tn + fp)) if tn + fp else None,
        "rule": refer_rule(threshold),
        "threshold": threshold,
        "auc": _round(auc),
        "n_malignant": int(truth.sum()),
        "n_benign": int((~truth).sum()),
        "counts": {"tp": tp, "fn": fn, "tn": tn, "fp": fp},
        "malignant_dx": [dx_labels[i] for i in malignant],
    }


def sensitivity_at_specificity(truth: np.ndarray, scores: np.ndarray, specificity: float) -> float | None:
    """The highest sensitivity of a threshold on ``scores`` whose specificity is at least ``specificity``."""
    truth = np.asarray(truth, bool)
    if truth.all() or not truth.any():
        return None
    fpr, tpr, _ = _sklearn_metrics().roc_curve(truth, scores)
    allowed = fpr <= 1.0 - specificity + 1e-12
    return _round(float(tpr[allowed].max())) if allowed.any() else 0.0


def melanoma_metrics(
    y_true_dx: np.ndarray, dx_probabilities: np.ndarray, dx_labels: Sequence[str], threshold: float | None
) -> dict[str, Any]:
    """Melanoma against everything else: AUC of P(mel) and of P(malignant), sensitivity at 80 % and 90 %
    specificity (of P(mel)), and the share of melanomas and of benign lesions that the refer decision refers."""
    y, p, referred = _referred(y_true_dx, dx_probabilities, dx_labels, threshold)
    labels = list(dx_labels)
    truth = y == labels.index("mel")
    benign = ~np.isin(y, malignant_index(labels))
    out: dict[str, Any] = {"n_melanoma": int(truth.sum()), "n_benign": int(benign.sum())}
    if truth.any() and not truth.all():
        metrics = _sklearn_metrics()
        p_mel = p[:, labels.index("mel")]
        out["auc_p_mel"] = _round(float(metrics.roc_auc_score(truth, p_mel)))
        out["auc_p_malignant"] = _round(float(metrics.roc_auc_score(truth, malignant_probability(p, labels))))
        out["sensitivity_at_80_specificity"] = sensitivity_at_specificity(truth, p_mel, 0.8)
        out["sensitivity_at_90_specificity"] = sensitivity_at_specificity(truth, p_mel, 0.9)
    out["melanomas_referred"] = _round(float(referred[truth].mean())) if truth.any() else None
    out["benign_referred"] = _round(float(referred[benign].mean())) if benign.any() else None
    return out


def classify_report(
    y_true_dx: Sequence[int] | np.ndarray,
    dx_probabilities: np.ndarray,
    *,
    malignant_threshold: float | None = None,
    dx_labels: Sequence[str] = DX_CLASSES,
) -> dict[str, Any]:
    """``n``, ``dx``, ``group``, ``malignant`` and ``melanoma`` sections of ``edgeskin evaluate classify``.

    Args:
        y_true_dx: (n,) true dx indices into ``dx_labels``.
        dx_probabilities: (n, K) probabilities in ``dx_labels`` order.
        malignant_threshold: The model's triage threshold, or None.
        dx_labels: ``DX_CLASSES`` (the 7 HAM10000 dx) or ``DX8_CLASSES`` (the 8 ISIC 2019 dx). With 8, the
            report adds ``dx8`` (the 8 classes) and ``scc_vs_ak`` (precision and recall of both, and the
            2 x 2 confusion among the lesions that are either), and ``dx`` is the 7-dx view (ak + scc = akiec).

    Group probabilities are the sums of their dx probabilities; the group prediction is their argmax.
    """
    labels = tuple(dx_labels)
    y, p = _check_predictions(np.asarray(y_true_dx), dx_probabilities, len(labels))
    p = p.astype(np.float32)
    report: dict[str, Any] = {"n": int(len(y))}
    if labels == DX_CLASSES:
        y7, p7 = y, p
    else:
        report["dx8"] = classification_metrics(y, p, labels)
        y7 = np.argmax(dx7_matrix(labels)[y], axis=1)
        p7 = to_dx7(p, labels)
        if {"ak", "scc"} <= set(labels):
            report["scc_vs_ak"] = scc_vs_ak(report["dx8"], labels)
    report["dx"] = classification_metrics(y7, p7, DX_CLASSES)
    report["group"] = classification_metrics(dx_index_to_group_index(y, labels), to_groups(p, labels), GROUPS)
    report["malignant"] = malignant_metrics(y, p, malignant_threshold, labels)
    report["melanoma"] = melanoma_metrics(y, p, labels, malignant_threshold)
    return report


def scc_vs_ak(dx8: dict[str, Any], labels: Sequence[str]) -> dict[str, Any]:
    """Precision and recall of ``scc`` and ``ak`` (from an 8-class report) and their 2 x 2 confusion."""
    labels = list(labels)
    matrix = np.asarray(dx8["confusion_matrix"])
    a, s = labels.index("ak"), labels.index("scc")
    return {
        "ak": {k: dx8["per_class"]["ak"][k] for k in ("precision", "recall", "support")},
        "scc": {k: dx8["per_class"]["scc"][k] for k in ("precision", "recall", "support")},
        "confusion_true_ak_scc_vs_predicted_ak_scc": matrix[np.ix_([a, s], [a, s])].tolist(),
        "note": "rows: true ak, scc; columns: predicted ak, scc (other predictions not shown)",
    }


def stratified_sample(labels: Sequence[int] | np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded sample of ``limit`` of ``labels``, each class in proportion to its count.

    A quick check on the first rows of a file measures little (the first thousand rows of HAM10000's
    metadata are bkl but one): this draws across the whole file instead (scikit-learn's ``resample(stratify=...)``, which gives
    a class with less than one ``limit``-th of the rows one image or none). All indices when ``limit`` is
    at least the number of labels.
    """
    y = np.asarray(labels).reshape(-1)
    if limit < 1:
        raise ValueError(f"limit: expected a positive number, got {limit}")
    if limit >= len(y):
        return np.arange(len(y))
    resample = require("sklearn.utils", "eval", _PURPOSE).resample
    chosen = resample(np.arange(len(y)), replace=False, n_samples=limit, stratify=y, random_state=seed)
    return np.sort(chosen)


def isic_csv(image_ids: Sequence[str], probabilities: np.ndarray, dx_labels: Sequence[str]) -> str:
    """The ISIC challenge CSV of ``probabilities`` (n, K) in ``dx_labels`` order: a submission, or with one-hot
    rows the matching ground truth, for the official scorer (``isic-challenge-scoring``).

    7 dx (``DX_CLASSES``): ISIC 2018 Task 3, ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``. 8 dx (``DX8_CLASSES``):
    the ISIC 2019 columns without UNK, ``image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC`` (the scorer takes its classes
    from the truth file and fails on a class without positives, as UNK is in the ISIC 2019 training ground
    truth: score against that file without its UNK column, or against ``--truth``). Values are
    clipped to [0, 1] and written as the shortest decimals that read back as the same float32 (always with a
    point: the scorer rejects integer columns), so the scorer ranks and picks the classes as
    :func:`classification_metrics` does.
    """
    labels = tuple(dx_labels)
    columns = {DX_CLASSES: ISIC2018_COLUMNS, DX8_CLASSES: ISIC2019_COLUMNS[:-1]}.get(labels)
    if columns is None:
        raise ValueError(f"dx_labels: expected {list(DX_CLASSES)} or {list(DX8_CLASSES)}, got {list(labels)}")
    p = np.asarray(probabilities, np.float32)
    if p.ndim != 2 or p.shape != (len(image_ids), len(labels)):
        raise ValueError(f"probabilities: expected shape ({len(image_ids)}, {len(labels)}), got {p.shape}")
    table = np.clip(p[:, [labels.index(column.lower()) for column in columns]], 0.0, 1.0)
    lines = [",".join(("image", *columns))]
    lines += [",".join((str(i), *map(_float32_text, row))) for i, row in zip(image_ids, table, strict=True)]
    return "\n".join(lines) + "\n"


def _float32_text(value: float) -> str:
    return np.format_float_positional(np.float32(value), unique=True, trim="0")


# -- localisation ------------------------------------------------------------------------------------------


def average_precision(scores: np.ndarray, is_true_positive: np.ndarray, n_ground_truth: int) -> float:
    """All-point interpolated average precision (PASCAL VOC 2010+), for one class.

    Args:
        scores: (M,) confidence of every prediction over all images.
        is_true_positive: (M,) whether each prediction was matched to a ground-truth box.
        n_ground_truth: Number of ground-truth boxes; those never matched bound the recall below 1.

    Returns:
        The area under the precision envelope (precision made monotone from the right) against recall;
        0.0 without predictions.
    """
    if n_ground_truth <= 0:
        raise ValueError(f"n_ground_truth: expected a positive count, got {n_ground_truth}")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    hits = np.asarray(is_true_positive, dtype=bool).reshape(-1)
    if scores.size == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(hits[order])
    fp = np.cumsum(~hits[order])
    recall = tp / n_ground_truth
    precision = tp / (tp + fp)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def top_box_ious(gt_boxes: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(IoU of the highest-scoring box, highest IoU of any box) with the nearest ground-truth box; (0, 0) without
    boxes. ``gt_boxes``: one (4,) box or (M, 4) boxes, xyxy."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    truths = np.asarray(gt_boxes, dtype=np.float32).reshape(-1, 4)
    if len(boxes) == 0 or len(truths) == 0:
        return 0.0, 0.0
    ious = box_iou(truths, boxes)
    top = int(np.argmax(np.asarray(scores, dtype=np.float64)))  # first of equal scores
    return float(ious[:, top].max()), float(ious.max())


def _matches(truths: np.ndarray, boxes: np.ndarray, order: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Which boxes are true positives: in ``order`` (best score first), each takes the unmatched ground-truth box
    it overlaps most if that IoU is >= ``iou_threshold``; later boxes on a taken one are duplicates."""
    hits = np.zeros(len(boxes), bool)
    if len(truths) == 0 or len(boxes) == 0:
        return hits
    ious = box_iou(truths, boxes)
    free = np.ones(len(truths), bool)
    for index in order:
        candidates = np.where(free, ious[:, index], -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= iou_threshold:
            free[best] = False
            hits[index] = True
    return hits


def iou_summary(ious: Sequence[float], digits: int = 6) -> dict[str, Any]:
    """``n``, ``mean_iou``, ``median_iou`` and ``iou50_rate`` (share of images with IoU >= 0.5) of per-image IoUs.

    The one IoU summary of the project (``edgeskin evaluate detect``, the detector's training and export records,
    the benchmark report). Without any IoU the statistics are None.
    """
    values = np.asarray(ious, dtype=np.float64).reshape(-1)
    if values.size == 0:
        return {"n": 0, "mean_iou": None, "median_iou": None, "iou50_rate": None}
    return {
        "n": int(values.size),
        "mean_iou": _round(float(values.mean()), digits),
        "median_iou": _round(float(np.median(values)), digits),
        "iou50_rate": _round(float((values >= 0.5).mean()), digits),
    }


def detection_report(
    ground_truth: Sequence[np.ndarray | None],
    predictions: Sequence[tuple[np.ndarray, np.ndarray]],
    iou_threshold: float = 0.5,
    *,
    image_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Localisation metrics: the one detection evaluator (``edgeskin evaluate detect``, the benchmark report, the
    detector's training and export records).

    Args:
        ground_truth: Per image, the ground-truth xyxy box (4,) or boxes (M, 4), or None / (0, 4) when the image
            has no lesion (an empty mask, a hard negative: left out of the IoU statistics, its predictions count
            as false positives in AP).
        predictions: Per image, ``(boxes (k, 4), scores (k,))`` in the same pixels.
        iou_threshold: IoU for a correct box (0.5).
        image_ids: With one id per image, the report adds ``per_image``: ``{id: {iou, box, truth, n_boxes}}``
            (the top box's IoU and the boxes rounded to 0.1 px).

    Returns:
        ``n`` (images with a ground-truth box), ``mean_iou`` / ``median_iou`` / ``iou50_rate`` of the
        **highest-scoring box** of each image with its nearest ground-truth box (no box: IoU 0), ``map50``
        (all-point interpolated AP at ``iou_threshold`` over all predictions of all images ranked by score; in
        score order each box takes the unmatched ground-truth box it overlaps most when their IoU reaches the
        threshold, later ones are duplicates), ``best_box_iou`` (the same statistics for the highest-IoU box of
        each image, an upper bound), ``no_box`` and ``empty_masks`` counts, and ``definitions``.
    """
    if len(ground_truth) != len(predictions):
        raise ValueError(
            f"expected one prediction per image, got {len(ground_truth)} images and {len(predictions)} predictions"
        )
    if image_ids is not None and len(image_ids) != len(predictions):
        raise ValueError(f"expected one image id per image, got {len(image_ids)} ids and {len(predictions)} images")
    top_ious, best_ious = [], []
    all_scores, all_hits = [], []
    per_image: dict[str, dict[str, Any]] = {}
    no_box = empty = n_truths = 0
    for index, (gt, (boxes, scores)) in enumerate(zip(ground_truth, predictions, strict=True)):
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f"expected one score per box, got {len(boxes)} boxes and {len(scores)} scores")
        truths = np.zeros((0, 4), np.float32) if gt is None else np.asarray(gt, np.float32).reshape(-1, 4)
        order = np.argsort(-scores, kind="stable")
        if len(truths) == 0:
            empty += 1
            top = None
        else:
            n_truths += len(truths)
            no_box += len(boxes) == 0
            top, best = top_box_ious(truths, boxes, scores)
            top_ious.append(top)
            best_ious.append(best)
        all_scores.append(scores)
        all_hits.append(_matches(truths, boxes, order, iou_threshold))
        if image_ids is not None:
            per_image[str(image_ids[index])] = {
                "iou": _round(top),
                "box": [round(float(v), 1) for v in boxes[order[0]]] if len(boxes) else None,
                "truth": [[round(float(v), 1) for v in t] for t in truths],
                "n_boxes": int(len(boxes)),
            }
    top_stats = iou_summary(top_ious)
    map50 = None
    if n_truths:
        map50 = _round(average_precision(np.concatenate(all_scores), np.concatenate(all_hits), n_truths))
    report = {
        "n": top_stats["n"],
        "mean_iou": top_stats["mean_iou"],
        "median_iou": top_stats["median_iou"],
        "iou50_rate": top_stats["iou50_rate"],
        "map50": map50,
        "best_box_iou": iou_summary(best_ious),
        "no_box": no_box,
        "empty_masks": empty,
        "definitions": {
            "mean_iou/median_iou/iou50_rate": "IoU of the highest-scoring box of each image with its nearest "
            "ground-truth box (the tight box of a mask); an image without a box counts as IoU 0; iou50_rate = share "
            "with IoU >= 0.5",
            "map50": f"all-point interpolated average precision (PASCAL VOC 2010+) at IoU {iou_threshold}, all "
            "predicted boxes of all images ranked by score, each taking the unmatched ground-truth box it overlaps "
            "most; duplicates and boxes on images without a lesion are false positives",
            "best_box_iou": "the same statistics for the box with the highest IoU in each image (an upper bound)",
        },
    }
    if image_ids is not None:
        report["per_image"] = per_image
    return report


# -- plots -------------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    matplotlib = require("matplotlib", "eval", _PURPOSE + " plots")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, title: str) -> Path:
    """Save a confusion matrix (rows: true, columns: predicted), coloured by row share, with counts."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, np.float64), where=rows > 0)
    size = 1.2 + 0.75 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    try:
        image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")  # fmt: skip
        path = _save_figure(fig, path)
    finally:
        plt.close(fig)
    return path


def _save_figure(fig: Any, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def plot_roc_curves(
    y_true: Sequence[int] | np.ndarray, probabilities: np.ndarray, labels: Sequence[str], path: str | Path, title: str
) -> Path:
    """Save one-vs-rest ROC curves, one per class present with positives and negatives, AUC in the legend."""
    plt = _pyplot()
    metrics = _sklearn_metrics()
    y, p = _check_predictions(np.asarray(y_true), probabilities, len(labels))
    fig, ax = plt.subplots(figsize=(6, 5.5))
    try:
        for k, name in enumerate(labels):
            positives = y == k
            if positives.all() or not positives.any():
                continue
            fpr, tpr, _ = metrics.roc_curve(positives, p[:, k])
            ax.plot(fpr, tpr, label=f"{name} (AUC {metrics.auc(fpr, tpr):.3f})")
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("false positive rate (1 - specificity)")
        ax.set_ylabel("true positive rate (sensitivity)")
        ax.set_title(title)
        ax.legend(loc="lower right", fontsize=8)
        path = _save_figure(fig, path)
    finally:
        plt.close(fig)
    return path


def save_classification_plots(
    y_true_dx: Sequence[int] | np.ndarray, dx_probabilities: np.ndarray, report: dict[str, Any], folder: str | Path
) -> list[Path]:
    """Confusion matrices (dx, group) and ROC curves (dx, group, malignant) of a :func:`classify_report`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y_true_dx, dtype=np.int64)
    p = np.asarray(dx_probabilities, dtype=np.float32)
    y_group = dx_index_to_group_index(y)
    p_group = to_groups(p)
    y_malignant = np.isin(y, malignant_index(DX_CLASSES)).astype(np.int64)
    p_malignant = malignant_probability(p)
    n = report["n"]
    return [
        plot_confusion_matrix(report["dx"]["confusion_matrix"], DX_CLASSES, folder / "confusion_dx.png",
                              f"Diagnosis (7 dx), n = {n}"),
        plot_confusion_matrix(report["group"]["confusion_matrix"], GROUPS, folder / "confusion_group.png",
                              f"Clinical group, n = {n}"),
        plot_roc_curves(y, p, DX_CLASSES, folder / "roc_dx.png", f"ROC one-vs-rest, 7 dx, n = {n}"),
        plot_roc_curves(y_group, p_group, GROUPS, folder / "roc_group.png", f"ROC one-vs-rest, groups, n = {n}"),
        plot_roc_curves(y_malignant, np.stack([1 - p_malignant, p_malignant], axis=1), ("benign", "malignant"),
                        folder / "roc_malignant.png", f"ROC malignant (mel + bcc + akiec), n = {n}"),
    ]  # fmt: skip
