"""The live loop: a real video of real dermoscopy images, smoothing, the quality gate, errors that must
not end a session, a camera that drops out and comes back, newest-frame semantics and a bounded soak."""

from __future__ import annotations

import gc
import json
import threading
import time

import numpy as np
import psutil
import pytest
from capture_fakes import CaptureFactory, FakeCapture, FakePipeline, make_lesion

from edgeskin.capture.live import DiagnosisSmoother, LiveLoop, render_live, scale_result
from edgeskin.capture.sources import CameraLostError, Frame, ImageFolderSource, OpenCVSource, SourceBase
from edgeskin.errors import CameraError
from edgeskin.labels import DX_CLASSES
from edgeskin.results import PipelineResult

ENTRY_KEYS = {"index", "timestamp", "lesions", "messages", "timings_ms", "quality", "smoothed", "diagnosis_withheld"}


class ListSource(SourceBase):
    """Frames from a list; an item that is an exception is raised by read() instead."""

    def __init__(self, items) -> None:
        self.items = list(items)
        self.name = "list"
        self.closed = False
        self.position = 0

    def read(self) -> Frame:
        if self.position >= len(self.items):
            raise StopIteration
        item = self.items[self.position]
        self.position += 1
        if isinstance(item, BaseException):
            raise item
        return Frame(rgb=item, timestamp=time.monotonic(), index=self.position - 1)

    def capture_still(self) -> np.ndarray:
        return np.kron(self.items[0], np.ones((4, 4, 1), np.uint8))

    def close(self) -> None:
        self.closed = True


