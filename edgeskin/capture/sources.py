"""Frame sources: the Raspberry Pi camera (picamera2), OpenCV captures and folders of images.

Every source is a context manager with the same small surface (:class:`FrameSource`)::

    with open_source("picamera2") as source:        # or 0, "clip.mp4", "rtsp://...", "photos/"
        frame = source.read()                       # Frame: RGB uint8 (H, W, 3), monotonic timestamp, index
        still = source.capture_still()              # full-resolution RGB frame for a full analysis

``read()`` raises :class:`StopIteration` at the end of a file or folder, :class:`CameraError` when no frame
arrived in time (a camera that is reconnecting: call again), and :class:`CameraLostError` when a camera
is gone for good (its reconnection attempts are used up). Sources are iterable as well.

Frames are RGB everywhere: OpenCV's BGR and picamera2's pixel formats are converted here, at the edge.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from edgeskin.errors import CameraError, ConfigError, ImageError, MissingExtraError
from edgeskin.image import read_image, validate_frame

__all__ = [
    "Frame",
    "FrameSource",
    "CameraLostError",
    "SourceBase",
    "Picamera2Source",
    "OpenCVSource",
    "ImageFolderSource",
    "IMAGE_SUFFIXES",
    "DEVICE_TREE_MODEL",
    "open_source",
    "pi_generation",
    "yuv420_to_rgb",
    "picamera2_to_rgb",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES: tuple[str, ...] = (".avi", ".mp4", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".h264")
URL_SCHEMES: tuple[str, ...] = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")


class CameraLostError(CameraError):
    """A camera stopped delivering frames and did not come back within its reconnection attempts."""


@dataclass(frozen=True, eq=False)  # arrays have no single truth value: frames compare by identity
class Frame:
    """One frame from a source.

    Attributes:
        rgb: The frame to analyse, RGB uint8 (H, W, 3). On a Pi camera this is the small ``lores`` stream.
        timestamp: ``time.monotonic()`` when the frame was captured (seconds; comparable within a process).
        index: Position of the frame in its stream, counting frames that were dropped, so a jump of more
            than one means stale frames were skipped.
        main: The full-resolution ``main`` stream of the same frame (RGB), when the source has one and
            was asked for it; None otherwise. Draw on this one, analyse ``rgb``.
    """

    rgb: np.ndarray
    timestamp: float
    index: int
    main: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of ``rgb``."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


@runtime_checkable
class FrameSource(Protocol):
    """What the live loop needs from a source of frames."""

    name: str

    def read(self) -> Frame:
        """The newest frame not returned before; StopIteration at the end, CameraError when none came."""
        ...

    def capture_still(self) -> np.ndarray:
        """A full-resolution RGB uint8 frame for a full analysis."""
        ...

    def close(self) -> None:
        """Release the device or file; safe to call twice."""
        ...

    def __enter__(self) -> FrameSource: ...

    def __exit__(self, *exc_info: object) -> None: ...


class SourceBase:
    """Context-manager and iterator plumbing shared by the sources."""

    name: str = "source"

    def read(self) -> Frame:  # pragma: no cover - overridden
        raise NotImplementedError

    def capture_still(self) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> SourceBase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            try:
                yield self.read()
            except StopIteration:
                return

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _bgr_to_rgb(image: np.ndarray) -> np.ndarray:
    """OpenCV's BGR(A) or gray frame as RGB uint8 (H, W, 3)."""
    if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4 and image.dtype == np.uint8:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return validate_frame(image, min_size=1)


# --------------------------------------------------------------------------------------------- picamera2


def pi_generation(model_path: str | os.PathLike[str] | None = None, model: str | None = None) -> int | None:
    """Raspberry Pi generation from the device-tree model string (5 for a Pi 5, 500 or CM5, 4 for a Pi 4...).

    Args:
        model_path: File holding the model string; default ``/proc/device-tree/model``.
        model: The model string itself (tests), e.g. ``"Raspberry Pi 5 Model B Rev 1.0"``.

    Returns:
        The generation (1-5), or None when this is not a Raspberry Pi (or the file is absent).
    """
    if model is None:
        try:
            model = Path(model_path or DEVICE_TREE_MODEL).read_bytes().decode("utf-8", "replace")
        except OSError:
            return None
    model = model.replace("\x00", "").strip()
    if not model.startswith("Raspberry Pi"):
        return None
    rest = model[len("Raspberry Pi") :].strip()
    for prefix in ("Compute Module ", "Model ", ""):
        if rest.startswith(prefix) and rest[len(prefix) : len(prefix) + 1].isdigit():
            digit = int(rest[len(prefix)])
            # "Raspberry Pi 500" / "400" are keyboards built on the 5 / 4.
            return digit if digit <= 5 else None
    if rest.startswith("Zero 2"):
        return 3
    if rest.startswith("Zero"):
        return 1
    return None


