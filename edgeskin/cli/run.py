"""``edgeskin run --source SRC``: the live loop on a camera, a video, a stream or a folder of images.

Writes one JSON entry per processed frame (``--json OUT``) and prints FPS and per-stage timings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from edgeskin.errors import ConfigError, EdgeskinError

NAME = "run"
WINDOW = "edgeskin"

logger = logging.getLogger("edgeskin")


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``kiosk``: where frames come from and how the device is set up."""
    parser.add_argument(
        "--source", "-s",
        help="camera index (0), 'picamera2', a video file, an RTSP/HTTP URL, an image or a folder of images "
             "(default: the profile's source)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", "-p",
        help="device profile: rpi4, rpi5, rpi5-coral-usb, coral-devboard, x86, or a profile JSON file "
             "(default: detected from the machine)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, help="interpreter CPU threads (default: the profile's)")
    parser.add_argument("--delegate", choices=("cpu", "edgetpu", "auto"), help="default: the profile's")
    parser.add_argument("--max-frames", "-n", type=int, help="stop after N processed frames")
    parser.add_argument(
        "--realtime", action="store_true",
        help="video files: play at the file's frame rate and drop stale frames, like a camera "
             "(default: every frame of a file is analysed)",
    )  # fmt: skip
    parser.add_argument("--loop", action="store_true", help="image folders: start again after the last image")
    parser.add_argument(
        "--smoothing", type=float, help="history weight of the diagnosis average, 0-0.99 (default: profile)"
    )
    parser.add_argument("--no-quality-gate", action="store_true", help="diagnose every frame, however blurred or dark")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        NAME,
        help="analyse a live camera, a video or a folder of images frame by frame",
        description=(
            "Run the lesion pipeline on the newest frame of a source, again and again: a quality gate gives "
            "guidance ('hold still', 'move closer') instead of a diagnosis on unusable frames, and the "
            "diagnosis of the main lesion is smoothed over frames. Not a diagnosis: a decision aid to "
            "discuss with a clinician."
        ),
    )
    add_source_options(parser)
    parser.add_argument(
        "--json", "-o", metavar="OUT", help="write the run as JSON ({fps, frames: [...], ...}); '-' for stdout"
    )
    parser.add_argument(
        "--display", action="store_true",
        help="show the annotated frames in an OpenCV window (q/Esc: quit, c: analyse a full-resolution still); "
             "needs opencv-python with GUI support, not opencv-python-headless",
    )  # fmt: skip
    return parser


# --------------------------------------------------------------------------------------------- shared setup


def resolve_profile(args: argparse.Namespace) -> Any:
    """The device profile named by ``--profile``, or the one detected for this machine."""
    from edgeskin.devices import detect_profile, load_profile

    name = args.profile or detect_profile()
    profile = load_profile(name)
    logger.info("device profile %s: %s", profile.name, profile.description)
    return profile


def make_pipeline(profile: Any, args: argparse.Namespace) -> Any:
    """The real lesion pipeline for the profile (threads, delegate, Edge TPU builds of the models)."""
    from edgeskin.devices import pipeline_options

    try:
        from edgeskin.tasks import LesionPipeline
    except (ImportError, AttributeError) as exc:
        raise EdgeskinError(f"the lesion pipeline is not available in this installation: {exc}") from None
    options = pipeline_options(profile, threads=args.threads, delegate=args.delegate)
    logger.info("pipeline options: %s", options)
    return LesionPipeline.from_defaults(**options)


def open_from_args(args: argparse.Namespace, profile: Any, *, with_main: bool = False) -> Any:
    """Open the frame source given by ``--source`` (or the profile's) with the profile's stream sizes."""
    from edgeskin.capture.sources import open_source

    spec = args.source if args.source is not None else profile.source
    return open_source(
        spec,
        lores_size=profile.lores_size,
        main_size=profile.main_size,
        with_main=with_main,
        camera_size=profile.lores_size,
        realtime=args.realtime,
        loop=args.loop,
    )


def check_args(args: argparse.Namespace) -> None:
    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames: expected a positive number, got {args.max_frames}")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads: expected a positive number, got {args.threads}")
    if args.smoothing is not None and not 0 <= args.smoothing < 1:
        raise ConfigError(f"--smoothing: expected a value in [0, 1), got {args.smoothing}")


# --------------------------------------------------------------------------------------------- JSON output