def _lesion_frame(size=(320, 240), centre=(160, 120), radius=40) -> np.ndarray:
    """A skin-coloured frame with a dark round lesion and a little texture (sharp enough for the gate)."""
    rng = np.random.default_rng(0)
    frame = np.empty((size[1], size[0], 3), np.uint8)
    frame[:] = (205, 160, 140)
    frame = np.clip(frame + rng.normal(0, 6, frame.shape), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[: size[1], : size[0]]
    frame[(xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 < radius**2] = (90, 55, 40)
    return frame


# ------------------------------------------------------------------------------------------------ real video


def test_live_loop_on_a_real_video_of_real_dermoscopy_images(ph2_video):
    video, frame_count = ph2_video
    entries = []
    pipeline = FakePipeline()
    with OpenCVSource(video) as source:
        loop = LiveLoop(source, pipeline, keep_records=True, on_result=lambda live: entries.append(live.entry))
        summary = loop.run()
    assert summary.processed == frame_count == len(summary.frames) == len(entries) == 120
    assert summary.stopped_because == "end of source"
    assert summary.errors == 0 and summary.dropped == 0
    assert summary.fps > 0
    assert [e["index"] for e in summary.frames] == list(range(frame_count))
    for entry in summary.frames:
        assert ENTRY_KEYS <= set(entry)
        assert entry["timings_ms"]["process"] >= entry["timings_ms"].get("detect", 0)
    diagnosed = [e for e in summary.frames if e["lesions"]]
    assert len(diagnosed) > frame_count * 0.8  # real lesions are found and pass the gate in most frames
    assert all(e["smoothed"]["label"] in DX_CLASSES for e in diagnosed)
    # The first diagnosis has nothing to average with; later smoothed labels are labels the frames gave.
    assert diagnosed[0]["smoothed"]["label"] == diagnosed[0]["lesions"][0]["label"]
    assert {e["smoothed"]["label"] for e in diagnosed} <= {e["lesions"][0]["label"] for e in diagnosed}
    assert pipeline.sizes[0] == (320, 240)
    json.loads(json.dumps(summary.to_dict()))  # JSON-ready end to end
    data = summary.to_dict()
    assert set(data) >= {"fps", "frames", "errors", "source"}


def test_max_frames_stops_the_loop(ph2_video):
    video, _ = ph2_video
    with OpenCVSource(video) as source:
        summary = LiveLoop(source, FakePipeline(), max_frames=25, keep_records=True).run()
    assert summary.processed == 25 and summary.stopped_because == "max_frames"


# ------------------------------------------------------------------------------------------------ smoothing


def _probs(top: str, p: float = 0.7) -> np.ndarray:
    probs = np.full(len(DX_CLASSES), (1 - p) / (len(DX_CLASSES) - 1), np.float32)
    probs[DX_CLASSES.index(top)] = p
    return probs


def test_smoother_is_an_ema_of_the_followed_lesion():
    smoother = DiagnosisSmoother(smoothing=0.5, refer_threshold=0.3)
    box = (100, 100, 200, 200)
    first = smoother.update(make_lesion(box, _probs("nv", 0.9)))
    assert first.frames == 1 and first.label == "nv"
    second = smoother.update(make_lesion((102, 101, 203, 199), _probs("mel", 0.9)))
    assert second.frames == 2
    assert second.dx["nv"] == pytest.approx(0.5 * 0.9 + 0.5 * (0.1 / 6), abs=1e-5)
    assert second.dx["mel"] == pytest.approx(0.5 * 0.9 + 0.5 * (0.1 / 6), abs=1e-5)
    assert second.malignant == pytest.approx(second.dx["mel"] + second.dx["bcc"] + second.dx["akiec"], abs=1e-5)
    assert second.refer is True
    third = smoother.update(make_lesion(box, _probs("mel", 0.9)))
    assert third.label == "mel"


def test_smoother_resets_when_the_box_jumps_or_the_lesion_is_lost():
    smoother = DiagnosisSmoother(smoothing=0.9, iou_reset=0.3)
    smoother.update(make_lesion((0, 0, 50, 50), _probs("nv", 0.95)))
    jumped = smoother.update(make_lesion((200, 200, 260, 260), _probs("bcc", 0.95)))
    assert jumped.frames == 1 and jumped.label == "bcc" and smoother.resets == 1
    assert smoother.update(None) is None and smoother.resets == 2
    again = smoother.update(make_lesion((200, 200, 260, 260), _probs("df", 0.95)))
    assert again.frames == 1 and again.label == "df"


def test_smoother_follows_the_same_lesion_among_several():
    smoother = DiagnosisSmoother()
    a = make_lesion((10, 10, 60, 60), _probs("nv"), score=0.9)
    b = make_lesion((200, 10, 250, 60), _probs("mel"), score=0.5)
    assert smoother.select([a, b]) == 0
    smoother.update(b)  # the user points at b
    a2 = make_lesion((12, 10, 62, 60), _probs("nv"), score=0.95)
    b2 = make_lesion((198, 12, 249, 61), _probs("mel"), score=0.4)
    assert smoother.select([a2, b2]) == 1


@pytest.mark.parametrize("smoothing", [-0.1, 1.0])
def test_smoothing_out_of_range_fails(smoothing):
    with pytest.raises(ValueError, match="smoothing"):
        DiagnosisSmoother(smoothing)


def test_loop_smooths_over_frames_and_flags_referral_from_the_pipeline_threshold():
    frames = [_lesion_frame() for _ in range(6)]
    summary = LiveLoop(ListSource(frames), FakePipeline(), smoothing=0.5, keep_records=True).run()
    assert [e["smoothed"]["frames"] for e in summary.frames] == [1, 2, 3, 4, 5, 6]
    # The threshold is taken from the pipeline (PipelineRole.refer_threshold: FakePipeline has 0.3).
    assert all(e["smoothed"]["refer"] is (e["smoothed"]["malignant"] >= 0.3) for e in summary.frames)
    assert LiveLoop(ListSource([]), FakePipeline()).smoother.refer_threshold == 0.3


def test_without_a_threshold_refer_follows_the_top_group():
    smoother = DiagnosisSmoother(smoothing=0.0, refer_threshold=None)
    assert smoother.update(make_lesion((0, 0, 50, 50), _probs("mel", 0.6))).refer is True
    assert smoother.update(make_lesion((0, 0, 50, 50), _probs("nv", 0.6))).refer is False


# ------------------------------------------------------------------------------------------------ quality gate


def test_failed_quality_gives_guidance_and_no_diagnosis():
    blurred = np.full((240, 320, 3), 150, np.uint8)  # no edges at all
    dark = (_lesion_frame() * 0.1).astype(np.uint8)
    small = _lesion_frame(radius=8)
    good = _lesion_frame()
    pipeline = FakePipeline()
    summary = LiveLoop(ListSource([blurred, dark, small, good]), pipeline, keep_records=True).run()
    blurred_e, dark_e, small_e, good_e = summary.frames
    assert blurred_e["messages"] == ["hold still"] and blurred_e["diagnosis_withheld"] and blurred_e["lesions"] == []
    assert dark_e["messages"] == ["too dark"] and dark_e["lesions"] == []
    assert small_e["messages"] == ["move closer"] and small_e["lesions"] == [] and len(small_e["boxes"]) == 1
    assert not good_e["diagnosis_withheld"] and len(good_e["lesions"]) == 1 and good_e["smoothed"]["frames"] == 1
    assert pipeline.calls == 2  # the gate spared the pipeline on the blurred and dark frames
    assert summary.withheld == 3


def test_gate_off_diagnoses_everything():
    blurred = np.full((240, 320, 3), 150, np.uint8)
    blurred[100:140, 140:180] = 60
    summary = LiveLoop(ListSource([blurred]), FakePipeline(), quality_gate=None, keep_records=True).run()
    assert summary.frames[0]["quality"] is None and len(summary.frames[0]["lesions"]) == 1


# ------------------------------------------------------------------------------------------------ errors


def test_bad_frames_and_camera_hiccups_are_reported_and_the_loop_goes_on(caplog):
    good = _lesion_frame()
    items = [good, CameraError("USB hiccup"), good, ValueError("driver returned garbage"), good, good, good]
    pipeline = FakePipeline(fail_every=2)  # every second pipeline call raises
    summary = LiveLoop(ListSource(items), pipeline, keep_records=True, retry_delay=0).run()
    assert summary.processed == 5 and summary.stopped_because == "end of source"
    assert summary.errors == 2 + 2  # two failed reads, two failed frames
    failed = [e for e in summary.frames if "error" in e]
    assert len(failed) == 2 and all("fake pipeline failure" in e["error"] for e in failed)
    kinds = [m["kind"] for m in summary.error_messages]
    assert kinds.count("camera") == 2 and kinds.count("frame") == 2
    assert "USB hiccup" in caplog.text


def test_a_source_that_never_recovers_ends_the_loop_after_a_bound():
    summary = LiveLoop(
        ListSource([CameraError("gone")] * 100), FakePipeline(), max_consecutive_errors=5, retry_delay=0
    ).run()
    assert summary.processed == 0 and summary.errors == 5
    assert summary.stopped_because == "5 failed reads in a row"


def test_a_lost_camera_ends_the_loop_cleanly():
    good = _lesion_frame()
    summary = LiveLoop(ListSource([good, good, CameraLostError("camera 0 is gone")]), FakePipeline()).run()
    assert summary.processed == 2 and summary.errors == 1 and summary.stopped_because == "camera lost"


def test_on_result_exceptions_do_not_end_the_loop():
    def explode(live):
        raise RuntimeError("display went away")

    summary = LiveLoop(ListSource([_lesion_frame()] * 3), FakePipeline(), on_result=explode).run()
    assert summary.processed == 3


def test_camera_lost_mid_stream_and_back_is_survived():
    """An OpenCV camera delivers, vanishes (two failed reopen attempts), comes back; the loop never dies."""
    frame_bgr = _lesion_frame()[..., ::-1].copy()

    class LesionCapture(FakeCapture):
        def read(self):
            ok, _ = super().read()
            return (ok, frame_bgr.copy() if ok else None)

    factory = CaptureFactory([LesionCapture(20, interval=0.004), None, None, LesionCapture(interval=0.004)])
    source = OpenCVSource(
        0, capture_factory=factory, backoff_initial=0.05, backoff_max=0.1, read_timeout=0.05, max_reconnects=10
    )
    with source:
        summary = LiveLoop(source, FakePipeline(), max_frames=40, keep_records=True, retry_delay=0.01).run()
        assert source.reconnects == 1
    assert summary.processed == 40 and summary.stopped_because == "max_frames"
    assert summary.errors >= 1  # the outage was reported...
    assert all(m["kind"] == "camera" for m in summary.error_messages)
    assert any("reconnecting" in m["message"] for m in summary.error_messages)
    assert sum(1 for e in summary.frames if e["lesions"]) == 40  # ...and every frame around it analysed


# ------------------------------------------------------------------------------------------------ newest frame


def test_slow_pipeline_over_a_fast_camera_drops_frames_instead_of_lagging():
    frame_bgr = _lesion_frame()[..., ::-1].copy()

    class LesionCapture(FakeCapture):
        def read(self):
            ok, _ = super().read()
            return (ok, frame_bgr.copy() if ok else None)

    source = OpenCVSource(0, capture_factory=CaptureFactory([LesionCapture(interval=0.003)]))
    ages = []
    with source:
        loop = LiveLoop(
            source,
            FakePipeline(delay=0.04),
            max_frames=20,
            keep_records=True,
            on_result=lambda live: ages.append(time.monotonic() - live.frame.timestamp),
        )
        summary = loop.run()
    indices = [e["index"] for e in summary.frames]
    gaps = np.diff(indices)
    assert (gaps >= 1).all() and np.median(gaps) >= 3, indices  # frames skipped, never repeated
    assert summary.dropped == indices[-1] - indices[0] - (len(indices) - 1) > 2 * len(indices)
    # No lag: a queue would hand out frame k at k x 40 ms although it was taken at k x 3 ms, so the age of
    # the 20th frame would be ~0.7 s; the newest-frame source keeps every frame about one pipeline run old.
    assert max(ages[2:]) < 0.3, ages


# ------------------------------------------------------------------------------------------------ stills


def test_capture_still_analyses_the_full_resolution_frame():
    pipeline = FakePipeline()
    loop = LiveLoop(ListSource([_lesion_frame()]), pipeline)
    still = loop.capture_still()
    assert still.error is None and still.image.shape == (960, 1280, 3)
    assert still.result.image_size == (1280, 960) and len(still.result.lesions) == 1


def test_request_still_from_another_thread_runs_on_the_loop_thread():
    frames = [_lesion_frame()] * 200
    got: list = []
    done = threading.Event()
    loop = LiveLoop(ListSource(frames), FakePipeline(delay=0.002))
    pipeline = loop.pipeline
    worker = threading.Thread(target=loop.run)
    worker.start()
    loop.request_still(lambda still: (got.append(still), done.set()))
    assert done.wait(5)
    loop.stop()
    worker.join(5)
    assert got[0].result is not None and got[0].image.shape[0] == 960
    assert pipeline.thread_ids == {worker.ident}  # the pipeline never ran on the caller's thread


def test_failed_still_is_reported_not_raised():
    class NoStill(ListSource):
        def capture_still(self):
            raise CameraError("still capture timed out")

    loop = LiveLoop(NoStill([_lesion_frame()]), FakePipeline())
    still = loop.capture_still()
    assert still.result is None and "timed out" in still.error and loop.errors == 1


# ------------------------------------------------------------------------------------------------ drawing


def test_scale_result_moves_boxes_from_lores_to_main():
    lesion = make_lesion((40, 30, 80, 60), _probs("nv"))
    result = PipelineResult((320, 240), (lesion,))
    scaled = scale_result(result, (1640, 1232))
    np.testing.assert_allclose(scaled.lesions[0].box, [205.0, 154.0, 410.0, 308.0], atol=0.01)
    assert scaled.image_size == (1640, 1232)
    assert scaled.lesions[0].crop_box.tolist() == [205, 154, 410, 308]
    assert scale_result(result, (320, 240)) is result


def test_render_live_draws_on_main_when_present():
    rgb = _lesion_frame()
    main = np.kron(rgb, np.ones((2, 2, 1), np.uint8))
    source = ListSource([])
    loop = LiveLoop(source, FakePipeline())
    live = loop.process(Frame(rgb=rgb, timestamp=time.monotonic(), index=0, main=main))
    picture = render_live(live)
    assert picture.shape == main.shape
    assert not np.array_equal(picture, main)  # something was drawn
    assert np.array_equal(main, np.kron(rgb, np.ones((2, 2, 1), np.uint8)))  # on a copy


# ------------------------------------------------------------------------------------------------ soak


def test_bounded_soak_keeps_memory_flat(tmp_path):
    import cv2

    rng = np.random.default_rng(1)
    for i in range(8):
        frame = _lesion_frame(centre=(120 + 10 * i, 110), radius=35 + i)
        frame = np.clip(frame.astype(np.int16) + rng.integers(-5, 5, frame.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), frame[..., ::-1])
    process = psutil.Process()
    rss: dict[str, int] = {}

    def on_result(live):
        if live.entry["index"] == 100:
            gc.collect()
            rss["warm"] = process.memory_info().rss

    with ImageFolderSource(tmp_path, loop=True) as source:
        summary = LiveLoop(source, FakePipeline(), max_frames=500, on_result=on_result).run()
    gc.collect()
    rss["end"] = process.memory_info().rss
    assert summary.processed == 500 and summary.errors == 0
    growth_mb = (rss["end"] - rss["warm"]) / 2**20
    assert growth_mb < 3.0, f"RSS grew {growth_mb:.1f} MB over 400 frames after warm-up"


# ------------------------------------------------------------------------------------------------ real pipeline


@pytest.mark.train
def test_live_loop_drives_the_real_pipeline_on_tiny_int8_models(ph2_video):
    """The real LesionPipeline (real interpreter, int8 quantization, letterbox, NMS, CAM) inside the loop."""
    from tiny_models import tiny_classifier, tiny_detector

    from edgeskin.tasks.pipeline import LesionPipeline, PipelineOptions

    video, frame_count = ph2_video
    options = PipelineOptions(tiny_classifier(), detector=tiny_detector(), num_threads=1)
    with LesionPipeline.create(options) as pipeline, OpenCVSource(video) as source:
        loop = LiveLoop(source, pipeline, keep_records=True)
        summary = loop.run()
        assert loop.smoother.refer_threshold == pipeline.refer_threshold
    assert summary.processed == frame_count and summary.errors == 0
    diagnosed = [e for e in summary.frames if e["lesions"]]
    assert diagnosed, "the tiny detector finds the dark lesions of the PH2 frames"
    for entry in diagnosed:
        assert {"detect", "classify", "cam", "total", "quality", "process"} <= set(entry["timings_ms"])
        assert entry["smoothed"]["label"] in DX_CLASSES


@pytest.mark.shared
def test_live_loop_with_the_shipped_models_on_a_real_video(ph2_video):
    from tiny_models import shipped_model_paths

    from edgeskin.tasks.pipeline import LesionPipeline

    shipped_model_paths()
    video, frame_count = ph2_video
    with LesionPipeline.from_defaults(threads=2) as pipeline, OpenCVSource(video) as source:
        summary = LiveLoop(source, pipeline, keep_records=True).run()
    assert summary.processed == frame_count and summary.errors == 0
    assert sum(1 for e in summary.frames if e["lesions"]) > frame_count * 0.5


# ------------------------------------------------------------------------------------------------- options


def test_live_options_are_validated_once_and_overrides_apply_on_top():
    from edgeskin.capture.live import LiveOptions

    with pytest.raises(ValueError, match="max_frames"):
        LiveOptions(max_frames=0)
    with pytest.raises(ValueError, match="max_consecutive_errors"):
        LiveOptions(max_consecutive_errors=0)
    with pytest.raises(ValueError, match="quality_gate"):
        LiveOptions(quality_gate="strict")
    base = LiveOptions(max_frames=5, smoothing=0.2, quality_gate=None)
    loop = LiveLoop(ListSource([]), FakePipeline(), base, max_frames=7)
    assert loop.options == LiveOptions(max_frames=7, smoothing=0.2, quality_gate=None)
    assert loop.max_frames == 7 and loop.quality_gate is None and loop.smoother.smoothing == 0.2
    with pytest.raises(TypeError):
        LiveLoop(ListSource([]), FakePipeline(), max_frame=3)  # a misspelt option is an error, not ignored


def test_the_refer_threshold_comes_from_the_options_then_the_pipeline_role_then_the_group_rule():
    from edgeskin.roles import PipelineRole

    assert isinstance(FakePipeline(), PipelineRole)
    assert LiveLoop(ListSource([]), FakePipeline(), refer_threshold=0.5).smoother.refer_threshold == 0.5
    assert LiveLoop(ListSource([]), FakePipeline()).smoother.refer_threshold == 0.3
    plain = FakePipeline()
    assert LiveLoop(ListSource([]), lambda frame: plain(frame)).smoother.refer_threshold is None
