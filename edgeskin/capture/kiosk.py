"""A full-screen kiosk for a Raspberry Pi with a touch screen (Tkinter).

The window shows the live preview with the lesion's box and label (or guidance such as "hold still"), the
smoothed diagnosis, a large **Capture** button that analyses a full-resolution still and shows it with
its class-activation (CAM) overlay, and the not-a-diagnosis notice.

Threads: the live loop (camera + pipeline) runs in one worker thread; Tk runs in the main thread and is
only touched there. The worker hands over its latest picture through a one-slot box guarded by a lock,
and the UI polls it with ``after()``; nothing lives in module globals. Tkinter is imported when a kiosk
is built, so ``edgeskin.capture`` works without it (Raspberry Pi OS: ``sudo apt install python3-tk``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgeskin.capture.live import LiveFrame, LiveLoop, LiveSummary, StillAnalysis, draw_result, render_live
from edgeskin.errors import ConfigError, MissingExtraError
from edgeskin.results import CONTEXT_VIEW, DETECTOR_UNSURE, RETAKE_ADVICE, PipelineResult
from edgeskin.roles import PipelineRole

__all__ = ["NOTICE", "KioskApp", "run_kiosk", "import_tk", "fit_image", "to_photo_data"]

logger = logging.getLogger(__name__)

NOTICE = (
    "Not a diagnosis. edgeskin is a research aid that can be wrong; it does not replace a doctor. "
    "Have any lesion that is new, changing, bleeding or worrying you examined by a clinician."
)


def import_tk() -> Any:
    """Import tkinter, or fail with how to install it."""
    try:
        import tkinter  # noqa: PLC0415 - lazy on purpose
    except ImportError as exc:
        raise MissingExtraError(
            "the kiosk needs Tkinter, which is not installed: on Raspberry Pi OS / Debian `sudo apt install "
            "python3-tk` (a venv made with --system-site-packages sees it)"
        ) from exc
    return tkinter


def fit_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale an image to fit inside (width, height), keeping its aspect ratio."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    if size == (w, h):
        return image
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)


def to_photo_data(image_rgb: np.ndarray) -> bytes:
    """Binary PPM of an RGB image: what ``tk.PhotoImage(data=...)`` reads without Pillow."""
    h, w = image_rgb.shape[:2]
    return b"P6 %d %d 255\n" % (w, h) + np.ascontiguousarray(image_rgb, dtype=np.uint8).tobytes()


def _absent_text(messages: tuple[str, ...] | list[str]) -> str:
    """Why there is no answer, each reason on its own line, with the advice that fits it."""
    lines = [m[:1].upper() + m[1:] for m in messages]
    lines += [RETAKE_ADVICE[m] for m in messages if m in RETAKE_ADVICE]
    return "\n".join(lines)


def _diagnosis_text(live: LiveFrame) -> str:
    if live.entry.get("error"):
        return "This frame could not be analysed."
    if live.withheld or live.smoothed is None:
        return _absent_text(live.messages) or "Looking for a lesion..."
    s = live.smoothed
    lesions = live.entry.get("lesions") or []
    main = live.entry.get("main_lesion")
    shown = lesions[main] if main is not None and main < len(lesions) else {}
    top = sorted(s.dx.items(), key=lambda kv: -kv[1])[:3]
    lines = [f"{s.label}  {s.dx[s.label]:.0%}", "  ".join(f"{k} {v:.0%}" for k, v in top[1:])]
    if np.isfinite(s.malignant):
        lines.append(f"malignant {s.malignant:.0%}")
    if s.refer:
        lines.append("Please show this lesion to a doctor.")
    lines += _flag_lines(bool(shown.get("detector_unsure")), bool(shown.get("context_view")))
    return "\n".join(lines)


def _flag_lines(detector_unsure: bool, context_view: bool) -> list[str]:
    """The notes that go with an answered lesion: the detector's doubt, and a combined context view."""
    notes = [DETECTOR_UNSURE] * detector_unsure + [CONTEXT_VIEW] * context_view
    return [note[:1].upper() + note[1:] + "." for note in notes]


def _still_text(still: StillAnalysis) -> str:
    if still.error or still.result is None:
        return f"Capture failed: {still.error}"
    if not still.result.lesions:
        return "Still: " + (_absent_text(still.result.messages) or "no lesion found")
    lesion = max(still.result.lesions, key=lambda le: float(le.score))
    text = f"Still: {lesion.label} {float(lesion.dx.probabilities.max()):.0%}, malignant {float(lesion.malignant):.0%}"
    if lesion.refer:
        text += "\nPlease show this lesion to a doctor."
    return "\n".join([text, *_flag_lines(lesion.detector_unsure, lesion.context_view)])


@dataclass
class _Slot:
    """A one-item box passed from the worker thread to the UI thread."""

    lock: threading.Lock
    value: Any = None
    fresh: bool = False

    def put(self, value: Any) -> None:
        with self.lock:
            self.value, self.fresh = value, True

    def take(self) -> Any:
        with self.lock:
            if not self.fresh:
                return None
            self.fresh = False
            return self.value


