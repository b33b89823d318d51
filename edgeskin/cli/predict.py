"""``edgeskin predict IMAGE...``: the full pipeline (detect → crop → classify → CAM) on the shipped models.

Nothing is written to disk unless ``--out DIR`` is given; then each image gets ``<stem>_annotated.png``
and ``<stem>.json`` there.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgeskin.cli import report_error
from edgeskin.errors import EdgeskinError

NAME = "predict"
DETECTOR_CHOICES_HELP = (
    "a detector .tflite, 'classical' (model-free localiser) or 'none' (the whole image is one lesion)"
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="find, classify and explain skin lesions in images (shipped models)",
        description=(
            "Detect lesions, classify each into 7 diagnoses and 4 groups, flag those to refer, and explain "
            "the answer with a class activation map. Uses the models shipped in edgeskin/models unless "
            "--classifier/--detector name others. Nothing is written unless --out is given. "
            "Research prototype: not a diagnosis."
        ),
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, BMP, TIFF, WebP)")
    parser.add_argument("--out", "-o", metavar="DIR", help="write <stem>_annotated.png and <stem>.json here")
    parser.add_argument("--json", action="store_true", help="print JSON (an object per image; a list for several)")
    parser.add_argument("--classifier", metavar="MODEL", help="classifier .tflite (default: the shipped one)")
    parser.add_argument("--detector", metavar="MODEL", help=DETECTOR_CHOICES_HELP + " (default: the shipped detector)")
    parser.add_argument("--threads", type=int, default=None, help="interpreter CPU threads per model")
    parser.add_argument("--delegate", choices=("cpu", "edgetpu", "auto"), default="cpu", help="default: cpu")
    parser.add_argument(
        "--max-lesions", type=int, default=3, help="analyse at most this many lesions per image (default 3)"
    )
    parser.add_argument(
        "--min-confidence", type=float, default=None, help="detector confidence threshold (default: the model's)"
    )
    parser.add_argument("--no-cam", action="store_true", help="skip the class activation maps")
    parser.add_argument(
        "--no-context",
        action="store_true",
        help="never classify a context view (the whole frame) beside a crop that is upsampled a lot or fills the frame",
    )
    return parser


def _detector_option(value: str | None) -> Any:
    """--detector → PipelineOptions.detector (path, 'classical' or None); no value → the shipped default."""
    from edgeskin.models import default_detector_path
    from edgeskin.tasks.pipeline import CLASSICAL

    if value is None:
        return default_detector_path()
    if value.lower() == "none":
        return None
    if value.lower() == CLASSICAL:
        return CLASSICAL
    return value


def _document(path: str, result: Any) -> dict[str, Any]:
    data = result.to_dict()
    return {
        "image": path,
        "image_size": data["image_size"],
        "lesions": data["lesions"],
        "messages": data["messages"],
        "timings_ms": data["timings_ms"],
    }


def _print_human(path: str, result: Any) -> None:
    from edgeskin.labels import DX_NAMES
    from edgeskin.results import CONTEXT_VIEW, RETAKE_ADVICE

    width, height = result.image_size
    count = len(result.lesions)
    print(
        f"{path} ({width}x{height}): {count} lesion{'s' if count != 1 else ''}"
        if count
        else f"{path} ({width}x{height}): {'; '.join(result.messages)}"
    )
    advice = [RETAKE_ADVICE[m] for m in result.messages if m in RETAKE_ADVICE]
    if not count and advice:
        print(f"  {' '.join(advice)}")
    for i, lesion in enumerate(result.lesions, 1):
        x0, y0, x1, y1 = (round(float(v)) for v in lesion.box)
        dx = lesion.dx.top_k(3)
        group = lesion.group.top_k(1)[0]
        flag = "REFER to a doctor" if lesion.refer else "not flagged"
        unsure = "  (detector unsure: check that the box is on the lesion)" if lesion.detector_unsure else ""
        context = f"  ({CONTEXT_VIEW})" if lesion.context_view else ""
        print(f"  #{i} box [{x0}, {y0}, {x1}, {y1}]  detector score {lesion.score:.2f}{unsure}{context}")
        print(f"     {DX_NAMES.get(dx[0][0], dx[0][0])} ({dx[0][0]}) {dx[0][1]:.2f}   others: "
              + ", ".join(f"{name} {p:.2f}" for name, p in dx[1:]))  # fmt: skip
        print(f"     group {group[0]} {group[1]:.2f}   malignant {lesion.malignant:.2f}   {flag}")
    stages = ", ".join(f"{k} {v:.1f}" for k, v in result.timings_ms.items())
    print(f"  timings ms: {stages}")


def _unique_stem(stem: str, used: set[str]) -> str:
    candidate, n = stem, 2
    while candidate in used:
        candidate, n = f"{stem}_{n}", n + 1
    used.add(candidate)
    return candidate


def _write_outputs(out_dir: Path, stem: str, frame: Any, result: Any, document: dict[str, Any]) -> None:
    import cv2

    from edgeskin.annotate import annotate

    annotated = annotate(frame, result)
    image_path = out_dir / f"{stem}_annotated.png"
    if not cv2.imwrite(str(image_path), cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {image_path}")
    (out_dir / f"{stem}.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    from edgeskin.annotate import NOT_A_DIAGNOSIS
    from edgeskin.errors import ConfigError
    from edgeskin.image import read_image
    from edgeskin.models import default_classifier_path
    from edgeskin.tasks.pipeline import LesionPipeline, PipelineOptions

    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads: expected a positive number, got {args.threads}")
    if args.max_lesions < 1:
        raise ConfigError(f"--max-lesions: expected a positive number, got {args.max_lesions}")
    classifier = args.classifier if args.classifier is not None else default_classifier_path()
    options = PipelineOptions(
        classifier_path=classifier,
        detector=_detector_option(args.detector),
        num_threads=args.threads,
        delegate=args.delegate,
        max_lesions=args.max_lesions,
        min_confidence=args.min_confidence,
        cam=not args.no_cam,
        **({"context": None} if args.no_context else {}),
    )
    out_dir = Path(args.out) if args.out else None
    documents: list[dict[str, Any]] = []
    failures = 0
    used_stems: set[str] = set()
    with LesionPipeline.create(options) as pipeline:
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
        for path in args.images:
            try:
                frame = read_image(path)
                result = pipeline.predict(frame, source=str(path))
            except EdgeskinError as exc:
                # One bad image is reported and skipped; the others are still analysed.
                failures += 1
                message = report_error(exc)
                documents.append({"image": str(path), "error": message})
                continue
            document = _document(str(path), result)
            documents.append(document)
            if out_dir is not None:
                _write_outputs(out_dir, _unique_stem(Path(path).stem, used_stems), frame, result, document)
            if not args.json:
                _print_human(str(path), result)
    if args.json:
        print(json.dumps(documents[0] if len(documents) == 1 else documents, indent=2))
    elif len(documents) > failures:
        print(f"Note: {NOT_A_DIAGNOSIS}")
    return 2 if failures else 0
