"""The Streamlit page says "Unsure: retake" (a warning) when the detector's best box is in the unsure band."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("streamlit", reason="the [ui] extra (streamlit) is not installed")

from streamlit.testing.v1 import AppTest  # noqa: E402

from edgeskin.tasks.pipeline import UNSURE_RETAKE  # noqa: E402
from edgeskin.ui import launch  # noqa: E402


def _unsure_app():
    import numpy as np
    from ui_fakes import FakeClassifier

    from edgeskin.results import Detections
    from edgeskin.runtime.spec import ModelSpec
    from edgeskin.tasks.pipeline import LesionPipeline
    from edgeskin.ui.app import main

    class UnsureDetector:
        spec = ModelSpec.from_dict(
            {"name": "d", "task": "detection", "input": {"size": [320, 320]}, "labels": ["lesion"],
             "outputs": {"predictions": "o"}, "layout": "yolo", "boxes": "xywh_normalized",
             "thresholds": {"presence": 0.6, "unsure": 0.3}}
        )  # fmt: skip

        def detect(self, frame):
            return Detections(np.array([[20, 20, 60, 60]], np.float32), [0.4], [0])

        def close(self):
            pass

    main(load_pipeline=lambda: LesionPipeline(FakeClassifier(), UnsureDetector()))


def test_the_ui_message_names_match_the_pipeline():
    assert launch.UNSURE_MESSAGE == UNSURE_RETAKE
    assert launch.UNSURE_MESSAGE in launch.ABSENT_MESSAGES


def test_the_page_asks_for_a_retake():
    ok, png = cv2.imencode(".png", np.full((120, 160, 3), 170, np.uint8))
    at = AppTest.from_function(_unsure_app, default_timeout=120).run()
    at.file_uploader[0].set_value([("frame.png", png.tobytes(), "image/png")]).run()
    assert not at.exception
    warnings = [str(w.value) for w in at.warning]
    assert any(text.startswith("**Unsure: retake**") for text in warnings)
    assert not any("No lesion found" in str(i.value) for i in at.info)
