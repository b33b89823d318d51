"""The Streamlit page, run in-process with streamlit.testing (fast; no browser, no server).

The page runs on a real LesionPipeline with the classical detector and the fake classifier of
ui_fakes.py, so these tests do not depend on the shipped models; the browser tests cover those.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit", reason="the [ui] extra (streamlit) is not installed")

from streamlit.testing.v1 import AppTest  # noqa: E402

from edgeskin.ui import launch  # noqa: E402

TIMEOUT_S = 120


def _fake_app(refer_threshold=None):
    import streamlit as st
    from ui_fakes import make_fake_pipeline

    from edgeskin.ui.app import main

    calls = st.session_state.setdefault("pipeline_calls", [])

    def load():
        pipeline = make_fake_pipeline(refer_threshold=refer_threshold)

        def counted(frame, source=None):
            calls.append(source)
            return pipeline(frame, source=source)

        counted.classifier = pipeline.classifier
        counted.detector = pipeline.detector
        return counted

    main(load_pipeline=load)


def _texts(at: AppTest, kind: str) -> list[str]:
    return [str(element.value) for element in getattr(at, kind)]


def _elements(at: AppTest, kind: str) -> list:
    return [element for element in at.main if type(element).__name__ == kind]


def _chart_rows(chart) -> dict[str, float]:
    """{class: probability} of a bar chart, from the Arrow dataset Streamlit sends to the browser."""
    import pyarrow as pa

    (dataset,) = chart.proto.datasets
    table = pa.ipc.open_stream(dataset.data.data).read_all().to_pydict()
    return dict(zip(table["class"], table["probability"], strict=True))


@pytest.fixture
def lesion_bytes(shared_file) -> bytes:
    return shared_file("data/ph2/images/IMD002.jpg").read_bytes()


@pytest.fixture
def non_lesion_bytes(shared_file) -> bytes:
    return shared_file("data/non_lesion/panda.jpg").read_bytes()


def test_without_models_the_page_says_no_default_model_is_installed(tmp_path, monkeypatch):
    import streamlit as st

    st.cache_resource.clear()
    monkeypatch.setenv("EDGESKIN_MODELS_DIR", str(tmp_path))
    at = AppTest.from_file(str(launch.APP_PATH), default_timeout=TIMEOUT_S).run()
    assert not at.exception
    (error,) = _texts(at, "error")
    assert "No default model is installed" in error
    assert str(tmp_path) in error
    assert any("Not a diagnosis" in text for text in _texts(at, "warning"))
    assert not at.file_uploader  # nothing to upload to


def test_before_an_upload_the_page_shows_the_notice_and_the_uploader():
    at = AppTest.from_function(_fake_app, default_timeout=TIMEOUT_S).run()
    assert not at.exception
    assert any(launch.NOT_A_DIAGNOSIS in text for text in _texts(at, "warning"))
    (uploader,) = at.file_uploader
    assert uploader.accept_multiple_files
    assert {"jpg", "jpeg", "png", "bmp", "tif", "tiff"} <= {t.lstrip(".") for t in uploader.allowed_type}
    assert not at.error


def test_a_lesion_a_non_lesion_and_a_corrupt_file_in_one_upload(lesion_bytes, non_lesion_bytes):
    at = AppTest.from_function(_fake_app, default_timeout=TIMEOUT_S).run()
    at.file_uploader[0].set_value(
        [
            ("IMD002.jpg", lesion_bytes, "image/jpeg"),
            ("panda.jpg", non_lesion_bytes, "image/jpeg"),
            ("corrupt.jpg", b"\xff\xd8\xff\xe0 this is not a JPEG" * 50, "image/jpeg"),
        ]
    ).run()
    assert not at.exception
    assert _texts(at, "subheader") == ["IMD002.jpg", "panda.jpg", "corrupt.jpg"]
    # the lesion: diagnosis, CAM, two charts, preprocessing before/after, downloads
    assert any("Lesion 1: most likely" in text for text in _texts(at, "markdown"))
    captions = [img.caption for image in _elements(at, "Image") for img in image.proto.imgs]
    assert any("class activation map (CAM)" in c for c in captions)
    assert any("preprocessing profile" in c for c in captions)
    charts = [_chart_rows(e) for e in at.main if getattr(e, "type", None) == "vega_lite_chart"]
    assert len(charts) == 2
    assert set(charts[0]) == {"Melanoma", "BCC", "SCC", "Benign"}
    assert len(charts[1]) == 7 and "Melanocytic nevus (nv)" in charts[1]
    assert all(sum(chart.values()) == pytest.approx(1.0, abs=1e-3) for chart in charts)
    # the non-lesion
    assert any("No lesion found" in text for text in _texts(at, "info"))
    # the corrupt file: a friendly one-line error, no traceback
    (error,) = _texts(at, "error")
    assert error.startswith("Could not analyse this image: ") and "\n" not in error
    assert len(_elements(at, "DownloadButton")) == 4  # PNG + JSON for the two readable images


def test_moving_the_opacity_slider_does_not_rerun_the_pipeline(lesion_bytes):
    at = AppTest.from_function(_fake_app, default_timeout=TIMEOUT_S).run()
    at.file_uploader[0].set_value(("IMD002.jpg", lesion_bytes, "image/jpeg")).run()
    assert at.session_state["pipeline_calls"] == ["IMD002.jpg"]
    at.slider(key="opacity").set_value(0.9).run()
    assert not at.exception
    assert at.session_state["pipeline_calls"] == ["IMD002.jpg"]


def test_refer_flag_is_shown_when_the_lesion_should_be_referred(lesion_bytes):
    at = AppTest.from_function(_fake_app, kwargs={"refer_threshold": 0.0}, default_timeout=TIMEOUT_S).run()
    at.file_uploader[0].set_value(("IMD002.jpg", lesion_bytes, "image/jpeg")).run()
    assert not at.exception
    assert any(text.startswith("**REFER**") for text in _texts(at, "error"))


def test_no_refer_flag_below_the_threshold(lesion_bytes):
    at = AppTest.from_function(_fake_app, kwargs={"refer_threshold": 1.0}, default_timeout=TIMEOUT_S).run()
    at.file_uploader[0].set_value(("IMD002.jpg", lesion_bytes, "image/jpeg")).run()
    assert not at.exception
    assert not at.error


def test_a_blurred_image_gets_a_quality_warning(lesion_bytes):
    import cv2
    import numpy as np

    sharp = cv2.imdecode(np.frombuffer(lesion_bytes, np.uint8), cv2.IMREAD_COLOR)
    blurred = cv2.imencode(".png", cv2.GaussianBlur(sharp, (0, 0), 6))[1].tobytes()
    at = AppTest.from_function(_fake_app, default_timeout=TIMEOUT_S).run()
    at.file_uploader[0].set_value(
        [("sharp.jpg", lesion_bytes, "image/jpeg"), ("blurred.png", blurred, "image/png")]
    ).run()
    assert not at.exception
    (warning,) = [text for text in _texts(at, "warning") if "Image quality" in text]
    assert "hold still" in warning
    assert any(text.startswith("Image quality: ok") for text in _texts(at, "caption"))


def test_a_camera_photo_is_analysed_like_an_upload(lesion_bytes):
    at = AppTest.from_function(_fake_app, default_timeout=TIMEOUT_S).run()
    assert not at.camera_input  # the camera is asked for only when the user turns it on
    at.toggle(key="use_camera").set_value(True).run()
    (camera,) = at.camera_input
    camera.set_value(("photo.jpg", lesion_bytes, "image/jpeg")).run()
    assert not at.exception
    assert _texts(at, "subheader") == ["camera photo"]
    assert at.session_state["pipeline_calls"] == ["camera photo"]
    assert any("Lesion 1: most likely" in text for text in _texts(at, "markdown"))


def test_the_app_module_imports_without_running_the_page():
    import importlib

    module = importlib.import_module("edgeskin.ui.app")
    assert callable(module.main)
    assert Path(module.__file__).resolve() == launch.APP_PATH
