"""``edgeskin classify IMAGE... --model M``: classify whole images with any classification model."""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgeskin.cli import report_error
from edgeskin.errors import ConfigError, EdgeskinError

NAME = "classify"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="classify images with a classification model",
        description=(
            "Classify whole images. An edgeskin model is read with its spec (<model>.json beside it); a "
            "third-party model needs --labels, and --mean/--std when it does not expect pixels scaled "
            "to [-1, 1]."
        ),
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, BMP, ...)")
    parser.add_argument("--model", "-m", required=True, help="classification .tflite model")
    parser.add_argument("--labels", help="labels file of a third-party model (one label per line, output order)")
    parser.add_argument("--spec", help="model spec JSON (default: <model>.json beside the model)")
    parser.add_argument("--top-k", "-k", type=int, default=5, help="how many classes to show (default 5)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--threads", type=int, default=None, help="interpreter CPU threads")
    parser.add_argument("--delegate", choices=("cpu", "edgetpu", "auto"), default="cpu", help="default: cpu")
    parser.add_argument(
        "--mean", type=float, nargs="+", metavar="M",
        help="third-party models: mean subtracted from pixels in [0, 255], 1 or 3 values (default 127.5)",
    )  # fmt: skip
    parser.add_argument(
        "--std", type=float, nargs="+", metavar="S",
        help="third-party models: divisor after the mean, 1 or 3 values (default 127.5)",
    )  # fmt: skip
    return parser


def _channel_values(values: list[float] | None, flag: str) -> float | tuple[float, ...] | None:
    if values is None:
        return None
    if len(values) not in (1, 3):
        raise ConfigError(f"{flag}: expected 1 or 3 values, got {len(values)}")
    return values[0] if len(values) == 1 else tuple(values)


def run(args: argparse.Namespace) -> int:
    from edgeskin.image import read_image
    from edgeskin.tasks.classifier import Classifier, ClassifierOptions

    if args.top_k < 1:
        raise ConfigError(f"--top-k: expected a positive number, got {args.top_k}")
    if args.labels is None and (args.mean is not None or args.std is not None):
        raise ConfigError(
            "--mean/--std apply to third-party models given with --labels; an edgeskin model's spec has its own"
        )
    if args.labels is not None and args.spec is not None:
        raise ConfigError("give either --spec (edgeskin model) or --labels (third-party model), not both")
    options = ClassifierOptions(
        model_path=args.model,
        spec=args.spec,
        labels=args.labels,
        mean=_channel_values(args.mean, "--mean"),
        std=_channel_values(args.std, "--std"),
        num_threads=args.threads,
        delegate=args.delegate,
    )
    results: list[dict[str, Any]] = []
    failures = 0
    with Classifier.create(options) as classifier:
        for path in args.images:
            try:
                image = read_image(path)
                classification = classifier.classify(image)
            except EdgeskinError as exc:
                # One bad image is reported and skipped; the others are still classified.
                failures += 1
                message = report_error(exc)
                results.append({"source": str(path), "error": message})
                continue
            timings = {k: round(v, 3) for k, v in classifier.last_timings_ms.items()}
            top = classification.top_k(args.top_k)
            results.append(
                {
                    "source": str(path),
                    "label": classification.label,
                    "top_k": [{"label": label, "probability": round(p, 6)} for label, p in top],
                    "timings_ms": timings,
                }
            )
            if not args.json:
                print(path)
                for label, p in top:
                    print(f"  {p:7.4f}  {label}")
                print(
                    f"  ({timings['preprocess_ms']:.1f} ms preprocess, {timings['invoke_ms']:.1f} ms invoke, "
                    f"{timings['postprocess_ms']:.1f} ms postprocess)"
                )
        if args.json:
            document = {
                "model": classifier.spec.name,
                "delegate": classifier.model.delegate,
                "results": results,
            }
            print(json.dumps(document, indent=2))
    return 2 if failures else 0
