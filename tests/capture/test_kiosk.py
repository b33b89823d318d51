"""The Tkinter kiosk under a real X server (Xvfb): live preview, a click on Capture, the CAM still, and a
screenshot in test-artifacts/kiosk.png that must show the window's content."""

from __future__ import annotations

import ctypes
import gc
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from capture_fakes import FakePipeline

from edgeskin.capture.kiosk import NOTICE, KioskApp, fit_image, import_tk, run_kiosk, to_photo_data
from edgeskin.capture.live import LiveLoop
from edgeskin.capture.sources import ImageFolderSource

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
SCREEN = (1024, 600)  # the official 7" Raspberry Pi touch display is 800x480; the Pi Touch Display 2 720x1280


def test_photo_data_is_a_binary_ppm():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    data = to_photo_data(image)
    assert data.startswith(b"P6 3 2 255\n") and data.endswith(image.tobytes())


def test_fit_image_keeps_the_aspect_ratio():
    assert fit_image(np.zeros((480, 640, 3), np.uint8), 320, 320).shape == (240, 320, 3)
    assert fit_image(np.zeros((100, 100, 3), np.uint8), 50, 400).shape == (50, 50, 3)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@pytest.fixture(scope="session")
def xvfb_server():
    """A private X server on a free display number (Xvfb picks it: -displayfd), for the whole session.

    It is not stopped when the tests end but when this process does: Tk keeps its display connection
    open after ``destroy()``, and Xlib ends the process if that server goes away underneath it.
    """
    if shutil.which("Xvfb") is None:
        pytest.skip("needs Xvfb to test the kiosk window (Debian: sudo apt install xvfb)")
    try:
        import_tk()
    except ImportError:
        pytest.skip("needs Tkinter (Debian: sudo apt install python3-tk)")
    read_fd, write_fd = os.pipe()
    process = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )  # fmt: skip
    os.close(write_fd)
    number = b""
    deadline = time.monotonic() + 20
    while not number.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([read_fd], [], [], 0.5)
        if ready:
            chunk = os.read(read_fd, 16)
            if not chunk:
                break
            number += chunk
    os.close(read_fd)
    if not number.strip():
        process.kill()
        pytest.fail("Xvfb did not report its display number")
    return f":{number.decode().strip()}"


@pytest.fixture
def xvfb(xvfb_server, monkeypatch):
    monkeypatch.setenv("DISPLAY", xvfb_server)
    return xvfb_server