class _JsonRunWriter:
    """Streams ``{"source", "profile", "frames": [...], "fps", ...}`` to a file entry by entry.

    Memory stays flat however long the run; the file is written beside OUT and renamed at the end, so an
    OUT that exists is never left half-written.
    """

    def __init__(self, out: str, header: dict[str, Any]) -> None:
        self.out = out
        self.count = 0
        if out == "-":
            self._tmp_path: Path | None = None
            self._file: IO[str] = sys.stdout
        else:
            target = Path(out)
            if target.parent and not target.parent.exists():
                raise ConfigError(f"--json: folder {target.parent} does not exist")
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
            self._tmp_path = Path(tmp)
            self._file = os.fdopen(fd, "w", encoding="utf-8")
        opening = json.dumps(header)[:-1]
        self._file.write(f'{opening}, "frames": [')

    def add(self, entry: dict[str, Any]) -> None:
        self._file.write(("\n  " if self.count == 0 else ",\n  ") + json.dumps(entry))
        self.count += 1

    def finish(self, tail: dict[str, Any]) -> None:
        closing = json.dumps(tail)[1:]
        self._file.write(f"\n], {closing}\n" if tail else "\n]}\n")
        self._file.flush()
        if self._tmp_path is not None:
            self._file.close()
            os.replace(self._tmp_path, self.out)

    def abort(self) -> None:
        if self._tmp_path is not None:
            with contextlib.suppress(OSError):
                self._file.close()
                self._tmp_path.unlink()


# --------------------------------------------------------------------------------------------- display


def _open_window() -> Any:
    import cv2

    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except cv2.error:
        raise ConfigError(
            "--display needs OpenCV with GUI support (highgui), and the installed OpenCV has none "
            "(opencv-python-headless, or no display to open). Install opencv-python instead of "
            "opencv-python-headless on a machine with a screen, or use `edgeskin kiosk` (Tkinter)"
        ) from None
    return cv2


class _Display:
    """The optional OpenCV window: annotated live frames, and a second window with an analysed still."""

    def __init__(self, loop_ref: list[Any]) -> None:
        self.cv2 = _open_window()
        self.loop_ref = loop_ref
        self.pending_still: Any = None

    def show(self, live: Any) -> None:
        from edgeskin.capture.live import draw_result, render_live

        cv2 = self.cv2
        cv2.imshow(WINDOW, cv2.cvtColor(render_live(live), cv2.COLOR_RGB2BGR))
        if self.pending_still is not None:
            still, self.pending_still = self.pending_still, None
            if still.image is not None:
                picture = draw_result(
                    still.image, still.result, heatmap=True, messages=(still.error,) if still.error else ()
                )
                cv2.imshow(f"{WINDOW} still", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            self.loop_ref[0].stop()
        elif key in (ord("c"), ord(" ")):
            self.loop_ref[0].request_still(self._still_ready)

    def _still_ready(self, still: Any) -> None:
        self.pending_still = still

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.cv2.destroyAllWindows()


# --------------------------------------------------------------------------------------------- run


def _print_summary(summary: dict[str, Any], stream: IO[str]) -> None:
    timings = ", ".join(f"{k} {v:.1f}" for k, v in summary["mean_timings_ms"].items())
    print(
        f"{summary['processed']} frames from {summary['source']} in {summary['duration_s']:.1f} s: "
        f"{summary['fps']:.2f} FPS, {summary['dropped_frames']} dropped, {summary['withheld']} withheld by the "
        f"quality gate, {summary['errors']} errors ({summary['stopped_because']})",
        file=stream,
    )
    if timings:
        print(f"mean ms per frame: {timings}", file=stream)
    if summary.get("over_budget"):
        print(f"{summary['over_budget']} frames over the {summary['latency_budget_ms']:g} ms budget", file=stream)


def run(args: argparse.Namespace) -> int:
    from edgeskin.capture.live import LiveLoop

    check_args(args)
    profile = resolve_profile(args)
    display = _Display([None]) if args.display else None
    pipeline = make_pipeline(profile, args)
    smoothing = args.smoothing if args.smoothing is not None else profile.smoothing
    writer: _JsonRunWriter | None = None
    over_budget = [0]
    try:
        with open_from_args(args, profile, with_main=bool(args.display)) as source:
            if args.json:
                writer = _JsonRunWriter(args.json, {"source": source.name, "profile": profile.name})

            def on_result(live: Any) -> None:
                if live.entry["timings_ms"].get("process", 0.0) > profile.latency_budget_ms:
                    over_budget[0] += 1
                if writer is not None:
                    writer.add(live.entry)
                if display is not None:
                    display.show(live)

            loop = LiveLoop(
                source,
                pipeline,
                max_frames=args.max_frames,
                smoothing=smoothing,
                quality_gate=None if args.no_quality_gate else "default",
                on_result=on_result,
            )
            if display is not None:
                display.loop_ref[0] = loop
            summary = loop.run().to_dict(frames=False)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if display is not None:
            display.close()
    summary["profile"] = profile.name
    summary["latency_budget_ms"] = profile.latency_budget_ms
    summary["over_budget"] = over_budget[0]
    if writer is not None:
        tail = {k: v for k, v in summary.items() if k not in ("source", "profile")}
        writer.finish(tail)
    _print_summary(summary, sys.stderr if args.json == "-" else sys.stdout)
    return 0 if summary["processed"] > 0 else 1
