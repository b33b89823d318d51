"""The live loop and the kiosk show a lesion answered from the detector's unsure band, with its flag, and say why a
frame has no answer, with advice that fits the case."""

from __future__ import annotations

import time

import numpy as np

from edgeskin.capture.kiosk import _diagnosis_text, _still_text
from edgeskin.capture.live import LiveLoop, StillAnalysis
from edgeskin.capture.sources import Frame, SourceBase
from edgeskin.labels import DX_CLASSES
from edgeskin.results import (
    CONTEXT_VIEW,
    DETECTOR_UNSURE,
    NO_LESION_FOUND,
    NOTHING_STANDS_OUT,
    RETAKE_ADVICE,
    Classification,
    Detections,
    PipelineResult,
)
from edgeskin.runtime.spec import ModelSpec
from edgeskin.tasks.pipeline import LesionPipeline


class _Frames(SourceBase):
    def __init__(self, frames) -> None:
        self.frames, self.name, self.position = list(frames), "list", 0

    def read(self) -> Frame:
        if self.position >= len(self.frames):
            raise StopIteration
        self.position += 1
        return Frame(rgb=self.frames[self.position - 1], timestamp=time.monotonic(), index=self.position - 1)

    def close(self) -> None:
        pass


class _Classifier:
    labels, spec = DX_CLASSES, None

    def classify(self, image):
        return Classification(np.full(len(DX_CLASSES), 1 / len(DX_CLASSES), np.float32), DX_CLASSES)

    def close(self):
        pass


class _Detector:
    def __init__(self, score: float, box=(40, 40, 200, 180)) -> None:
        self.detections = Detections(np.array([box], np.float32), [score], [0])
        self.spec = ModelSpec.from_dict(
            {"name": "d", "task": "detection", "input": {"size": [320, 320]}, "labels": ["lesion"],
             "outputs": {"predictions": "o"}, "layout": "yolo", "boxes": "xywh_normalized",
             "thresholds": {"presence": 0.6, "unsure": 0.3}}
        )  # fmt: skip

    def detect(self, frame):
        return self.detections

    def close(self):
        pass


def _lesion_frame() -> np.ndarray:
    import cv2

    frame = np.empty((240, 320, 3), np.uint8)
    frame[:] = (205, 165, 145)
    cv2.ellipse(frame, (120, 110), (50, 45), 0, 0, 360, (95, 60, 45), -1)
    return frame


def test_live_loop_entries_carry_the_unsure_answer_and_its_flag():
    frames = [_lesion_frame() for _ in range(3)]
    pipeline = LesionPipeline(_Classifier(), _Detector(0.45), cam=False)
    summary = LiveLoop(_Frames(frames), pipeline, quality_gate="default", keep_records=True).run()
    assert summary.processed == 3
    for entry in summary.frames:
        assert entry["messages"] == [DETECTOR_UNSURE]
        assert len(entry["lesions"]) == 1 and entry["lesions"][0]["detector_unsure"] is True
        assert entry["smoothed"] is not None and not entry["diagnosis_withheld"]


def test_live_loop_on_plain_skin_says_why_and_gives_no_diagnosis():
    frames = [np.full((240, 320, 3), (205, 165, 145), np.uint8) for _ in range(2)]
    pipeline = LesionPipeline(_Classifier(), _Detector(0.45), cam=False)
    summary = LiveLoop(_Frames(frames), pipeline, quality_gate=None, keep_records=True).run()
    for entry in summary.frames:
        assert entry["messages"] == [NOTHING_STANDS_OUT]
        assert entry["lesions"] == [] and entry["smoothed"] is None


def test_kiosk_texts_show_the_reason_the_advice_and_the_flag():
    result = PipelineResult((320, 240), (), {}, (NOTHING_STANDS_OUT,))
    still = StillAnalysis(image=np.zeros((4, 4, 3), np.uint8), result=result)
    text = _still_text(still)
    assert text.lower().startswith(f"still: {NOTHING_STANDS_OUT}") and RETAKE_ADVICE[NOTHING_STANDS_OUT] in text
    assert "fill most of the frame" not in text

    class Live:  # the fields _diagnosis_text reads from a LiveFrame
        entry = {"messages": [NO_LESION_FOUND]}
        withheld, smoothed = False, None
        messages = (NO_LESION_FOUND,)

    assert _diagnosis_text(Live()) == "No lesion found\n" + RETAKE_ADVICE[NO_LESION_FOUND]

    pipeline = LesionPipeline(_Classifier(), _Detector(0.45), cam=False)
    summary = LiveLoop(_Frames([_lesion_frame()]), pipeline, quality_gate=None, keep_records=True)
    live = summary.process(Frame(rgb=_lesion_frame(), timestamp=0.0, index=0))
    assert _diagnosis_text(live).endswith("Detector unsure: check that the box is on the lesion.")
    answered = StillAnalysis(image=np.zeros((4, 4, 3), np.uint8), result=pipeline(_lesion_frame()))
    assert _still_text(answered).endswith("Detector unsure: check that the box is on the lesion.")


def test_kiosk_texts_note_a_combined_context_view():
    note = CONTEXT_VIEW[:1].upper() + CONTEXT_VIEW[1:] + "."
    large = LesionPipeline(_Classifier(), _Detector(0.9, box=(10, 10, 310, 230)), cam=False)
    still = StillAnalysis(image=np.zeros((4, 4, 3), np.uint8), result=large(_lesion_frame()))
    assert still.result.lesions[0].context_view
    assert _still_text(still).endswith(note)
    live = LiveLoop(_Frames([]), large, quality_gate=None, keep_records=True).process(
        Frame(rgb=_lesion_frame(), timestamp=0.0, index=0)
    )
    assert _diagnosis_text(live).endswith(note)
    small = LesionPipeline(_Classifier(), _Detector(0.9), cam=False)
    assert note not in _still_text(StillAnalysis(image=np.zeros((4, 4, 3), np.uint8), result=small(_lesion_frame())))
