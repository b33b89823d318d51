"""``edgeskin kiosk``: the full-screen touch-screen window (live preview, Capture button, CAM of the still)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgeskin.cli.run import add_source_options, check_args, make_pipeline, open_from_args, resolve_profile

NAME = "kiosk"
CLEAN_ENDINGS = ("stopped", "max_frames", "end of source", "interrupted")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="full-screen kiosk window for a Raspberry Pi touch screen",
        description=(
            "Open a full-screen window with the live preview, the smoothed diagnosis or guidance, a Capture "
            "button that analyses a full-resolution still with its CAM overlay, and the not-a-diagnosis "
            "notice. Escape closes it. The window also closes when the source ends or the camera is lost for "
            "good (exit status 1 then, so a service manager restarts it). Needs Tkinter (sudo apt install "
            "python3-tk) and a display."
        ),
    )
    add_source_options(parser)
    parser.add_argument("--windowed", action="store_true", help="open a normal window instead of full screen")
    return parser


def run(args: argparse.Namespace) -> int:
    from edgeskin.capture.kiosk import import_tk, run_kiosk

    check_args(args)
    import_tk()  # fail before opening the camera when Tkinter is missing
    profile = resolve_profile(args)
    pipeline = make_pipeline(profile, args)
    smoothing = args.smoothing if args.smoothing is not None else profile.smoothing
    with open_from_args(args, profile, with_main=True) as source:
        summary = run_kiosk(
            source,
            pipeline,
            fullscreen=not args.windowed,
            close_when_done=True,
            max_frames=args.max_frames,
            smoothing=smoothing,
            quality_gate=None if args.no_quality_gate else "default",
        )
    if summary is None:
        return 0
    print(
        f"{summary.processed} frames, {summary.fps:.2f} FPS, {summary.errors} errors ({summary.stopped_because})",
        file=sys.stderr,
    )
    return 0 if summary.stopped_because in CLEAN_ENDINGS else 1
