"""Frame sources: picamera2 (fake module, Pi 5 and Pi 4 pixel paths), OpenCV (files, cameras that drop
out and come back), image folders, and open_source's dispatch."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from capture_fakes import CaptureFactory, FakeCapture, known_scene, make_fake_picamera2, write_video

from edgeskin.capture.sources import (
    CameraLostError,
    Frame,
    FrameSource,
    ImageFolderSource,
    OpenCVSource,
    Picamera2Source,
    open_source,
    pi_generation,
    picamera2_to_rgb,
    yuv420_to_rgb,
)
from edgeskin.errors import CameraError, ConfigError, MissingExtraError

# ------------------------------------------------------------------------------------------------ platform


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("Raspberry Pi 5 Model B Rev 1.0\x00", 5),
        ("Raspberry Pi 500 Rev 1.0", 5),
        ("Raspberry Pi Compute Module 5 Rev 1.0", 5),
        ("Raspberry Pi 4 Model B Rev 1.5", 4),
        ("Raspberry Pi 400 Rev 1.0", 4),
        ("Raspberry Pi Compute Module 4 Rev 1.0", 4),
        ("Raspberry Pi 3 Model B Plus Rev 1.3", 3),
        ("Raspberry Pi Zero 2 W Rev 1.0", 3),
        ("Raspberry Pi Zero W Rev 1.1", 1),
        ("Freescale i.MX8MQ Phanbell", None),  # Coral Dev Board
        ("", None),
    ],
)
def test_pi_generation_from_device_tree_model(model, expected):
    assert pi_generation(model=model) == expected


def test_pi_generation_reads_the_device_tree_file(tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert pi_generation(model) == 4
    assert pi_generation(tmp_path / "absent") is None


# ------------------------------------------------------------------------------------------------ picamera2


def _max_error_per_quadrant(rgb: np.ndarray, expected: np.ndarray) -> float:
    """Worst mean colour error over the four flat quadrants (away from edges and the lesion)."""
    h, w = expected.shape[:2]
    worst = 0.0
    for ys, xs in (
        (slice(2, h // 6), slice(2, w // 6)),
        (slice(2, h // 6), slice(w - w // 6, w - 2)),
        (slice(h - h // 6, h - 2), slice(2, w // 6)),
        (slice(h - h // 6, h - 2), slice(w - w // 6, w - 2)),
    ):
        diff = np.abs(
            rgb[ys, xs].astype(np.float32).mean(axis=(0, 1)) - expected[ys, xs].astype(np.float32).mean(axis=(0, 1))
        )
        worst = max(worst, float(diff.max()))
    return worst


def test_pi5_gives_rgb888_lores_stored_bgr_and_is_converted_exactly():
    module = make_fake_picamera2("pisp")
    with Picamera2Source((320, 240), (1640, 1232), generation=5, picamera2_module=module) as source:
        camera = module.instances[0]
        assert camera.config["lores"] == {"size": (320, 240), "format": "RGB888"}
        assert camera.config["main"] == {"size": (1640, 1232), "format": "RGB888"}
        assert camera.started
        frame = source.read()
        assert isinstance(frame, Frame)
        assert frame.rgb.shape == (240, 320, 3) and frame.rgb.dtype == np.uint8
        np.testing.assert_array_equal(frame.rgb, known_scene((320, 240)))
        assert tuple(frame.rgb[10, 10]) == (220, 30, 30)  # red stays red: B, G, R bytes were reversed
        assert frame.main is None  # not asked for
        still = source.capture_still()
        np.testing.assert_array_equal(still, known_scene((1640, 1232)))
        assert camera.captures == ["lores", "main"]
    assert camera.stopped and camera.closed


@pytest.mark.parametrize("stride", [None, 384])
def test_pi4_gives_yuv420_lores_converted_to_rgb(stride):
    module = make_fake_picamera2("vc4", lores_stride=stride)
    with Picamera2Source((320, 240), (1640, 1232), generation=4, picamera2_module=module) as source:
        camera = module.instances[0]
        assert camera.config["lores"]["format"] == "YUV420"
        frame = source.read()
        if stride:
            assert camera._encode("lores").shape == (360, stride)  # the padded plane layout was exercised
        assert frame.rgb.shape == (240, 320, 3)
        expected = known_scene((320, 240))
        # YUV420 rounds and subsamples chroma: flat regions come back within a few levels.
        assert _max_error_per_quadrant(frame.rgb, expected) <= 4.0
        assert frame.rgb[10, 10, 0] > 200 and frame.rgb[10, 10, 2] < 60  # red, not blue
        assert frame.rgb[-10, 10, 2] > 190 and frame.rgb[-10, 10, 0] < 70  # blue, not red


def test_pi4_camera_refuses_rgb_lores_so_the_platform_choice_matters():
    module = make_fake_picamera2("vc4")
    with pytest.raises(CameraError, match="lores stream must be YUV"):
        Picamera2Source((320, 240), (1640, 1232), generation=5, picamera2_module=module)
    assert module.instances[0].closed


def test_generation_is_detected_from_the_device_tree_file(tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.5\x00")
    module = make_fake_picamera2("vc4")
    with Picamera2Source(model_path=model, picamera2_module=module) as source:
        assert source.generation == 4 and source.lores_format == "YUV420"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    with Picamera2Source(model_path=model, picamera2_module=make_fake_picamera2("pisp")) as source:
        assert source.lores_format == "RGB888"


@pytest.mark.parametrize("generation", [4, 5])
def test_with_main_takes_both_streams_from_one_request(generation):
    module = make_fake_picamera2("pisp" if generation == 5 else "vc4")
    with Picamera2Source(
        (320, 240), (640, 480), generation=generation, with_main=True, picamera2_module=module
    ) as source:
        frames = [source.read() for _ in range(3)]
        assert module.instances[0].captures == ["request"] * 3
    assert [f.index for f in frames] == [0, 1, 2]
    assert all(b.timestamp >= a.timestamp for a, b in zip(frames, frames[1:], strict=False))
    np.testing.assert_array_equal(frames[0].main, known_scene((640, 480)))


def test_picamera2_missing_names_apt_and_system_site_packages(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # makes `import picamera2` raise ImportError
    with pytest.raises(MissingExtraError) as info:
        Picamera2Source()
    message = str(info.value)
    assert "sudo apt install python3-picamera2" in message
    assert "--system-site-packages" in message


def test_picamera2_is_imported_lazily_through_sys_modules(monkeypatch):
    module = make_fake_picamera2("pisp")
    monkeypatch.setitem(sys.modules, "picamera2", module)
    with open_source("picamera2", lores_size=(320, 240), main_size=(640, 480), generation=5) as source:
        assert isinstance(source, Picamera2Source)
        assert source.read().rgb.shape == (240, 320, 3)
    with open_source("picamera2:1", generation=5) as source:
        assert module.instances[-1].camera_num == 1


def test_no_camera_attached_is_a_camera_error():
    with pytest.raises(CameraError, match="cannot open Raspberry Pi camera 0"):
        Picamera2Source(picamera2_module=make_fake_picamera2(fail_open=True))


@pytest.mark.parametrize(
    ("lores", "main", "match"),
    [((640, 480), (320, 240), "must not be larger"), ((321, 240), (640, 480), "even")],
)
def test_bad_stream_sizes_fail_when_built(lores, main, match):
    with pytest.raises(ConfigError, match=match):
        Picamera2Source(lores, main, picamera2_module=make_fake_picamera2())


@pytest.mark.parametrize(
    ("fmt", "encode"),
    [
        ("RGB888", lambda rgb: rgb[..., ::-1]),
        ("BGR888", lambda rgb: rgb),
        ("XRGB8888", lambda rgb: np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 255, np.uint8)])),
        ("XBGR8888", lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])),
    ],
)
def test_picamera2_formats_are_named_in_reverse_byte_order(fmt, encode):
    rgb = known_scene((64, 48))
    np.testing.assert_array_equal(picamera2_to_rgb(np.ascontiguousarray(encode(rgb)), fmt, (64, 48)), rgb)


def test_unknown_picamera2_format_and_bad_yuv_shape_fail_clearly():
    with pytest.raises(ConfigError, match="unsupported picamera2 pixel format"):
        picamera2_to_rgb(np.zeros((4, 4, 2), np.uint8), "YUYV", (4, 4))
    with pytest.raises(CameraError, match=r"expected a YUV420 buffer of shape \(72, >= 64\)"):
        yuv420_to_rgb(np.zeros((48, 64), np.uint8), (64, 48))


# ------------------------------------------------------------------------------------------------ OpenCV


def test_video_file_is_read_frame_by_frame_in_rgb_and_ends_with_stopiteration(tmp_path):
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
    frames = [np.full((48, 64, 3), c, np.uint8) for c in colours for _ in range(4)]
    video = write_video(tmp_path / "colours.avi", frames)
    with OpenCVSource(video) as source:
        assert not source.live and not source.threaded
        read = list(source)
        with pytest.raises(StopIteration):
            source.read()
    assert [f.index for f in read] == list(range(12))
    for frame, colour in zip(read, [c for c in colours for _ in range(4)], strict=True):
        assert np.abs(frame.rgb.reshape(-1, 3).mean(axis=0) - colour).max() < 8  # RGB, not BGR (MJPG is lossy)


def test_missing_video_file_is_a_camera_error(tmp_path):
    with pytest.raises(CameraError, match="video file not found"):
        OpenCVSource(tmp_path / "absent.mp4")


def test_camera_that_cannot_be_opened_says_what_to_check():
    with pytest.raises(CameraError, match="video.*group"):
        OpenCVSource(3, capture_factory=CaptureFactory([None]))


def test_live_camera_converts_bgr_to_rgb_and_sets_a_short_buffer():
    capture = FakeCapture(interval=0.002, colour=(10, 20, 250))  # BGR: red
    with OpenCVSource(0, capture_factory=CaptureFactory([capture]), size=(64, 48)) as source:
        frame = source.read()
    assert tuple(frame.rgb[0, 0]) == (250, 20, 10)
    assert capture.props[cv2.CAP_PROP_BUFFERSIZE] == 1
    assert capture.props[cv2.CAP_PROP_FRAME_WIDTH] == 64


def test_live_camera_keeps_only_the_newest_frame():
    factory = CaptureFactory([FakeCapture(interval=0.002)])
    with OpenCVSource(0, capture_factory=factory) as source:
        indices = []
        for _ in range(5):
            frame = source.read()
            indices.append(frame.index)
            time.sleep(0.05)  # a slow consumer: ~25 frames arrive meanwhile
            assert time.monotonic() - frame.timestamp < 0.3
    gaps = np.diff(indices)
    assert np.median(gaps) >= 3, f"stale frames were queued instead of dropped: {indices}"
    assert (gaps >= 1).all()  # never the same frame twice


def test_live_camera_that_disappears_is_reconnected_with_backoff():
    # 5 frames, then the device vanishes: two failed opens, then it is back.
    factory = CaptureFactory([FakeCapture(5, interval=0.005), None, None, FakeCapture(interval=0.005)])
    with OpenCVSource(
        0, capture_factory=factory, backoff_initial=0.02, backoff_max=0.05, read_timeout=0.03, max_reconnects=5
    ) as source:
        got, errors = [], []
        deadline = time.monotonic() + 5
        while len(got) < 15 and time.monotonic() < deadline:
            try:
                got.append(source.read())
            except CameraError as exc:
                assert not isinstance(exc, CameraLostError)
                errors.append(str(exc))
        assert len(got) == 15
        assert source.reconnects == 1 and factory.opens == 4
        assert source.state == "open"
    assert errors and "reconnecting" in errors[0]
    assert [f.index for f in got] == sorted(f.index for f in got)


def test_live_camera_that_never_comes_back_is_reported_lost():
    factory = CaptureFactory([FakeCapture(3, interval=0.002)])
    with OpenCVSource(
        0, capture_factory=factory, backoff_initial=0.01, backoff_max=0.02, read_timeout=0.05, max_reconnects=3
    ) as source:
        deadline = time.monotonic() + 5
        with pytest.raises(CameraLostError, match="after 3 reconnection attempts"):
            while time.monotonic() < deadline:
                try:
                    source.read()
                except CameraLostError:
                    raise
                except CameraError:
                    continue
        assert source.state == "lost"
    assert factory.opens == 1 + 3


def test_realtime_file_plays_at_its_frame_rate_and_drops_for_a_slow_reader(tmp_path):
    frames = [np.full((48, 64, 3), i * 4, np.uint8) for i in range(40)]
    video = write_video(tmp_path / "ramp.avi", frames, fps=100.0)
    with OpenCVSource(video, realtime=True) as source:
        assert source.threaded and source.fps == pytest.approx(100.0)
        indices = []
        for frame in source:
            indices.append(frame.index)
            time.sleep(0.03)
    assert indices[-1] >= 30 and len(indices) < 25  # the whole file played; most frames skipped


def test_close_is_idempotent_and_stops_the_grabber():
    capture = FakeCapture(interval=0.002)
    source = OpenCVSource(0, capture_factory=CaptureFactory([capture]))
    source.read()
    source.close()
    source.close()
    assert capture.released
    with pytest.raises(StopIteration):
        source.read()


# ------------------------------------------------------------------------------------------------ folders


def test_image_folder_is_sorted_and_skips_bad_files(tmp_path, caplog):
    for name, value in (("b.png", 100), ("a.png", 50), ("d.jpg", 200)):
        cv2.imwrite(str(tmp_path / name), np.full((40, 40, 3), value, np.uint8))
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "notes.txt").write_text("ignored")
    with ImageFolderSource(tmp_path) as source:
        frames = list(source)
    assert [int(f.rgb.mean()) for f in frames] == [50, 100, 200]
    assert [f.index for f in frames] == [0, 1, 2]
    assert len(source.skipped) == 1 and source.skipped[0][0].endswith("c.png")
    assert "c.png" in caplog.text


def test_image_folder_loops_and_gives_stills(tmp_path):
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((40, 40, 3), 60 * (i + 1), np.uint8))
    with ImageFolderSource(tmp_path, loop=True) as source:
        frames = [source.read() for _ in range(5)]
        still = source.capture_still()
    assert [int(f.rgb.mean()) for f in frames] == [60, 120, 60, 120, 60]
    assert int(still.mean()) == 60


def test_folder_of_only_bad_images_ends_even_when_looping(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"")
    with ImageFolderSource(tmp_path, loop=True) as source, pytest.raises(StopIteration):
        source.read()


def test_empty_folder_fails_when_opened(tmp_path):
    with pytest.raises(CameraError, match="no images"):
        ImageFolderSource(tmp_path)


# ------------------------------------------------------------------------------------------------ open_source


def test_open_source_dispatch(tmp_path, monkeypatch):
    cv2.imwrite(str(tmp_path / "one.png"), np.full((40, 40, 3), 90, np.uint8))
    video = write_video(tmp_path / "v.avi", [np.zeros((48, 64, 3), np.uint8)] * 3)
    monkeypatch.setattr(cv2, "VideoCapture", lambda spec: FakeCapture(interval=0.002))
    cases = {
        str(tmp_path): ImageFolderSource,
        str(tmp_path / "one.png"): ImageFolderSource,
        str(video): OpenCVSource,
        "0": OpenCVSource,
        "rtsp://camera.local/stream": OpenCVSource,
    }
    for spec, kind in cases.items():
        with open_source(spec) as source:
            assert isinstance(source, kind), spec
            assert isinstance(source, FrameSource)
            assert source.read().rgb.ndim == 3
    with open_source(0) as source:
        assert source.live


def test_open_source_unknown_path_lists_what_it_accepts(tmp_path):
    with pytest.raises(CameraError, match="expected a camera index .*'picamera2'.*URL"):
        open_source(str(tmp_path / "nothing-here"))


def test_sources_are_context_managers_that_close(tmp_path):
    cv2.imwrite(str(tmp_path / "one.png"), np.full((40, 40, 3), 90, np.uint8))
    with open_source(Path(tmp_path)) as source:
        pass
    with pytest.raises(StopIteration):
        source.read()


def test_importing_the_capture_modules_loads_neither_picamera2_nor_tkinter():
    import subprocess

    code = (
        "import sys\n"
        "import edgeskin.capture.sources, edgeskin.capture.live, edgeskin.capture.kiosk, edgeskin.capture.quality\n"
        "import edgeskin.cli.run, edgeskin.cli.kiosk, edgeskin.devices\n"
        "print(sorted(m for m in ('picamera2', 'tkinter', '_tkinter', 'tensorflow') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
