"""``edgeskin evaluate classify|detect``: score a model on a labelled image folder.

``classify``: a HAM10000 metadata CSV or an ISIC 2018 Task 3, ISIC 2019 or ISIC 2017 Part 3 ground-truth CSV
with ``DIR/<id>.jpg|.png`` (scored on the 8 ISIC 2019 dx when both the model and the CSV have them, else on the
7-dx view);
the classifier sees the whole image (these datasets are lesion-centred crops), or the full pipeline with
``--detect`` (each image counted, per dx and per source, as a lesion, a lesion answered with the detector
unsure, or "no lesion found", and then classified as a whole). ``detect``: ``<id>_segmentation.png`` masks (ISIC 2018 Task 1 / PH2 layout), the ground-truth
box being the tight box of the mask. Both print a summary and write the JSON report with ``--json OUT``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from edgeskin.errors import ConfigError, EdgeskinError
from edgeskin.progress import progress

NAME = "evaluate"
MASK_SUFFIX = "_segmentation.png"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# --model values for the model-free localisers of edgeskin.core.localize (ClassicalDetector methods)
CLASSICAL_MODELS = {"classical": "segment", "classical-otsu": "otsu"}

logger = logging.getLogger("edgeskin")


def _common_flags(parser: argparse.ArgumentParser) -> None:
    # The top-level --debug/-v also work after the nested command (argparse gives each parser its own).
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="log more")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="score a classifier or a detector on labelled images",
        description="Score a model on labelled images: 'classify' (dx labels) or 'detect' (lesion masks).",
    )
    commands = parser.add_subparsers(dest="evaluate_command", metavar="TASK")

    classify = commands.add_parser(
        "classify",
        help="classification metrics (8 or 7 dx, 4 groups, malignant triage, melanoma referral)",
        description=(
            "Classify every labelled image and report accuracy, balanced accuracy, macro F1, one-vs-rest AUC, "
            "per-class precision/recall/F1 and confusion matrices for the 7 diagnoses and the 4 groups, and "
            "sensitivity/specificity of the malignant triage. Images listed in the CSV but absent are counted."
        ),
    )
    classify.add_argument("--images", required=True, metavar="DIR", help="folder with <id>.jpg|.png")
    classify.add_argument("--labels", required=True, metavar="CSV",
                          help="HAM10000 metadata (image_id, dx) or ISIC 2018 Task 3 / ISIC 2019 / ISIC 2017 Part 3 ground truth")  # fmt: skip
    classify.add_argument("--model", metavar="M", help="classifier .tflite (default: the shipped one)")
    classify.add_argument("--json", metavar="OUT", help="write the JSON report here ('-': stdout)")
    classify.add_argument("--plots", metavar="DIR", help="write confusion matrices and ROC curves here")
    classify.add_argument("--detect", action="store_true",
                          help="run the full pipeline (detect, crop, classify) and score its best lesion")  # fmt: skip
    classify.add_argument("--detector", metavar="M",
                          help="with --detect: detector .tflite or 'classical' (default: the shipped detector)")  # fmt: skip
    classify.add_argument("--threads", type=int, default=None, help="interpreter CPU threads")
    classify.add_argument("--limit", type=int, default=None, metavar="N",
                          help="a quick check on N images: a seeded sample stratified by dx (each diagnosis in "
                          "proportion, so a rare one may get none), not the first N rows")  # fmt: skip
    classify.add_argument("--predictions", metavar="CSV",
                          help="write the probabilities in the ISIC challenge format (7 dx: image,MEL,NV,BCC,AKIEC,"
                          "BKL,DF,VASC; 8 dx: image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC) for the official "
                          "isic-challenge-scoring package")  # fmt: skip
    classify.add_argument("--truth", metavar="CSV",
                          help="write the scored images' ground truth in the same format (the official scorer wants "
                          "the same rows in both files)")  # fmt: skip
    _common_flags(classify)

    detect = commands.add_parser(
        "detect",
        help="localisation metrics against lesion masks (IoU, mAP@0.5)",
        description=(
            "Detect lesions in DIR/<id>.jpg|.png and compare the boxes with the tight boxes of the masks "
            "<id>_segmentation.png: mean/median IoU and IoU>=0.5 rate of each image's highest-scoring box (no "
            "box = IoU 0), and mAP at IoU 0.5."
        ),
    )
    detect.add_argument("--images", required=True, metavar="DIR", help="folder with <id>.jpg|.png")
    detect.add_argument("--masks", required=True, metavar="DIR", help="folder with <id>_segmentation.png")
    detect.add_argument(
        "--model",
        metavar="M",
        help="detector .tflite; 'classical' (the runtime fallback: careful segmentation) or 'classical-otsu' "
        "(the plain Otsu baseline) (default: the shipped detector)",
    )
    detect.add_argument("--json", metavar="OUT", help="write the JSON report here ('-': stdout)")
    detect.add_argument("--threads", type=int, default=None, help="interpreter CPU threads")
    detect.add_argument("--limit", type=int, default=None, metavar="N",
                        help="a quick check on a seeded random sample of N masks, not the first N")  # fmt: skip
    _common_flags(detect)
    return parser


def _model_info(path: Path | str) -> dict[str, Any]:
    from edgeskin.runtime.spec import sha256_file

    path = Path(path)
    return {"path": str(path), "name": path.stem, "sha256": sha256_file(path)}


def _emit(report: dict[str, Any], destination: str | None) -> None:
    text = json.dumps(report, indent=2)
    if destination == "-":
        print(text)
    elif destination:
        _write_text(destination, text + "\n")


def _check_common(args: argparse.Namespace) -> None:
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads: expected a positive number, got {args.threads}")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit: expected a positive number, got {args.limit}")
    if not Path(args.images).is_dir():
        raise ConfigError(f"--images: {args.images} is not a folder")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# -- classify ----------------------------------------------------------------------------------------------


def _load_labelled(args: argparse.Namespace) -> tuple[Any, int]:
    """The labelled images of ``--labels`` found in ``--images`` (a stratified sample with ``--limit``), and how
    many rows had no image."""
    from edgeskin.datasets import load_labelled_images
    from edgeskin.evaluation import stratified_sample

    if not Path(args.labels).is_file():
        raise ConfigError(f"--labels: {args.labels} is not a file")
    try:
        data = load_labelled_images(args.labels, args.images)
    except ValueError as exc:
        raise ConfigError(f"--labels: {exc}") from None
    missing = int(data.missing)
    if len(data) == 0:
        raise ConfigError(
            f"no labelled image found: none of the ids in {args.labels} has an image in {args.images} "
            f"({missing} missing)"
        )
    if args.limit is not None:
        data = data.subset(stratified_sample(data.labels, args.limit))
    return data, missing


def _open_classifier(args: argparse.Namespace, model_path: Path) -> tuple[Any, Any, Any]:
    """``(pipeline or None, classifier, detector or None)``: the full pipeline with ``--detect``, else the classifier."""
    from edgeskin.models import default_detector_path
    from edgeskin.tasks.classifier import Classifier, ClassifierOptions
    from edgeskin.tasks.pipeline import CLASSICAL, LesionPipeline, PipelineOptions

    if not args.detect:
        return None, Classifier.create(ClassifierOptions(model_path, num_threads=args.threads)), None
    detector = args.detector if args.detector is not None else default_detector_path()
    detector = CLASSICAL if str(detector).lower() == CLASSICAL else detector
    pipeline = LesionPipeline.create(
        PipelineOptions(model_path, detector=detector, num_threads=args.threads, cam=False, max_lesions=1)
    )
    return pipeline, pipeline.classifier, detector


def _report_view(model_labels: Sequence[str], truth_classes: Sequence[str]) -> tuple[tuple[str, ...], Any]:
    """The labels a report scores and the (model classes, report classes) matrix that maps probabilities to them:
    the 8 ISIC 2019 diagnoses when both the model and the ground truth have them, else the 7-dx view."""
    import numpy as np

    from edgeskin.labels import DX8_CLASSES, DX_CLASSES, dx7_matrix

    model_labels = list(model_labels)
    if set(model_labels) == set(DX8_CLASSES) and tuple(truth_classes) == DX8_CLASSES:
        columns = [model_labels.index(dx) for dx in DX8_CLASSES]
        return DX8_CLASSES, np.eye(len(model_labels), dtype=np.float32)[:, columns]
    return DX_CLASSES, dx7_matrix(model_labels)


class _Scored(NamedTuple):
    """The images ``classify`` scored: ids, true labels and probabilities (both in ``labels``), the images it
    could not read and, with ``--detect``, what the pipeline said about each: (true dx, source, outcome)."""

    ids: list[str]
    y: Any  # (n,) int64
    probabilities: Any  # (n, len(labels)) float32
    labels: tuple[str, ...]
    unreadable: list[str]
    outcomes: list[tuple[str, str, str]]


def _score_images(data: Any, classifier: Any, pipeline: Any, model_path: Path) -> _Scored:
    """Classify every labelled image (the pipeline's best lesion with ``--detect``); unreadable ones are skipped."""
    import numpy as np

    from edgeskin.image import read_image
    from edgeskin.labels import DX8_CLASSES, DX_CLASSES, is_dx_labels

    if not is_dx_labels(classifier.labels):
        raise ConfigError(
            f"{model_path}: expected a classifier over the 8 ISIC 2019 diagnoses {list(DX8_CLASSES)} or the 7 "
            f"HAM10000 diagnoses {list(DX_CLASSES)}, got {list(classifier.labels)[:10]}"
        )
    report_labels, to_report = _report_view(classifier.labels, data.classes)
    truth = data.labels if report_labels == DX8_CLASSES else data.dx7_labels()
    ids: list[str] = []
    y: list[int] = []
    rows: list[np.ndarray] = []
    unreadable: list[str] = []
    outcomes: list[tuple[str, str, str]] = []
    images = zip(data.image_ids, data.paths, truth, data.image_sources, strict=True)
    for image_id, path, label, source in progress(images, "classify", total=len(data), unit="img"):
        try:
            frame = read_image(path)
            if pipeline is not None:
                result = pipeline.predict(frame, source=str(path))
                if result.lesions:
                    outcome = "lesion_unsure" if result.lesions[0].detector_unsure else "lesion"
                    probabilities = result.lesions[0].dx.probabilities  # the highest-scoring box
                else:
                    outcome = "no_lesion_found"
                    probabilities = classifier.classify(frame).probabilities
                outcomes.append((report_labels[int(label)], source, outcome))
            else:
                probabilities = classifier.classify(frame).probabilities
        except EdgeskinError as exc:
            unreadable.append(str(path))
            print(f"edgeskin: warning: skipped {' '.join(str(exc).split())}", file=sys.stderr)
            continue
        rows.append(np.asarray(probabilities, np.float32) @ to_report)
        y.append(int(label))
        ids.append(image_id)
    if not ids:
        raise ConfigError(f"none of the {len(data)} labelled images could be read")
    return _Scored(ids, np.asarray(y, np.int64), np.stack(rows), report_labels, unreadable, outcomes)


def _run_classify(args: argparse.Namespace) -> int:
    from edgeskin.evaluation import classify_report
    from edgeskin.models import default_classifier_path
    from edgeskin.tasks.pipeline import CLASSICAL

    _check_common(args)
    if args.detector is not None and not args.detect:
        raise ConfigError("--detector is used with --detect only")
    data, missing = _load_labelled(args)
    model_path = Path(args.model) if args.model else default_classifier_path()
    pipeline, classifier, detector = _open_classifier(args, model_path)
    try:
        scored = _score_images(data, classifier, pipeline, model_path)
    finally:
        (pipeline or classifier).close()

    y, labels = scored.y, scored.labels
    threshold = classifier.spec.malignant_threshold
    report: dict[str, Any] = classify_report(y, scored.probabilities, malignant_threshold=threshold, dx_labels=labels)
    report["model"] = _model_info(model_path)
    report["missing_images"] = missing
    report["unreadable_images"] = len(scored.unreadable)
    report["labels_csv"] = str(args.labels)
    report["images_dir"] = str(args.images)
    report["label_format"] = data.source
    report["mode"] = "pipeline" if pipeline is not None else "whole-image"
    if args.limit is not None:
        report["sample"] = {
            "limit": args.limit,
            "counts": {dx: int((y == k).sum()) for k, dx in enumerate(labels)},
            "definition": "a seeded sample stratified by dx (edgeskin.evaluation.stratified_sample, seed 0)",
        }
    if pipeline is not None:
        outcomes = scored.outcomes
        report["detect"] = {
            "detector": CLASSICAL if detector == CLASSICAL else _model_info(detector),
            **_outcome_counts([o for _, _, o in outcomes]),
            "per_dx": _outcomes_by(outcomes, 0),
            "per_source": _outcomes_by(outcomes, 1),
            "fallback": "images without an answered lesion ('no lesion found', for any reason) were classified "
            "as a whole; 'lesion_unsure': answered from the detector's unsure band",
            "lesion_used": "the highest-scoring detected box",
        }
    report.update(_write_classify_files(args, scored, report))
    _emit(report, args.json)
    if args.json != "-":
        _print_classify_summary(report)
    return 0


def _write_classify_files(args: argparse.Namespace, scored: _Scored, report: dict[str, Any]) -> dict[str, Any]:
    """``--plots`` (the 7-dx view, whichever labels were scored), ``--predictions`` and ``--truth`` (the ISIC
    challenge format): what was written where."""
    import numpy as np

    from edgeskin.evaluation import isic_csv, save_classification_plots
    from edgeskin.labels import DX8_CLASSES, dx7_matrix

    written: dict[str, Any] = {}
    y, probabilities, labels = scored.y, scored.probabilities, scored.labels
    if args.plots:
        if labels == DX8_CLASSES:
            y, probabilities = np.argmax(dx7_matrix(labels)[y], axis=1), probabilities @ dx7_matrix(labels)
        written["plots"] = [str(p) for p in save_classification_plots(y, probabilities, report, args.plots)]
    if args.predictions:
        written["predictions_csv"] = _write_text(args.predictions, isic_csv(scored.ids, scored.probabilities, labels))
    if args.truth:
        onehot = np.eye(len(labels), dtype=np.float32)[scored.y]
        written["truth_csv"] = _write_text(args.truth, isic_csv(scored.ids, onehot, labels))
    return written


def _write_text(destination: str, text: str) -> str:
    target = Path(destination)
    if target.parent != Path(""):
        target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return str(target)


OUTCOMES = ("lesion", "lesion_unsure", "no_lesion_found")
# `evaluate detect` sees the detector alone: a top box at or above presence, in the unsure band, or below it.
DETECT_OUTCOMES = ("lesion", "unsure_band", "no_lesion_found")


def _outcome_counts(outcomes: list[str]) -> dict[str, int]:
    """``n`` and how many images got a lesion (at the presence threshold), a lesion answered from the detector's
    unsure band, and "no lesion found"."""
    return {"n": len(outcomes), **{name: outcomes.count(name) for name in OUTCOMES}}


def _outcomes_by(outcomes: list[tuple[str, str, str]], key: int) -> dict[str, dict[str, int]]:
    """The outcome counts per true dx (``key`` 0) or per source (``key`` 1)."""
    groups: dict[str, list[str]] = {}
    for row in outcomes:
        groups.setdefault(row[key], []).append(row[2])
    return {name: _outcome_counts(groups[name]) for name in sorted(groups)}


def _print_classify_summary(report: dict[str, Any]) -> None:
    mode = report["mode"]
    if "sample" in report:
        counts = ", ".join(f"{dx} {n}" for dx, n in report["sample"]["counts"].items() if n)
        mode += f"; a stratified sample: {counts}"
    print(f"{report['model']['name']}: {report['n']} images ({mode}), {report['missing_images']} missing, "
          f"{report['unreadable_images']} unreadable")  # fmt: skip
    if "detect" in report:
        found = report["detect"]
        print(f"  no lesion found in {found['no_lesion_found']} (classified as a whole), answered with the "
              f"detector unsure in {found['lesion_unsure']}")  # fmt: skip
        for dx, counts in found["per_dx"].items():
            if counts["no_lesion_found"] or counts["lesion_unsure"]:
                print(f"    {dx:6s} of {counts['n']}: no lesion found {counts['no_lesion_found']}, "
                      f"detector unsure {counts['lesion_unsure']}")  # fmt: skip
    for section in ("dx8", "dx", "group"):
        if section not in report:
            continue
        m = report[section]
        print(f"  {section:5s}  accuracy {_fmt(m['accuracy'])}  balanced {_fmt(m['balanced_accuracy'])}  "
              f"macro-F1 {_fmt(m['macro_f1'])}  AUC {_fmt(m['auc'])}")  # fmt: skip
    m = report["malignant"]
    print(f"  malignant  sensitivity {_fmt(m['sensitivity'])}  specificity {_fmt(m['specificity'])}  ({m['rule']})")
    m = report["melanoma"]
    print(f"  melanoma   AUC {_fmt(m.get('auc_p_mel'))}  referred {_fmt(m['melanomas_referred'])} of "
          f"{m['n_melanoma']} melanomas, {_fmt(m['benign_referred'])} of {m['n_benign']} benign")  # fmt: skip
    if "scc_vs_ak" in report:
        ak, scc = report["scc_vs_ak"]["ak"], report["scc_vs_ak"]["scc"]
        print(f"  scc/ak     scc precision {_fmt(scc['precision'])} recall {_fmt(scc['recall'])}; "
              f"ak precision {_fmt(ak['precision'])} recall {_fmt(ak['recall'])}")  # fmt: skip


# -- detect ------------------------------------------------------------------------------------------------


def _find_image(folder: Path, image_id: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{image_id}{suffix}", folder / f"{image_id}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def _run_detect(args: argparse.Namespace) -> int:
    import numpy as np

    from edgeskin.core.boxes import mask_to_box
    from edgeskin.evaluation import detection_report, stratified_sample
    from edgeskin.image import read_image
    from edgeskin.models import default_detector_path
    from edgeskin.tasks.detector import ClassicalDetector, Detector, DetectorOptions

    _check_common(args)
    masks_dir = Path(args.masks)
    if not masks_dir.is_dir():
        raise ConfigError(f"--masks: {args.masks} is not a folder")
    masks = sorted(masks_dir.glob(f"*{MASK_SUFFIX}"))
    if args.limit is not None:
        masks = [masks[i] for i in stratified_sample(np.zeros(len(masks)), args.limit)]  # one class: at random
    if not masks:
        raise ConfigError(f"--masks: no <id>{MASK_SUFFIX} file in {masks_dir}")
    model = args.model if args.model is not None else default_detector_path()
    if str(model).lower() in CLASSICAL_MODELS:
        # A classical localiser always reports its box here: the runtime's contrast gate (which drops boxes
        # not darker than their surroundings, e.g. lesions filling the frame) is not part of the baseline.
        method = CLASSICAL_MODELS[str(model).lower()]
        detector: Any = ClassicalDetector(method, min_contrast=0.0)  # type: ignore[arg-type]
        model_info: Any = {"path": str(model).lower(), "name": repr(detector), "sha256": None}
    else:
        detector = Detector.create(DetectorOptions(model, num_threads=args.threads))
        model_info = _model_info(model)
    thresholds = getattr(getattr(detector, "spec", None), "thresholds", None) or {}
    presence, unsure = thresholds.get("presence"), thresholds.get("unsure")
    floor = getattr(detector, "confidence_threshold", None)
    if unsure is not None and floor is not None and floor > unsure:
        detector.confidence_threshold = float(unsure)  # keep the unsure band's candidates, as the pipeline does

    images_dir = Path(args.images)
    ground_truth: list[Any] = []
    predictions: list[tuple[Any, Any]] = []
    missing: list[str] = []
    unreadable: list[str] = []
    with detector:
        for mask_path in progress(masks, "detect", unit="img"):
            image_id = mask_path.name[: -len(MASK_SUFFIX)]
            image_path = _find_image(images_dir, image_id)
            if image_path is None:
                missing.append(image_id)
                continue
            try:
                mask = read_image(mask_path, min_size=1)[..., 0] > 127
                frame = read_image(image_path)
            except EdgeskinError as exc:
                unreadable.append(image_id)
                print(f"edgeskin: warning: skipped {' '.join(str(exc).split())}", file=sys.stderr)
                continue
            if mask.shape != frame.shape[:2]:
                unreadable.append(image_id)
                print(f"edgeskin: warning: skipped {image_id}: the mask is {mask.shape[1]}x{mask.shape[0]} but the "
                      f"image is {frame.shape[1]}x{frame.shape[0]}", file=sys.stderr)  # fmt: skip
                continue
            detections = detector.detect(frame)
            ground_truth.append(mask_to_box(mask))
            predictions.append((np.asarray(detections.xyxy), np.asarray(detections.confidence)))
    if not ground_truth:
        raise ConfigError(
            f"no image could be evaluated ({len(missing)} missing from {images_dir}, {len(unreadable)} unreadable)"
        )
    top_scores = [float(scores.max()) if len(scores) else None for _, scores in predictions]
    if unsure is not None and floor is not None and floor > unsure:  # the box statistics at the model's own floor
        predictions = [(boxes[scores >= floor], scores[scores >= floor]) for boxes, scores in predictions]
    report = detection_report(ground_truth, predictions)
    # What `predict` reports: only boxes at or above the spec's presence threshold count as lesions.
    if presence is not None:
        kept = [(boxes[scores >= presence], scores[scores >= presence]) for boxes, scores in predictions]
        gated = detection_report(ground_truth, kept)
        outcomes = [
            "lesion" if top is not None and top >= presence
            else "unsure_band" if top is not None and unsure is not None and top >= unsure
            else "no_lesion_found"
            for top in top_scores
        ]  # fmt: skip
        report["at_presence_threshold"] = {
            "presence": presence,
            "unsure": unsure,
            **{key: gated[key] for key in ("mean_iou", "median_iou", "iou50_rate", "no_box")},
            **{key: outcomes.count(key) for key in DETECT_OUTCOMES[1:]},
            "definition": "the same top-box statistics counting only boxes scoring >= presence, the boxes "
            "`edgeskin predict` reports at the presence threshold (an image with none counts as IoU 0); of the "
            "images without one, 'unsure_band' (top box >= unsure: the pipeline answers it when the frame backs "
            "it up) and 'no lesion found'",
        }
    report["model"] = model_info
    report["missing_images"] = len(missing)
    report["unreadable_images"] = len(unreadable)
    report["images_dir"] = str(images_dir)
    report["masks_dir"] = str(masks_dir)
    _emit(report, args.json)
    if args.json != "-":
        print(f"{model_info['name']}: {report['n']} images, {len(missing)} missing, {len(unreadable)} unreadable, "
              f"{report['no_box']} without a box")  # fmt: skip
        print(f"  top box  mean IoU {_fmt(report['mean_iou'])}  median IoU {_fmt(report['median_iou'])}  "
              f"IoU>=0.5 {_fmt(report['iou50_rate'])}  mAP@0.5 {_fmt(report['map50'])}")  # fmt: skip
        gated = report.get("at_presence_threshold")
        if gated:
            print(f"  reported lesions (score >= {gated['presence']})  mean IoU {_fmt(gated['mean_iou'])}  "
                  f"IoU>=0.5 {_fmt(gated['iou50_rate'])}  {gated['no_box']} images without a reported lesion: "
                  f"{gated['unsure_band']} in the unsure band, {gated['no_lesion_found']} below it")  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    command = getattr(args, "evaluate_command", None)
    if command == "classify":
        return _run_classify(args)
    if command == "detect":
        return _run_detect(args)
    raise ConfigError(
        "evaluate: name what to evaluate: 'edgeskin evaluate classify ...' or 'edgeskin evaluate detect ...'"
    )
