"""The Streamlit page answers a lesion from the detector's unsure band with a "Detector unsure" warning, and says
why a frame has no answer with advice that fits the case."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("streamlit", reason="the [ui] extra (streamlit) is not installed")

from streamlit.testing.v1 import AppTest  # noqa: E402

from edgeskin.results import CONTEXT_VIEW, DETECTOR_UNSURE, NOTHING_STANDS_OUT, RETAKE_ADVICE  # noqa: E402
from edgeskin.ui import launch  # noqa: E402


def _app(box=(20, 20, 60, 60), score=0.4):
    """The page on a fake pipeline whose detector finds one box: by default a small one in the unsure band."""
    import numpy as np
    from ui_fakes import FakeClassifier

    from edgeskin.results import Detections
    from edgeskin.runtime.spec import ModelSpec
    from edgeskin.tasks.pipeline import LesionPipeline
    from edgeskin.ui.app import main

    class OneBoxDetector:
        spec = ModelSpec.from_dict(
            {"name": "d", "task": "detection", "input": {"size": [320, 320]}, "labels": ["lesion"],
             "outputs": {"predictions": "o"}, "layout": "yolo", "boxes": "xywh_normalized",
             "thresholds": {"presence": 0.6, "unsure": 0.3}}
        )  # fmt: skip

        def detect(self, frame):
            return Detections(np.array([box], np.float32), [score], [0])

        def close(self):
            pass

    main(load_pipeline=lambda: LesionPipeline(FakeClassifier(), OneBoxDetector()))


def test_the_ui_message_names_match_the_pipeline():
    assert launch.UNSURE_MESSAGE == DETECTOR_UNSURE
    assert NOTHING_STANDS_OUT in launch.ABSENT_MESSAGES and set(launch.ABSENT_MESSAGES) == set(RETAKE_ADVICE)


def _upload(frame: np.ndarray, **detector):
    ok, png = cv2.imencode(".png", frame[..., ::-1])
    at = AppTest.from_function(_app, default_timeout=120, kwargs=detector).run()
    at.file_uploader[0].set_value([("frame.png", png.tobytes(), "image/png")]).run()
    assert not at.exception
    return at


def test_the_page_answers_the_unsure_band_with_a_flag():
    frame = np.empty((120, 160, 3), np.uint8)
    frame[:] = (205, 165, 145)
    cv2.ellipse(frame, (40, 40), (14, 12), 0, 0, 360, (95, 60, 45), -1)
    at = _upload(frame)
    warnings = [str(w.value) for w in at.warning]
    assert any(text.startswith("**Detector unsure.**") for text in warnings)
    assert any("detector confidence 40% (unsure)" in str(m.value) for m in at.markdown)
    assert not any("No lesion found" in str(i.value) for i in at.info)


def test_plain_skin_says_why_and_does_not_ask_to_fill_the_frame():
    at = _upload(np.full((120, 160, 3), (205, 165, 145), np.uint8))
    infos = [str(i.value) for i in at.info]
    assert any(text.startswith("**No lesion found: nothing in the box stands out") for text in infos)
    assert any(RETAKE_ADVICE[NOTHING_STANDS_OUT] in text for text in infos)
    assert not any("fill most of the frame" in text for text in infos)
    assert not any(str(w.value).startswith("**Detector unsure") for w in at.warning)


def test_the_page_says_when_a_context_view_was_combined():
    frame = np.empty((120, 160, 3), np.uint8)
    frame[:] = (205, 165, 145)
    cv2.ellipse(frame, (80, 60), (70, 52), 0, 0, 360, (95, 60, 45), -1)
    # a sure box over most of the frame: the default context rule classifies the whole frame as well
    at = _upload(frame, box=(8, 6, 152, 114), score=0.9)
    assert CONTEXT_VIEW[:1].upper() + CONTEXT_VIEW[1:] + "." in [str(c.value) for c in at.caption]
    # and not on the page of a small lesion, which is answered from its crop alone
    frame[:] = (205, 165, 145)
    cv2.ellipse(frame, (40, 40), (14, 12), 0, 0, 360, (95, 60, 45), -1)
    small = _upload(frame)
    assert any(str(m.value).startswith("#### Lesion 1") for m in small.markdown)
    assert not any(str(c.value).startswith("Context view") for c in small.caption)