def yuv420_to_rgb(buffer: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Convert picamera2's planar YUV420 (I420) array to RGB uint8.

    picamera2 returns a YUV420 stream as a (h * 3 / 2, stride) uint8 array: h rows of Y, then the U plane
    and the V plane, each (h / 2) x (stride / 2) laid out two chroma rows per array row. When the stride is
    wider than the image (row padding) the planes are cut back to the image before conversion.

    Args:
        buffer: The array from ``capture_array("lores")``.
        size: (width, height) of the configured stream.

    Returns:
        RGB uint8 (height, width, 3).
    """
    width, height = size
    buffer = np.asarray(buffer, dtype=np.uint8)
    if buffer.ndim != 2 or buffer.shape[0] != height * 3 // 2 or buffer.shape[1] < width:
        raise CameraError(
            f"expected a YUV420 buffer of shape ({height * 3 // 2}, >= {width}) for a {width}x{height} stream, "
            f"got {buffer.shape}"
        )
    stride = buffer.shape[1]
    if stride != width:
        flat = buffer.reshape(-1)
        y = buffer[:height, :width]
        chroma_h, chroma_stride = height // 2, stride // 2
        u_start = height * stride
        v_start = u_start + chroma_h * chroma_stride
        u = flat[u_start:v_start].reshape(chroma_h, chroma_stride)[:, : width // 2]
        v = flat[v_start : v_start + chroma_h * chroma_stride].reshape(chroma_h, chroma_stride)[:, : width // 2]
        buffer = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(height * 3 // 2, width)
    return cv2.cvtColor(np.ascontiguousarray(buffer), cv2.COLOR_YUV2RGB_I420)


def picamera2_to_rgb(array: np.ndarray, pixel_format: str, size: tuple[int, int]) -> np.ndarray:
    """Convert an array from ``Picamera2.capture_array`` in ``pixel_format`` to RGB uint8 (H, W, 3).

    picamera2 names formats by libcamera's little-endian convention, so the byte order in memory is the
    reverse of the name: ``RGB888`` arrays are [B, G, R] per pixel (OpenCV's order), ``BGR888`` are
    [R, G, B], ``XRGB8888`` is [B, G, R, 255] and ``XBGR8888`` is [R, G, B, 255].
    """
    fmt = pixel_format.upper()
    if fmt == "YUV420":
        return yuv420_to_rgb(array, size)
    channels = {"RGB888": 3, "BGR888": 3, "XRGB8888": 4, "XBGR8888": 4}.get(fmt)
    if channels is None:
        raise ConfigError(
            f"unsupported picamera2 pixel format {pixel_format!r}; expected RGB888, BGR888, XRGB8888, "
            "XBGR8888 or YUV420"
        )
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[2] != channels:
        raise CameraError(f"expected a (H, W, {channels}) array for {fmt}, got shape {array.shape}")
    if fmt in ("RGB888", "XRGB8888"):  # memory order B, G, R
        return np.ascontiguousarray(array[..., 2::-1])
    return np.ascontiguousarray(array[..., :3])


def _import_picamera2() -> ModuleType:
    try:
        import picamera2  # noqa: PLC0415 - lazy on purpose: only Raspberry Pi OS has it
    except ImportError as exc:
        raise MissingExtraError(
            "the Raspberry Pi camera needs the 'picamera2' module, which is not importable here. On Raspberry "
            "Pi OS install it with `sudo apt install python3-picamera2` (pip cannot build libcamera) and run "
            "edgeskin from a venv made with `python3 -m venv --system-site-packages` so it sees the system "
            "package; devices/install-rpi.sh does both"
        ) from exc
    return picamera2


class Picamera2Source(SourceBase):
    """The Raspberry Pi camera through picamera2: a small ``lores`` stream to analyse, ``main`` to show.

    The pixel format of the ``lores`` stream follows the platform: a Pi 5 (PiSP) can give RGB lores
    (``RGB888``, stored B, G, R); older Pis (VC4: Pi 4, 3, Zero) only give YUV420 lores, converted here
    with OpenCV's I420 conversion. The ``main`` stream is ``RGB888`` on both. Every array is returned RGB.

    Args:
        lores_size: (width, height) of the analysis stream.
        main_size: (width, height) of the display / still stream.
        with_main: Also return the ``main`` stream of each frame (``Frame.main``), taken from the same
            request as ``lores``. Costs a large copy per frame; leave off unless you draw on it.
        generation: Raspberry Pi generation (5 → RGB lores, else YUV420); None: read ``model_path``.
        model_path: Device-tree model file used to detect the generation.
        camera_num: Which camera (0 or 1 on a Pi 5 with two).
        configuration: ``"preview"`` or ``"video"`` (``create_video_configuration``: more buffers).
        picamera2_module: The picamera2 module to use (tests inject a fake); None imports it lazily.
    """

    def __init__(
        self,
        lores_size: tuple[int, int] = (320, 240),
        main_size: tuple[int, int] = (1640, 1232),
        *,
        with_main: bool = False,
        generation: int | None = None,
        model_path: str | os.PathLike[str] | None = None,
        camera_num: int = 0,
        configuration: str = "preview",
        picamera2_module: ModuleType | Any | None = None,
    ) -> None:
        if configuration not in ("preview", "video"):
            raise ConfigError(f"configuration must be 'preview' or 'video', got {configuration!r}")
        lores_size = (int(lores_size[0]), int(lores_size[1]))
        main_size = (int(main_size[0]), int(main_size[1]))
        if lores_size[0] > main_size[0] or lores_size[1] > main_size[1]:
            raise ConfigError(f"the lores stream {lores_size} must not be larger than the main stream {main_size}")
        if lores_size[0] % 2 or lores_size[1] % 2:
            raise ConfigError(f"lores width and height must be even (YUV420 subsamples by 2), got {lores_size}")
        module = picamera2_module if picamera2_module is not None else _import_picamera2()
        self.generation = generation if generation is not None else pi_generation(model_path)
        self.lores_format = "RGB888" if (self.generation or 0) >= 5 else "YUV420"
        self.main_format = "RGB888"
        self.lores_size = lores_size
        self.main_size = main_size
        self.with_main = with_main
        self.name = f"picamera2:{camera_num}"
        self._index = 0
        self._closed = False
        self._lock = threading.Lock()
        try:
            self._camera = module.Picamera2(camera_num)
        except Exception as exc:  # picamera2 raises IndexError / RuntimeError when no camera is attached
            raise CameraError(
                f"cannot open Raspberry Pi camera {camera_num}: {exc}. Check the ribbon cable, that "
                "`rpicam-hello --list-cameras` lists it, and that no other program is using it"
            ) from exc
        try:
            create = getattr(self._camera, f"create_{configuration}_configuration")
            config = create(
                main={"size": main_size, "format": self.main_format},
                lores={"size": lores_size, "format": self.lores_format},
            )
            self._camera.configure(config)
            self._camera.start()
        except Exception as exc:
            self._camera.close()
            raise CameraError(f"cannot configure and start Raspberry Pi camera {camera_num}: {exc}") from exc
        logger.info(
            "picamera2 camera %d: lores %dx%d %s, main %dx%d %s (Pi generation %s)",
            camera_num,
            *lores_size,
            self.lores_format,
            *main_size,
            self.main_format,
            self.generation,
        )

    def read(self) -> Frame:
        with self._lock:
            if self._closed:
                raise StopIteration
            try:
                if self.with_main:
                    request = self._camera.capture_request()
                    try:
                        lores = request.make_array("lores")
                        main = request.make_array("main")
                    finally:
                        request.release()
                else:
                    lores = self._camera.capture_array("lores")
                    main = None
            except Exception as exc:
                raise CameraError(f"{self.name}: capture failed: {exc}") from exc
            timestamp = time.monotonic()
            index = self._index
            self._index += 1
        rgb = picamera2_to_rgb(lores, self.lores_format, self.lores_size)
        main_rgb = None if main is None else picamera2_to_rgb(main, self.main_format, self.main_size)
        return Frame(rgb=rgb, timestamp=timestamp, index=index, main=main_rgb)

    def capture_still(self) -> np.ndarray:
        with self._lock:
            if self._closed:
                raise CameraError(f"{self.name} is closed")
            try:
                main = self._camera.capture_array("main")
            except Exception as exc:
                raise CameraError(f"{self.name}: still capture failed: {exc}") from exc
        return picamera2_to_rgb(main, self.main_format, self.main_size)

    @property
    def camera_properties(self) -> dict[str, Any]:
        return dict(getattr(self._camera, "camera_properties", {}) or {})

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._camera.stop()
            finally:
                self._camera.close()


# --------------------------------------------------------------------------------------------- OpenCV


def _is_url(spec: str) -> bool:
    return spec.lower().startswith(URL_SCHEMES)


def _describe(spec: int | str) -> str:
    return f"camera {spec}" if isinstance(spec, int) else str(spec)


class OpenCVSource(SourceBase):
    """An OpenCV ``VideoCapture``: a USB camera (index), a video file, or an RTSP/HTTP stream (URL).

    Live sources (cameras and URLs) are read by a background thread that keeps only the newest frame, so
    a slow consumer skips stale frames instead of falling behind (``Frame.index`` jumps). When a live
    source stops delivering, the thread reconnects with exponential backoff (``backoff_initial`` doubling
    up to ``backoff_max``) for up to ``max_reconnects`` attempts in a row; meanwhile ``read()`` raises
    :class:`CameraError` after ``read_timeout`` seconds, and after the last attempt
    :class:`CameraLostError`.

    Video files are read frame by frame in the caller's thread (every frame is analysed, reproducibly)
    unless ``realtime=True``, which plays the file at its own frame rate through the same newest-frame
    thread, as if it were a camera. The end of a file raises :class:`StopIteration`.

    Args:
        spec: Camera index, video path or URL.
        realtime: Files only: play at the file's frame rate and drop stale frames like a camera.
        size: Requested (width, height) for a camera (the driver may pick the nearest it supports).
        max_reconnects: Reconnection attempts in a row before giving up (live sources).
        backoff_initial: First wait before reconnecting, seconds.
        backoff_max: Longest wait between attempts, seconds.
        read_timeout: How long ``read()`` waits for a new frame from a live source, seconds.
        capture_factory: Builds the capture from ``spec`` (default ``cv2.VideoCapture``; tests inject fakes).
    """

    def __init__(
        self,
        spec: int | str | os.PathLike[str],
        *,
        realtime: bool = False,
        size: tuple[int, int] | None = None,
        max_reconnects: int = 10,
        backoff_initial: float = 0.5,
        backoff_max: float = 8.0,
        read_timeout: float = 2.0,
        capture_factory: Callable[[int | str], Any] | None = None,
    ) -> None:
        if isinstance(spec, os.PathLike):
            spec = os.fspath(spec)
        if isinstance(spec, str) and spec.strip().isdigit():
            spec = int(spec)
        self.spec: int | str = spec
        self.name = _describe(spec)
        self.live = isinstance(spec, int) or _is_url(spec)
        if not self.live and not capture_factory and not Path(spec).is_file():
            raise CameraError(f"{spec}: video file not found")
        self.threaded = self.live or realtime
        self.size = size
        self.max_reconnects = int(max_reconnects)
        self.backoff_initial = float(backoff_initial)
        self.backoff_max = float(backoff_max)
        self.read_timeout = float(read_timeout)
        self._factory = capture_factory or cv2.VideoCapture
        self.reconnects = 0  # successful reconnections so far
        self._attempt = 0
        self._index = 0
        self._last_returned = -1
        self._latest: Frame | None = None
        self._state = "open"  # open | reconnecting | ended | lost | closed
        self._lost_message = ""
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cap = self._open_capture()
        if self._cap is None:
            hint = (
                " Check the index (ls /dev/video*), that your user is in the 'video' group and that no other "
                "program uses the camera"
                if isinstance(spec, int)
                else ""
            )
            raise CameraError(f"cannot open {self.name}.{hint}")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else 30.0
        if self.threaded:
            self._thread = threading.Thread(target=self._grab_loop, name=f"edgeskin-grab-{self.name}", daemon=True)
            self._thread.start()

    # -- opening and reconnecting

    def _open_capture(self) -> Any | None:
        try:
            cap = self._factory(self.spec)
        except Exception as exc:  # a factory or backend that raises instead of returning a closed capture
            logger.debug("opening %s raised %s", self.name, exc)
            return None
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            return None
        if self.live:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver's queue short: we want the newest frame
            if self.size is not None:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, float(self.size[0]))
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, float(self.size[1]))
        return cap

    def _reconnect(self) -> bool:
        delay = self.backoff_initial
        for attempt in range(1, self.max_reconnects + 1):
            with self._cond:
                self._state = "reconnecting"
                self._attempt = attempt
            logger.warning(
                "%s: no frames; reconnecting in %.1f s (attempt %d/%d)", self.name, delay, attempt, self.max_reconnects
            )
            if self._stop.wait(delay):
                return False
            cap = self._open_capture()
            if cap is not None:
                self._cap = cap
                self.reconnects += 1
                with self._cond:
                    self._state = "open"
                logger.warning("%s: reconnected after %d attempt(s)", self.name, attempt)
                return True
            delay = min(delay * 2.0, self.backoff_max)
        with self._cond:
            self._state = "lost"
            self._lost_message = (
                f"{self.name} stopped delivering frames and did not come back after {self.max_reconnects} "
                "reconnection attempts"
            )
            self._cond.notify_all()
        logger.error("%s", self._lost_message)
        return False

    # -- the grabber thread (live sources and realtime files)

    def _grab_loop(self) -> None:
        started = time.monotonic()
        played = 0
        try:
            while not self._stop.is_set():
                if self._cap is None and not self._reconnect():
                    return
                try:
                    ok, bgr = self._cap.read()
                except Exception as exc:  # a backend that raises on a vanished device
                    logger.debug("%s: read raised %s", self.name, exc)
                    ok, bgr = False, None
                timestamp = time.monotonic()
                if ok and bgr is not None and getattr(bgr, "size", 0):
                    try:
                        rgb = _bgr_to_rgb(bgr)
                    except ImageError as exc:
                        logger.warning("%s: unusable frame skipped: %s", self.name, exc)
                        continue
                    with self._cond:
                        self._latest = Frame(rgb=rgb, timestamp=timestamp, index=self._index)
                        self._index += 1
                        self._cond.notify_all()
                    if not self.live:  # realtime file: wait for the frame's due time
                        played += 1
                        due = started + played / self.fps
                        self._stop.wait(max(0.0, due - time.monotonic()))
                    continue
                if not self.live:
                    with self._cond:
                        self._state = "ended"
                        self._cond.notify_all()
                    return
                self._cap.release()
                self._cap = None
        finally:
            if self._cap is not None:
                self._cap.release()
                self._cap = None

    # -- reading

    def read(self) -> Frame:
        if not self.threaded:
            return self._read_sequential()
        deadline = time.monotonic() + self.read_timeout
        with self._cond:
            while True:
                if self._state == "closed":
                    raise StopIteration
                latest = self._latest
                if latest is not None and latest.index > self._last_returned:
                    self._last_returned = latest.index
                    return latest
                if self._state == "ended":
                    raise StopIteration
                if self._state == "lost":
                    raise CameraLostError(self._lost_message)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    detail = (
                        f"reconnecting, attempt {self._attempt}/{self.max_reconnects}"
                        if self._state == "reconnecting"
                        else "the source is slow or stalled"
                    )
                    raise CameraError(f"no new frame from {self.name} within {self.read_timeout:g} s ({detail})")
                self._cond.wait(remaining)

    def _read_sequential(self) -> Frame:
        if self._state != "open" or self._cap is None:
            raise StopIteration
        while True:
            ok, bgr = self._cap.read()
            timestamp = time.monotonic()
            if not ok or bgr is None:
                self._state = "ended"
                raise StopIteration
            try:
                rgb = _bgr_to_rgb(bgr)
            except ImageError as exc:
                logger.warning("%s: unusable frame %d skipped: %s", self.name, self._index, exc)
                self._index += 1
                continue
            frame = Frame(rgb=rgb, timestamp=timestamp, index=self._index)
            self._index += 1
            self._latest = frame
            self._last_returned = frame.index
            return frame

    def capture_still(self) -> np.ndarray:
        """The newest frame at the capture's full resolution (RGB)."""
        with self._cond:
            latest = self._latest
        if latest is None:
            latest = self.read()
        return latest.rgb.copy()

    @property
    def state(self) -> str:
        """``open``, ``reconnecting``, ``ended``, ``lost`` or ``closed``."""
        return self._state

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            already = self._state == "closed"
            self._state = "closed"
            self._cond.notify_all()
        if already:
            return
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            if self._thread.is_alive():
                logger.warning("%s: the grabber thread did not stop within 5 s (blocked in the driver)", self.name)
        elif self._cap is not None:
            self._cap.release()
            self._cap = None


# --------------------------------------------------------------------------------------------- folders


class ImageFolderSource(SourceBase):
    """Images of a folder (or an explicit list of files), in sorted name order, as frames.

    Files that cannot be read are reported (logged and listed in ``skipped``) and skipped.

    Args:
        folder: A folder, one image file, or a sequence of image paths.
        loop: Start again after the last image (demos, soak tests) instead of raising StopIteration.
        suffixes: File suffixes taken from a folder (case-insensitive).
    """

    def __init__(
        self,
        folder: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        loop: bool = False,
        suffixes: Sequence[str] = IMAGE_SUFFIXES,
    ) -> None:
        if isinstance(folder, (str, os.PathLike)):
            root = Path(folder)
            if root.is_dir():
                wanted = {s.lower() for s in suffixes}
                paths = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in wanted)
            elif root.is_file():
                paths = [root]
            else:
                raise CameraError(f"{root}: no such folder or image file")
            self.name = str(root)
        else:
            paths = [Path(p) for p in folder]
            self.name = f"{len(paths)} images"
        if not paths:
            raise CameraError(f"{self.name}: no images ({', '.join(suffixes)}) found")
        self.paths: tuple[Path, ...] = tuple(paths)
        self.loop = loop
        self.skipped: list[tuple[str, str]] = []
        self._bad: set[Path] = set()
        self._position = 0
        self._index = 0
        self._current: np.ndarray | None = None
        self._closed = False

    def read(self) -> Frame:
        while not self._closed:
            if self._position >= len(self.paths):
                if not self.loop or len(self._bad) == len(self.paths):
                    break
                self._position = 0
            path = self.paths[self._position]
            self._position += 1
            if path in self._bad:
                continue
            try:
                rgb = read_image(path)
            except ImageError as exc:
                self._bad.add(path)
                self.skipped.append((str(path), str(exc)))
                logger.warning("skipped unreadable image: %s", exc)
                continue
            self._current = rgb
            frame = Frame(rgb=rgb, timestamp=time.monotonic(), index=self._index)
            self._index += 1
            return frame
        raise StopIteration

    def capture_still(self) -> np.ndarray:
        """The image last returned by ``read()`` (the first readable one before any read)."""
        if self._current is None:
            self.read()
        assert self._current is not None
        return self._current.copy()

    def close(self) -> None:
        self._closed = True


# --------------------------------------------------------------------------------------------- open_source


def open_source(
    spec: int | str | os.PathLike[str],
    *,
    lores_size: tuple[int, int] = (320, 240),
    main_size: tuple[int, int] = (1640, 1232),
    with_main: bool = False,
    camera_size: tuple[int, int] | None = None,
    realtime: bool = False,
    loop: bool = False,
    **options: Any,
) -> SourceBase:
    """Open a frame source from a command-line style string.

    Args:
        spec: ``"picamera2"`` (or ``"picamera2:1"`` for camera 1), a camera index (``0``), a URL
            (``rtsp://``, ``http://``...), a video file, an image file, or a folder of images.
        lores_size: Analysis stream size for picamera2.
        main_size: Display / still stream size for picamera2.
        with_main: picamera2: also return the main stream with each frame.
        camera_size: OpenCV cameras (an index): the capture size to ask the driver for.
        realtime: Video files: play at the file's frame rate, dropping stale frames like a camera.
        loop: Image folders: start again after the last image.
        **options: Passed on to the source's constructor.

    Raises:
        CameraError: The file or folder does not exist, or the camera cannot be opened.
        MissingExtraError: ``picamera2`` was asked for and is not installed.
    """
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if isinstance(spec, int):
        return OpenCVSource(spec, size=camera_size, **options)
    text = str(spec).strip()
    if text.lower().startswith("picamera2"):
        _, _, number = text.partition(":")
        camera_num = int(number) if number.strip().isdigit() else 0
        return Picamera2Source(lores_size, main_size, with_main=with_main, camera_num=camera_num, **options)
    if text.isdigit():
        return OpenCVSource(int(text), size=camera_size, **options)
    if _is_url(text):
        return OpenCVSource(text, **options)
    path = Path(text).expanduser()
    if path.is_dir():
        return ImageFolderSource(path, loop=loop, **options)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return ImageFolderSource(path, loop=loop, **options)
        return OpenCVSource(path, realtime=realtime, **options)
    raise CameraError(
        f"{text}: no such file or folder; expected a camera index (0), 'picamera2', a URL (rtsp://, http://), "
        "a video file, an image file or a folder of images"
    )