class KioskApp:
    """The kiosk window on a Tk root, with its live loop in a worker thread.

    Args:
        root: The ``tkinter.Tk`` root (owned by the caller).
        loop: The live loop to run (its ``on_result`` is taken over by the kiosk).
        fullscreen: Cover the screen (touch kiosk); False opens a normal window.
        poll_ms: How often the UI takes the newest picture from the worker.
        notice: The not-a-diagnosis notice shown at the bottom.
        close_when_done: Close the window when the loop ends (tests, demos) instead of keeping the last frame.
    """

    def __init__(
        self,
        root: Any,
        loop: LiveLoop,
        *,
        fullscreen: bool = True,
        poll_ms: int = 30,
        notice: str = NOTICE,
        close_when_done: bool = False,
    ) -> None:
        self.tk = import_tk()
        self.root = root
        self.loop = loop
        self.poll_ms = int(poll_ms)
        self.close_when_done = close_when_done
        self.frames_shown = 0
        self.stills_shown = 0
        self.summary: LiveSummary | None = None
        self._live_slot = _Slot(threading.Lock())
        self._still_slot = _Slot(threading.Lock())
        self._worker: threading.Thread | None = None
        self._closed = False
        self._photos: dict[str, Any] = {}  # Tk images must stay referenced while shown
        self._previous_on_result: Callable[[LiveFrame], Any] | None = loop.on_result
        loop.on_result = self._on_result
        self._build(fullscreen, notice)

    # -- layout

    def _build(self, fullscreen: bool, notice: str) -> None:
        tk = self.tk
        root = self.root
        root.title("edgeskin")
        screen_w, screen_h = root.winfo_screenwidth(), root.winfo_screenheight()
        window_w = screen_w if fullscreen else min(1024, screen_w)
        if fullscreen:
            root.geometry(f"{screen_w}x{screen_h}+0+0")
            try:
                root.attributes("-fullscreen", True)
            except tk.TclError:  # some window managers refuse; the geometry above still covers the screen
                pass
        else:
            root.geometry(f"{min(1024, screen_w)}x{min(600, screen_h)}")
        base = max(11, min(screen_w, screen_h) // 40)
        bg, fg = "#111111", "#eeeeee"
        root.configure(background=bg)
        root.columnconfigure(0, weight=3)
        root.columnconfigure(1, weight=1)
        root.rowconfigure(0, weight=1)

        self.preview = tk.Label(
            root, background="#000000", text="starting camera...", foreground=fg, font=("DejaVu Sans", base)
        )
        self.preview.grid(row=0, column=0, sticky="nsew", padx=4, pady=4)

        side = tk.Frame(root, background=bg)
        side.grid(row=0, column=1, sticky="nsew", padx=4, pady=4)
        side.columnconfigure(0, weight=1)
        side.rowconfigure(3, weight=1)

        def side_text(text: str, font: tuple, **options) -> tk.Label:
            """A left-aligned text label of the side panel."""
            return tk.Label(
                side, text=text, justify="left", anchor="nw", background=bg, foreground=fg, font=font, **options
            )

        self.diagnosis = side_text(
            "Looking for a lesion...", ("DejaVu Sans", base, "bold"), wraplength=max(100, screen_w // 4)
        )
        self.diagnosis.grid(row=0, column=0, sticky="new")
        self.capture_button = tk.Button(
            side, text="Capture", command=self.capture, font=("DejaVu Sans", int(base * 1.6), "bold"),
            background="#2e7d32", foreground="#ffffff", activebackground="#388e3c", activeforeground="#ffffff",
        )  # fmt: skip
        self.capture_button.grid(row=1, column=0, sticky="ew", pady=base)
        self.still_text = side_text("Press Capture for a full-resolution analysis.", ("DejaVu Sans", base - 2))
        self.still_text.grid(row=2, column=0, sticky="new")
        self.still = tk.Label(side, background=bg)
        self.still.grid(row=3, column=0, sticky="nsew", pady=4)
        self.status = tk.Label(
            side, text="", anchor="w", background=bg, foreground="#999999", font=("DejaVu Sans", max(9, base - 4))
        )
        self.status.grid(row=4, column=0, sticky="ew")

        self.notice = tk.Label(
            root,
            text=notice,
            background="#ffcc00",
            foreground="#000000",
            justify="center",
            font=("DejaVu Sans", max(10, base - 2), "bold"),
            wraplength=max(100, window_w - 20),
        )
        self.notice.grid(row=1, column=0, columnspan=2, sticky="ew")

        side.bind("<Configure>", lambda event: self._wrap(event.width))
        # The notice spans the window, which in windowed mode is narrower than the screen: wrap it to the window.
        self.notice.bind("<Configure>", lambda event: self._wrap_notice(event.width))
        root.bind("<Escape>", lambda event: self.close())
        root.bind("<KeyPress-c>", lambda event: self.capture())
        root.protocol("WM_DELETE_WINDOW", self.close)

    def _wrap(self, width: int) -> None:
        self.diagnosis.configure(wraplength=max(50, width - 8))
        self.still_text.configure(wraplength=max(50, width - 8))

    def _wrap_notice(self, width: int) -> None:
        wrap = max(100, width - 20)
        # Configuring the same value again would fire <Configure> again, for ever.
        if int(str(self.notice.cget("wraplength"))) != wrap:
            self.notice.configure(wraplength=wrap)

    # -- worker side (runs on the loop's thread)

    def _on_result(self, live: LiveFrame) -> None:
        picture = render_live(live)
        self._live_slot.put((picture, _diagnosis_text(live), self.loop.fps))
        if self._previous_on_result is not None:
            self._previous_on_result(live)

    def _still_ready(self, still: StillAnalysis) -> None:
        picture = None
        if still.image is not None:
            picture = draw_result(still.image, still.result, heatmap=True)
        self._still_slot.put((picture, _still_text(still)))

    def _run_loop(self) -> None:
        try:
            self.summary = self.loop.run()
        except Exception:  # the loop reports its own errors; anything else must not pass silently
            logger.exception("the live loop failed")

    # -- UI side (Tk thread)

    def start(self) -> None:
        """Start the worker thread and the UI polling."""
        if self._worker is not None:
            return
        self._worker = threading.Thread(target=self._run_loop, name="edgeskin-live", daemon=True)
        self._worker.start()
        self.root.after(self.poll_ms, self._refresh)

    def capture(self) -> None:
        """The Capture button: ask the worker for a full-resolution still with its CAM overlay."""
        if self._closed or str(self.capture_button["state"]) == "disabled":
            return
        self.capture_button.configure(state="disabled", text="Analysing...")
        self.loop.request_still(self._still_ready)

    def _show(self, label: Any, key: str, image: np.ndarray, width: int, height: int) -> None:
        fitted = fit_image(image, max(16, width), max(16, height))
        photo = self.tk.PhotoImage(data=to_photo_data(fitted), format="PPM")
        label.configure(image=photo, text="")
        self._photos[key] = photo

    def _refresh(self) -> None:
        if self._closed:
            return
        live = self._live_slot.take()
        if live is not None:
            picture, text, fps = live
            self._show(
                self.preview, "preview", picture, self.preview.winfo_width() - 4, self.preview.winfo_height() - 4
            )
            self.diagnosis.configure(text=text)
            self.status.configure(
                text=f"{fps:.1f} frames/s  ·  {self.loop.processed} frames  ·  {self.loop.errors} errors"
            )
            self.frames_shown += 1
        still = self._still_slot.take()
        if still is not None:
            picture, text = still
            if picture is not None:
                width = self.still.winfo_width() or 200
                self._show(self.still, "still", picture, width - 4, max(100, self.still.winfo_height() - 4))
            self.still_text.configure(text=text)
            self.capture_button.configure(state="normal", text="Capture")
            self.stills_shown += 1
        worker_done = self._worker is not None and not self._worker.is_alive()
        if worker_done and self.summary is not None and still is None:
            self.status.configure(text=f"stopped ({self.summary.stopped_because}) · {self.summary.fps:.1f} frames/s")
            if self.close_when_done:
                self.close()
                return
        self.root.after(self.poll_ms, self._refresh)

    def close(self) -> None:
        """Stop the loop, wait for the worker and destroy the window."""
        if self._closed:
            return
        self._closed = True
        self.loop.stop()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
        # Release the window's images here, on the Tk thread: left to the garbage collector, an image may be
        # deleted later from another thread, which Tk refuses ("main thread is not in main loop").
        self._photos.clear()
        try:
            self.root.destroy()
        except self.tk.TclError:
            pass


def run_kiosk(
    source: Any,
    pipeline: PipelineRole | Callable[[np.ndarray], PipelineResult],
    *,
    fullscreen: bool = True,
    close_when_done: bool = False,
    **loop_options: Any,
) -> LiveSummary | None:
    """Open the kiosk window on the current display and run until it is closed (Escape or the window's X).

    Args:
        source: An open frame source (the caller closes it).
        pipeline: A :class:`~edgeskin.roles.PipelineRole` (``LesionPipeline``) or ``pipeline(frame_rgb) -> PipelineResult``.
        fullscreen: Cover the screen.
        close_when_done: Close the window when the loop ends.
        **loop_options: Passed to :class:`LiveLoop` (``max_frames``, ``smoothing``, ``quality_gate``...).

    Returns:
        The loop's summary (None when the loop never finished).
    """
    tk = import_tk()
    try:
        root = tk.Tk()
    except tk.TclError as exc:
        raise ConfigError(
            f"cannot open the kiosk window ({exc}); run it in the desktop session, or set DISPLAY "
            "(the systemd unit in devices/ sets DISPLAY=:0)"
        ) from None
    loop = LiveLoop(source, pipeline, **loop_options)
    app = KioskApp(root, loop, fullscreen=fullscreen, close_when_done=close_when_done)
    app.start()
    started = time.monotonic()
    root.mainloop()
    app.close()
    logger.info("kiosk closed after %.0f s", time.monotonic() - started)
    return app.summary