@pytest.fixture
def image_folder(ph2_paths, tmp_path) -> Path:
    for path in ph2_paths:
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _pump(root, until, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        root.update()
        if until():
            return True
        time.sleep(0.01)
    return False


def _click(widget, display: str) -> str:
    """Click the widget with the real pointer (xdotool), else with Tk events; returns how."""
    x = widget.winfo_rootx() + widget.winfo_width() // 2
    y = widget.winfo_rooty() + widget.winfo_height() // 2
    if shutil.which("xdotool"):
        subprocess.run(
            ["xdotool", "mousemove", str(x), str(y), "click", "1"],
            check=True,
            env={**os.environ, "DISPLAY": display},
            timeout=10,
        )
        return "xdotool"
    widget.event_generate("<Enter>")
    widget.event_generate("<ButtonPress-1>", x=widget.winfo_width() // 2, y=widget.winfo_height() // 2)
    widget.event_generate("<ButtonRelease-1>", x=widget.winfo_width() // 2, y=widget.winfo_height() // 2)
    return "event_generate"


def _screenshot(path: Path, display: str) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    if shutil.which("import"):
        subprocess.run(["import", "-display", display, "-window", "root", str(path)], check=True, timeout=30)
    else:  # Pillow grabs an X display too
        from PIL import ImageGrab

        ImageGrab.grab(xdisplay=display).save(path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"no screenshot at {path}"
    return image[..., ::-1]


def _region(image: np.ndarray, widget) -> np.ndarray:
    x, y = widget.winfo_rootx(), widget.winfo_rooty()
    return image[y : y + widget.winfo_height(), x : x + widget.winfo_width()]


def test_kiosk_shows_live_preview_captures_a_still_and_the_notice(xvfb, image_folder):
    tk = import_tk()
    root = tk.Tk()
    pipeline = FakePipeline(delay=0.01)
    source = ImageFolderSource(image_folder, loop=True)
    loop = LiveLoop(source, pipeline)
    app = KioskApp(root, loop, fullscreen=True)
    try:
        app.start()
        assert _pump(root, lambda: app.frames_shown >= 3), "no live frames reached the window"
        assert root.winfo_width() == SCREEN[0] and root.winfo_height() == SCREEN[1]  # covers the screen
        how = _click(app.capture_button, xvfb)
        assert _pump(root, lambda: app.stills_shown >= 1), f"the Capture click ({how}) gave no still"
        _pump(root, lambda: False, timeout=0.5)  # let Tk draw the still
        assert app.still.cget("image"), "the still has no picture"
        assert app.still_text.cget("text").startswith("Still: ")
        assert app.notice.cget("text") == NOTICE
        assert app.diagnosis.cget("text").split()[0] in {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
        shot = _screenshot(ARTIFACTS / "kiosk.png", xvfb)
        assert shot.shape[:2] == (SCREEN[1], SCREEN[0])
        preview = _region(shot, app.preview)
        still = _region(shot, app.still)
        notice = _region(shot, app.notice)
        assert preview.std() > 20, "the live preview is blank"
        assert still.std() > 20, "the captured still is blank"
        # The CAM overlay tints the still: it is not the raw image's colours only.
        assert notice.reshape(-1, 3).mean(axis=0)[2] < 100 < notice.reshape(-1, 3).mean(axis=0)[0]  # yellow band
        assert loop.errors == 0
        assert len(pipeline.thread_ids) == 1  # all analysis on the worker thread
    finally:
        app.close()
        source.close()
    assert loop.stopped
    # Its images went with the window, on this (the Tk) thread: none is left for the garbage collector to delete
    # later from another thread, where Tk would refuse ("main thread is not in main loop").
    gc.collect()
    assert not [obj for obj in gc.get_objects() if issubclass(type(obj), tk.PhotoImage)]  # type(): no attribute access


def test_windowed_kiosk_wraps_the_notice_to_the_window_not_the_screen(xvfb, image_folder):
    tk = import_tk()
    root = tk.Tk()
    source = ImageFolderSource(image_folder, loop=True)
    app = KioskApp(root, LiveLoop(source, FakePipeline(delay=0.01)), fullscreen=False)
    root.geometry("600x400")  # a window narrower than the screen, as a user may size it
    try:
        app.start()
        assert _pump(root, lambda: app.frames_shown >= 1), "no live frames reached the window"
        _pump(root, lambda: False, timeout=0.3)
        window = root.winfo_width()
        assert window < SCREEN[0], "the window should be narrower than the screen"
        wrap = int(app.notice.cget("wraplength"))
        assert 0 < wrap <= window - 20
        # The whole notice fits the window: its label asks for no more width than the window has.
        assert app.notice.winfo_reqwidth() <= window
    finally:
        app.close()
        source.close()


def test_run_kiosk_closes_when_the_loop_ends(xvfb, image_folder):
    with ImageFolderSource(image_folder) as source:
        summary = run_kiosk(source, FakePipeline(), fullscreen=False, close_when_done=True, max_frames=5)
    assert summary is not None and summary.processed == 3  # the folder had three images
    assert summary.stopped_because == "end of source"


def test_run_kiosk_without_a_display_says_how_to_get_one(monkeypatch, image_folder):
    pytest.importorskip("tkinter", reason="needs Tkinter (Debian: sudo apt install python3-tk)")
    from edgeskin.errors import ConfigError

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with ImageFolderSource(image_folder) as source, pytest.raises(ConfigError, match="DISPLAY"):
        run_kiosk(source, FakePipeline())


def test_kiosk_command_runs_and_exits_when_the_source_ends(xvfb, image_folder, monkeypatch, capsys):
    from edgeskin.cli import main

    monkeypatch.setattr("edgeskin.cli.kiosk.make_pipeline", lambda profile, args: FakePipeline())
    code = main(["kiosk", "--source", str(image_folder), "--profile", "x86", "--windowed"])
    assert code == 0
    err = capsys.readouterr().err
    assert "3 frames" in err and "(end of source)" in err


def test_kiosk_command_exits_non_zero_when_the_camera_is_lost(xvfb, monkeypatch, capsys):
    """So that systemd's Restart=on-failure starts it again."""
    from capture_fakes import CaptureFactory, FakeCapture

    from edgeskin.capture import sources
    from edgeskin.cli import main

    factory = CaptureFactory([FakeCapture(3, interval=0.005, size=(320, 240))])
    real = sources.OpenCVSource

    def fake_camera(spec, **kwargs):
        kwargs.update(capture_factory=factory, max_reconnects=1, backoff_initial=0.01, read_timeout=0.05)
        return real(spec, **kwargs)

    monkeypatch.setattr(sources, "OpenCVSource", fake_camera)
    monkeypatch.setattr("edgeskin.cli.kiosk.make_pipeline", lambda profile, args: FakePipeline())
    assert main(["kiosk", "--source", "0", "--profile", "x86", "--windowed"]) == 1
    assert "camera lost" in capsys.readouterr().err
