"""Soak test of the live loop: N frames (default 5,000) of a real-looking video, RSS and FPS measured.

The video is made from PH2 dermoscopy images (pan and zoom, 320x240 MJPG) when ../shared is there, else
from synthetic skin frames. It is played again and again by reopening the file (so a leak in OpenCV's
capture would show) until N frames have been analysed. RSS is read with psutil after the warm-up frames
and every ``--every`` frames after; the acceptance is growth < 10 MB after warm-up.

    python benchmarks/soak_live.py                          # the shipped models (LesionPipeline.from_defaults)
    python benchmarks/soak_live.py --classifier C.tflite --detector D.tflite   # other models
    python benchmarks/soak_live.py --pipeline fake          # no models: the loop, sources and gate only
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeskin.capture.live import LiveLoop
from edgeskin.capture.sources import Frame, OpenCVSource, SourceBase
from edgeskin.errors import EdgeskinError

PH2_IMAGES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ph2" / "images"
SIZE = (320, 240)


def _pan_and_zoom(image: np.ndarray, frames: int) -> list[np.ndarray]:
    height, width = image.shape[:2]
    aspect = SIZE[0] / SIZE[1]
    out = []
    for i in range(frames):
        t = i / max(1, frames - 1)
        view_h = min(height, width / aspect) / (1.0 + 0.6 * t)
        view_w = view_h * aspect
        x0 = int(np.clip(width / 2 + (t - 0.5) * 0.3 * (width - view_w) - view_w / 2, 0, width - view_w))
        y0 = int(np.clip(height / 2 + (0.5 - t) * 0.2 * (height - view_h) - view_h / 2, 0, height - view_h))
        out.append(cv2.resize(image[y0 : y0 + int(view_h), x0 : x0 + int(view_w)], SIZE, interpolation=cv2.INTER_AREA))
    return out


def _synthetic(frames: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(frames):
        frame = np.clip(rng.normal((205, 160, 140), 6, (SIZE[1], SIZE[0], 3)), 0, 255).astype(np.uint8)
        cv2.circle(frame, (140 + i % 40, 120), 45, (90, 55, 40), -1)
        out.append(frame)
    return out


def make_video(folder: Path, images: Path) -> tuple[Path, str]:
    """Write the soak video; returns its path and what it shows."""
    from edgeskin.image import read_image

    paths = sorted(images.glob("IMD*.jpg"))[:5] if images.is_dir() else []
    if paths:
        frames = [f for p in paths for f in _pan_and_zoom(read_image(p), 60)]
        what = f"{len(frames)} frames panning over {len(paths)} PH2 images"
    else:
        frames = _synthetic(300)
        what = f"{len(frames)} synthetic skin frames (PH2 not found at {images})"
    path = folder / "soak.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, SIZE)
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path, what


class LoopingVideo(SourceBase):
    """A video file played again and again (reopened at its end), with a continuous frame index."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"{path} (looping)"
        self.plays = 0
        self._offset = 0
        self._source = OpenCVSource(path)

    def read(self) -> Frame:
        try:
            frame = self._source.read()
        except StopIteration:
            self._offset += self._source._index  # frames of the finished play
            self._source.close()
            self._source = OpenCVSource(self.path)
            self.plays += 1
            frame = self._source.read()
        return Frame(frame.rgb, frame.timestamp, frame.index + self._offset)

    def capture_still(self) -> np.ndarray:
        return self._source.capture_still()

    def close(self) -> None:
        self._source.close()


class ModelFreePipeline:
    """The classical localiser and fixed probabilities: measures everything but the models."""

    malignant_threshold = 0.3

    def __call__(self, frame_rgb: np.ndarray) -> Any:
        from edgeskin.core.localize import classical_box
        from edgeskin.labels import DX_CLASSES, GROUPS, malignant_probability, to_groups
        from edgeskin.results import Classification, Lesion, PipelineResult

        start = time.perf_counter()
        box = classical_box(frame_rgb)
        size = (frame_rgb.shape[1], frame_rgb.shape[0])
        if box is None:
            return PipelineResult(size, (), {"detect": (time.perf_counter() - start) * 1e3}, ("no lesion found",))
        probs = np.array([0.05, 0.05, 0.1, 0.05, 0.15, 0.55, 0.05], np.float32)
        malignant = float(malignant_probability(probs))
        lesion = Lesion(
            box,
            1.0,
            Classification(probs, DX_CLASSES),
            Classification(to_groups(probs), GROUPS),
            malignant,
            malignant >= 0.3,
            np.rint(box).astype(np.int64),
            None,
        )
        return PipelineResult(size, (lesion,), {"detect": (time.perf_counter() - start) * 1e3})


