"""The live loop and the kiosk show the pipeline's "unsure: retake" instead of "no lesion found"."""

from __future__ import annotations

import time

import numpy as np

from edgeskin.capture.kiosk import _diagnosis_text, _still_text
from edgeskin.capture.live import LiveLoop, StillAnalysis
from edgeskin.capture.sources import Frame, SourceBase
from edgeskin.labels import DX_CLASSES
from edgeskin.results import Classification, Detections, PipelineResult
from edgeskin.runtime.spec import ModelSpec
from edgeskin.tasks.pipeline import UNSURE_RETAKE, LesionPipeline


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
    def __init__(self, score: float) -> None:
        self.detections = Detections(np.array([[40, 40, 200, 180]], np.float32), [score], [0])
        self.spec = ModelSpec.from_dict(
            {"name": "d", "task": "detection", "input": {"size": [320, 320]}, "labels": ["lesion"],
             "outputs": {"predictions": "o"}, "layout": "yolo", "boxes": "xywh_normalized",
             "thresholds": {"presence": 0.6, "unsure": 0.3}}
        )  # fmt: skip

    def detect(self, frame):
        return self.detections

    def close(self):
        pass


def test_live_loop_entries_say_unsure_retake_and_carry_no_diagnosis():
    frames = [np.full((240, 320, 3), 170, np.uint8) for _ in range(3)]
    pipeline = LesionPipeline(_Classifier(), _Detector(0.45), cam=False)
    summary = LiveLoop(_Frames(frames), pipeline, quality_gate=None, keep_records=True).run()
    assert summary.processed == 3
    for entry in summary.frames:
        assert entry["messages"] == [UNSURE_RETAKE]
        assert entry["lesions"] == [] and entry["smoothed"] is None


def test_kiosk_texts_show_unsure_retake():
    result = PipelineResult((320, 240), (), {}, (UNSURE_RETAKE,))
    still = StillAnalysis(image=np.zeros((4, 4, 3), np.uint8), result=result)
    assert _still_text(still) == f"Still: {UNSURE_RETAKE}"

    class Live:  # the fields _diagnosis_text reads from a LiveFrame
        entry = {"messages": [UNSURE_RETAKE]}
        withheld, smoothed = False, None
        messages = (UNSURE_RETAKE,)

    assert _diagnosis_text(Live()) == "Unsure: retake"
