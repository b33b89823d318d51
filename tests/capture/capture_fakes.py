"""Fakes for the capture tests: a pipeline, a picamera2 module with the real API surface, an OpenCV capture.

They are small on purpose, but not trivial: the fake pipeline localises the darkest blob of the frame
(the classical localiser edgeskin ships), and the fake camera stores pixels in the byte order and plane
layout picamera2 really uses, so colour conversion is checked against known content.
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from edgeskin.core.localize import classical_box
from edgeskin.labels import DX_CLASSES, GROUPS, malignant_probability, to_groups
from edgeskin.results import Classification, Lesion, PipelineResult

# ------------------------------------------------------------------------------------------------ videos


def pan_and_zoom(image: np.ndarray, frames: int, size: tuple[int, int]) -> list[np.ndarray]:
    """Frames of a camera moving over the image: a window that pans across it while zooming in."""
    height, width = image.shape[:2]
    out_w, out_h = size
    aspect = out_w / out_h
    result = []
    for i in range(frames):
        t = i / max(1, frames - 1)
        zoom = 1.0 + 0.6 * t  # 1x -> 1.6x
        win_h = min(height, width / aspect) / zoom
        win_w = win_h * aspect
        cx = width / 2 + (t - 0.5) * 0.3 * (width - win_w)
        cy = height / 2 + (0.5 - t) * 0.2 * (height - win_h)
        x0 = int(np.clip(cx - win_w / 2, 0, width - win_w))
        y0 = int(np.clip(cy - win_h / 2, 0, height - win_h))
        crop = image[y0 : y0 + int(win_h), x0 : x0 + int(win_w)]
        result.append(cv2.resize(crop, size, interpolation=cv2.INTER_AREA))
    return result


def write_video(path: Path, frames_rgb: list[np.ndarray], fps: float = 15.0) -> Path:
    height, width = frames_rgb[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi here"
    for frame in frames_rgb:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


# ------------------------------------------------------------------------------------------------ pipeline


def make_lesion(box: Sequence[float], probs: Sequence[float], score: float = 0.9, threshold: float = 0.3) -> Lesion:
    probs = np.asarray(probs, np.float32)
    probs = probs / probs.sum()
    malignant = float(malignant_probability(probs))
    box = np.asarray(box, np.float32)
    cam = np.outer(np.hanning(9), np.hanning(9)).astype(np.float32)
    return Lesion(
        box=box,
        score=score,
        dx=Classification(probs, DX_CLASSES),
        group=Classification(to_groups(probs), GROUPS),
        malignant=malignant,
        refer=malignant >= threshold,
        crop_box=np.rint(box).astype(np.int64),
        cam=cam / cam.max(),
    )


class FakePipeline:
    """``pipeline(frame_rgb) -> PipelineResult`` without a model.

    The box is the darkest blob (edgeskin.core.localize.classical_box); the dx probabilities depend on
    the mean colour inside it, so different images give different, repeatable diagnoses.

    Args:
        delay: Seconds to sleep per call (a slow device).
        fail_every: Raise on every n-th call (a bad frame); 0: never.
    """

    refer_threshold = 0.3  # edgeskin.roles.PipelineRole: the referral threshold it applies

    def __init__(self, delay: float = 0.0, fail_every: int = 0) -> None:
        self.delay = delay
        self.fail_every = fail_every
        self.calls = 0
        self.sizes: list[tuple[int, int]] = []
        self.thread_ids: set[int] = set()

    def __call__(self, frame_rgb: np.ndarray) -> PipelineResult:
        self.calls += 1
        self.thread_ids.add(threading.get_ident())
        start = time.perf_counter()
        if self.delay:
            time.sleep(self.delay)
        if self.fail_every and self.calls % self.fail_every == 0:
            raise RuntimeError(f"fake pipeline failure on call {self.calls}")
        height, width = frame_rgb.shape[:2]
        self.sizes.append((width, height))
        box = classical_box(frame_rgb)
        detect_ms = (time.perf_counter() - start) * 1000
        if box is None:
            return PipelineResult((width, height), (), {"detect": detect_ms}, ("no lesion found",))
        x0, y0, x1, y1 = (int(v) for v in box)
        region = frame_rgb[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)].reshape(-1, 3).astype(np.float32)
        r, g, b = region.mean(axis=0) / 255.0
        logits = np.array([r, g, b, 1 - r, 1 - g, 1 - b, 0.5], np.float32) * 3
        probs = np.exp(logits - logits.max())
        lesion = make_lesion(box, probs, threshold=self.refer_threshold)
        total_ms = (time.perf_counter() - start) * 1000
        return PipelineResult((width, height), (lesion,), {"detect": detect_ms, "classify": total_ms - detect_ms})


# ------------------------------------------------------------------------------------------------ picamera2


def known_scene(size: tuple[int, int]) -> np.ndarray:
    """A scene with known colours: red, green, blue and white quadrants around a dark round lesion."""
    width, height = size
    scene = np.zeros((height, width, 3), np.uint8)
    scene[: height // 2, : width // 2] = (220, 30, 30)
    scene[: height // 2, width // 2 :] = (30, 200, 40)
    scene[height // 2 :, : width // 2] = (40, 50, 210)
    scene[height // 2 :, width // 2 :] = (235, 235, 235)
    cv2.circle(scene, (width // 2, height // 2), min(width, height) // 6, (60, 35, 25), -1)
    return scene


class FakeRequest:
    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self._arrays = arrays
        self.released = False

    def make_array(self, name: str) -> np.ndarray:
        if self.released:
            raise RuntimeError("request already released")
        return self._arrays[name].copy()

    def release(self) -> None:
        self.released = True


def make_fake_picamera2(
    platform: str = "pisp",
    scene: Callable[[tuple[int, int]], np.ndarray] = known_scene,
    lores_stride: int | None = None,
    fail_open: bool = False,
) -> types.ModuleType:
    """A ``picamera2`` module whose Picamera2 behaves like the real one on a Pi 5 (``pisp``) or Pi 4 (``vc4``).

    Arrays are stored the way picamera2 returns them: ``RGB888`` as B, G, R bytes; ``BGR888`` as R, G, B;
    ``YUV420`` as a (h * 3 / 2, stride) plane array (I420), padded to ``lores_stride`` when given.
    """
    module = types.ModuleType("picamera2")
    module.instances = []  # type: ignore[attr-defined]

    class Picamera2:
        def __init__(self, camera_num: int = 0) -> None:
            if fail_open:
                raise IndexError("list index out of range")  # what picamera2 raises without a camera
            self.camera_num = camera_num
            self.camera_properties = {"Model": "imx219", "PixelArraySize": (3280, 2464)}
            self.config: dict | None = None
            self.started = self.stopped = self.closed = False
            self.captures: list[str] = []
            self.frame_counter = 0
            module.instances.append(self)  # type: ignore[attr-defined]

        def _configuration(self, main=None, lores=None, **kwargs) -> dict:
            main = dict(main or {})
            main.setdefault("size", (640, 480))
            main.setdefault("format", "XBGR8888")
            config = {"main": main, "lores": dict(lores) if lores else None, **kwargs}
            if config["lores"] is not None:
                config["lores"].setdefault("format", "YUV420")
            return config

        def create_preview_configuration(self, main=None, lores=None, **kwargs) -> dict:
            return self._configuration(main, lores, buffer_count=4, **kwargs)

        def create_video_configuration(self, main=None, lores=None, **kwargs) -> dict:
            return self._configuration(main, lores, buffer_count=6, **kwargs)

        def configure(self, config: dict) -> None:
            lores = config.get("lores")
            if lores is not None:
                if platform == "vc4" and lores["format"] not in ("YUV420", "YVU420"):
                    raise RuntimeError("lores stream must be YUV")  # the real VC4 restriction
                if lores["size"][0] > config["main"]["size"][0] or lores["size"][1] > config["main"]["size"][1]:
                    raise RuntimeError("lores stream dimensions may not exceed main stream")
            self.config = config

        def start(self) -> None:
            if self.config is None:
                raise RuntimeError("Camera has not been configured")
            self.started = True

        def stop(self) -> None:
            self.stopped = True

        def close(self) -> None:
            self.closed = True

        def _encode(self, name: str) -> np.ndarray:
            stream = self.config[name]
            size = tuple(stream["size"])
            rgb = scene(size)
            fmt = stream["format"]
            if fmt == "RGB888":
                return np.ascontiguousarray(rgb[..., ::-1])
            if fmt == "BGR888":
                return rgb.copy()
            if fmt == "XBGR8888":
                return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
            if fmt == "XRGB8888":
                return np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 255, np.uint8)])
            if fmt == "YUV420":
                i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
                stride = lores_stride if name == "lores" and lores_stride else size[0]
                if stride == size[0]:
                    return i420
                w, h = size
                out = np.zeros((h * 3 // 2, stride), np.uint8)
                flat = out.reshape(-1)
                out[:h, :w] = i420[:h]
                chroma = i420[h:].reshape(-1)
                cw, ch, cs = w // 2, h // 2, stride // 2
                u, v = chroma[: cw * ch].reshape(ch, cw), chroma[cw * ch :].reshape(ch, cw)
                u_plane = np.zeros((ch, cs), np.uint8)
                v_plane = np.zeros((ch, cs), np.uint8)
                u_plane[:, :cw], v_plane[:, :cw] = u, v
                flat[h * stride : h * stride + ch * cs] = u_plane.reshape(-1)
                flat[h * stride + ch * cs :] = v_plane.reshape(-1)
                return out
            raise RuntimeError(f"Format {fmt} not supported")

        def capture_array(self, name: str = "main") -> np.ndarray:
            if not self.started:
                raise RuntimeError("camera not started")
            self.captures.append(name)
            self.frame_counter += 1
            return self._encode(name)

        def capture_request(self) -> FakeRequest:
            if not self.started:
                raise RuntimeError("camera not started")
            self.captures.append("request")
            self.frame_counter += 1
            return FakeRequest({name: self._encode(name) for name in ("main", "lores") if self.config.get(name)})

    module.Picamera2 = Picamera2  # type: ignore[attr-defined]
    return module


# ------------------------------------------------------------------------------------------------ OpenCV


class FakeCapture:
    """A cv2.VideoCapture stand-in: ``frames`` BGR frames at ``interval`` seconds, then fails or ends.

    Args:
        frames: How many frames it delivers before ``read()`` starts failing (None: forever).
        interval: Seconds per frame (a camera's frame period).
        colour: BGR colour of the frames.
        opened: What ``isOpened()`` says.
    """

    def __init__(
        self, frames: int | None = None, interval: float = 0.0, colour=(40, 80, 160), opened=True, size=(64, 48)
    ) -> None:
        self.remaining = frames
        self.interval = interval
        self.colour = colour
        self.opened = opened
        self.size = size
        self.reads = 0
        self.released = False
        self.props: dict[int, float] = {}

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.opened and not self.released

    def read(self):
        if self.interval:
            time.sleep(self.interval)
        if self.released or (self.remaining is not None and self.remaining <= 0):
            return False, None
        if self.remaining is not None:
            self.remaining -= 1
        self.reads += 1
        frame = np.empty((self.size[1], self.size[0], 3), np.uint8)
        frame[:] = self.colour
        return True, frame

    def get(self, prop: int) -> float:
        return self.props.get(prop, 0.0)

    def set(self, prop: int, value: float) -> bool:
        self.props[prop] = value
        return True

    def release(self) -> None:
        self.released = True


class CaptureFactory:
    """Hands out captures in order: a plan like ``[FakeCapture(10), None, None, FakeCapture()]``.

    ``None`` stands for a failed open (the device is not there); after the plan, every open fails.
    """

    def __init__(self, plan: Sequence[FakeCapture | None]) -> None:
        self.plan = list(plan)
        self.opens = 0

    def __call__(self, spec):
        self.opens += 1
        if not self.plan:
            return FakeCapture(opened=False)
        item = self.plan.pop(0)
        return item if item is not None else FakeCapture(opened=False)