def make_pipeline(args: argparse.Namespace) -> tuple[Any, str]:
    if args.pipeline == "fake":
        return ModelFreePipeline(), "model-free (classical localiser, fixed probabilities)"
    from edgeskin.tasks import LesionPipeline

    overrides: dict[str, Any] = {"threads": args.threads}
    if args.classifier:
        overrides["classifier"] = args.classifier
    if args.detector:
        overrides["detector"] = args.detector
    pipeline = LesionPipeline.from_defaults(**overrides)
    classifier = args.classifier or "shipped"
    detector = args.detector or "shipped"
    return pipeline, f"LesionPipeline (classifier {classifier}, detector {detector}, {args.threads} threads)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=5000, help="frames to analyse (default 5000)")
    parser.add_argument("--warmup", type=int, default=200, help="frames before the reference RSS (default 200)")
    parser.add_argument("--every", type=int, default=500, help="RSS sample interval in frames (default 500)")
    parser.add_argument("--pipeline", choices=("real", "fake"), default="real")
    parser.add_argument("--classifier", help="classifier .tflite (default: the shipped one)")
    parser.add_argument("--detector", help="detector .tflite, 'classical' or 'none' (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--images", type=Path, default=PH2_IMAGES, help="PH2 images for the video")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    args = parser.parse_args(argv)
    if args.warmup >= args.frames:
        parser.error("--warmup must be smaller than --frames")

    import psutil

    try:
        pipeline, description = make_pipeline(args)
    except EdgeskinError as exc:
        print(f"soak_live: {exc}\n(use --pipeline fake to soak the loop without models)", file=sys.stderr)
        return 2
    process = psutil.Process()
    samples: list[tuple[int, float, float]] = []  # (frames, seconds, RSS MB)
    started = time.monotonic()
    warm_at: list[float] = []

    def on_result(live: Any) -> None:
        done = loop.processed
        if (
            done == args.warmup
            or (done > args.warmup and (done - args.warmup) % args.every == 0)
            or done == args.frames
        ):
            gc.collect()
            samples.append((done, time.monotonic() - started, process.memory_info().rss / 2**20))
            if done == args.warmup:
                warm_at.append(time.monotonic())
            print(
                f"\r{done}/{args.frames} frames, RSS {samples[-1][2]:.1f} MB, {loop.fps:.1f} FPS",
                end="",
                file=sys.stderr,
                flush=True,
            )

    with tempfile.TemporaryDirectory(prefix="edgeskin-soak-") as tmp:
        video, what = make_video(Path(tmp), args.images)
        with LoopingVideo(video) as source:
            loop = LiveLoop(source, pipeline, max_frames=args.frames, on_result=on_result)
            summary = loop.run()
            plays = source.plays + 1
    print(file=sys.stderr)
    ended = time.monotonic()
    warm = next(s for s in samples if s[0] == args.warmup)
    final = samples[-1]
    figures = {
        "pipeline": description,
        "video": what,
        "plays": plays,
        "frames": summary.processed,
        "errors": summary.errors,
        "withheld": summary.withheld,
        "fps": round(summary.fps, 2),
        "fps_after_warmup": round((summary.processed - args.warmup) / max(1e-9, ended - warm_at[0]), 2),
        "rss_after_warmup_mb": round(warm[2], 2),
        "rss_end_mb": round(final[2], 2),
        "rss_growth_mb": round(final[2] - warm[2], 2),
        "rss_max_mb": round(max(s[2] for s in samples), 2),
        "rss_samples": [{"frames": f, "seconds": round(t, 1), "rss_mb": round(m, 2)} for f, t, m in samples],
        "mean_timings_ms": {k: round(v, 2) for k, v in summary.mean_timings_ms.items()},
        "cpu_count": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    print(f"pipeline: {description}\nvideo: {what}, played {plays} times")
    print(f"{summary.processed} frames, {summary.errors} errors, {summary.withheld} withheld by the quality gate")
    print(f"FPS {figures['fps']} overall, {figures['fps_after_warmup']} after warm-up")
    print(
        f"RSS {warm[2]:.1f} MB after {args.warmup} frames -> {final[2]:.1f} MB after {final[0]}: "
        f"growth {figures['rss_growth_mb']:+.2f} MB (acceptance < 10 MB)"
    )
    print("mean ms per frame: " + ", ".join(f"{k} {v}" for k, v in figures["mean_timings_ms"].items()))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    if hasattr(pipeline, "close"):
        pipeline.close()
    return 0 if figures["rss_growth_mb"] < 10 and summary.processed == args.frames else 1


if __name__ == "__main__":
    raise SystemExit(main())
