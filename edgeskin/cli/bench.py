"""``edgeskin bench``: time the shipped pipeline here; ``edgeskin bench report``: the full benchmark report.

``edgeskin bench [--json OUT] [--threads N] [--runs N]`` runs the quick suite of :mod:`edgeskin.bench`
(no pytest, no TensorFlow) and prints a table. On a Raspberry Pi or a Coral, fill in the device's
reference file with::

    edgeskin bench --image IMD002.jpg --json REFERENCES/$(edgeskin bench --device-id).json

``edgeskin bench report --out DIR`` runs the benchmark report (:mod:`edgeskin.report`): latency of the INT8
pipeline with the runtime alone, and, where they are given (``--data``, ``--float-classifier``, ...), the float
baselines and peers (``[train]``), accuracy and CAM fidelity (the validation data) and plots (``[eval]``). Each
row it cannot measure says what it lacked.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

NAME = "bench"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="time the pipeline on this machine (or 'bench report': the full benchmark report)",
        description="Time the shipped detector + classifier pipeline on a 768x576 dermoscopy frame held in memory "
        "(file decoding excluded): end-to-end p50/p90, each stage, bare interpreter invoke times, the "
        "overhead ratio, FPS, model sizes and peak memory. 'edgeskin bench report' instead writes the benchmark "
        "report: the INT8 pipeline with the runtime alone, plus the float baselines ([train]), accuracy (source "
        "checkout data) and plots ([eval]) where available.",
    )
    parser.add_argument(
        "action",
        nargs="?",
        choices=("run", "report"),
        default="run",
        help="run: the quick suite (default); report: the benchmark report (float rows need [train], plots [eval])",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the result as JSON to OUT ('-': stdout only)")
    parser.add_argument("--threads", type=int, default=2, help="interpreter threads per model (default 2)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs (default 100; report: its own default)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    parser.add_argument(
        "--image", help="frame to time (default: a synthetic frame; the reference results used PH2's IMD002.jpg)"
    )
    parser.add_argument("--classifier", help="classifier .tflite (default: the shipped model)")
    parser.add_argument("--detector", help="detector .tflite (default: the shipped model)")
    parser.add_argument("--delegate", choices=("cpu", "edgetpu", "auto"), default="cpu", help="default: cpu")
    parser.add_argument(
        "--profile",
        help="device profile (rpi4, rpi5, ... or a JSON file): run with its classifier views and print the expected "
        "per-frame time on that device with 1, 2 and 4 views, from the costs measured here",
    )
    parser.add_argument("--device-id", action="store_true", help="print this device's reference name and exit")
    report = parser.add_argument_group("report options")
    report.add_argument("--out", help="report: the folder it writes (required)")
    report.add_argument("--full", action="store_true", help="report: every image and thread count (slower)")
    report.add_argument(
        "--keras-backend",
        choices=("tensorflow", "torch", "jax"),
        default=None,
        help="report: Keras backend for the float baseline (torch/jax for GPU machines without TensorFlow)",
    )
    report.add_argument("--cam-images", type=int, default=None, help="report: validation images for CAM fidelity")
    report.add_argument(
        "--retries",
        type=int,
        default=None,
        help="report: re-runs of a timing job disturbed by other processes or run on a busy host (default 2)",
    )
    from edgeskin.report.common import add_input_arguments

    add_input_arguments(parser.add_argument_group("report inputs (each optional: the rows that need one say so)"))
    return parser


def run(args: argparse.Namespace) -> int:
    from edgeskin.errors import ConfigError

    if args.device_id:
        from edgeskin.bench import device_id

        print(device_id())
        return 0
    if args.threads < 1:
        raise ConfigError(f"--threads: expected a positive number, got {args.threads}")
    if args.action == "report":
        return _report(args)
    return _quick(args)


def _quick(args: argparse.Namespace) -> int:
    from edgeskin.bench import format_table, run_quick_suite

    to_stdout = args.json == "-"
    progress = None if to_stdout else (lambda line: print(f"  ... {line}", file=sys.stderr, flush=True))
    result = run_quick_suite(
        args.classifier,
        args.detector,
        image=args.image,
        threads=args.threads,
        runs=args.runs or 100,
        warmup=args.warmup,
        delegate=args.delegate,
        progress=progress,
        profile=args.profile,
    )
    text = json.dumps(result, indent=1)
    if to_stdout:
        print(text)
        return 0
    print(format_table(result))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        print(f"  wrote {out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from edgeskin.errors import ConfigError
    from edgeskin.report.run import main as report_main

    if args.image or args.classifier or args.detector:
        raise ConfigError(
            "'edgeskin bench report' measures the shipped models on the validation images; --image, --classifier and "
            "--detector are for the quick suite (set EDGESKIN_MODELS_DIR to report on other models)"
        )
    if not args.out:
        raise ConfigError("'edgeskin bench report': expected --out DIR (the folder the report is written to), got none")
    from edgeskin.report.common import ReportInputs

    argv = ["--out", args.out, "--threads", str(args.threads), *ReportInputs.from_args(args).argv()]
    if args.full:
        argv.append("--full")
    if args.keras_backend:
        argv += ["--keras-backend", args.keras_backend]
    if args.cam_images is not None:
        argv += ["--cam-images", str(args.cam_images)]
    if args.runs is not None:
        argv += ["--runs", str(args.runs)]
    if args.retries is not None:
        argv += ["--retries", str(args.retries)]
    return int(report_main(argv, prog="edgeskin bench report") or 0)
