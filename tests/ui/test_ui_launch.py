"""edgeskin.ui.launch: the command line, the analysis of uploaded bytes and what the page shows."""

from __future__ import annotations

import json
import sys

import cv2
import numpy as np
import pytest
from ui_fakes import FakeClassifier, make_fake_pipeline

from edgeskin.errors import ConfigError
from edgeskin.labels import DX_CLASSES, GROUPS
from edgeskin.results import Classification, Lesion, PipelineResult
from edgeskin.ui import launch


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()


def _lesion_frame() -> np.ndarray:
    """Light skin with a dark round lesion in the middle."""
    frame = np.full((240, 320, 3), (215, 170, 150), np.uint8)
    cv2.circle(frame, (160, 120), 60, (90, 50, 40), -1)
    return frame


def _lesion(cam: np.ndarray | None = None, crop_box=(100, 60, 220, 180)) -> Lesion:
    dx = np.full(len(DX_CLASSES), 0.1, np.float32)
    dx[DX_CLASSES.index("nv")] = 0.4
    return Lesion(
        box=np.array([110, 70, 210, 170], np.float32),
        score=0.9,
        dx=Classification(dx, DX_CLASSES),
        group=Classification(np.array([0.1, 0.1, 0.1, 0.7]), GROUPS),
        malignant=0.3,
        refer=True,
        crop_box=np.array(crop_box),
        cam=cam,
    )


# -- the command line --------------------------------------------------------------------------------
def test_streamlit_command_serves_the_packaged_app_privately_by_default():
    command = launch.streamlit_command(python="py")
    assert command[:5] == ["py", "-m", "streamlit", "run", str(launch.APP_PATH)]
    assert launch.APP_PATH.is_file()
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options["--server.address"] == "127.0.0.1"
    assert options["--browser.gatherUsageStats"] == "false"
    assert options["--global.developmentMode"] == "false"


def test_streamlit_command_puts_user_options_last_so_they_win():
    command = launch.streamlit_command(["--server.port", "8502", "--server.address=0.0.0.0"])
    assert command[-3:] == ["--server.port", "8502", "--server.address=0.0.0.0"]
    assert command[0] == sys.executable


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--server.port", "1"],
        ["--server.port=1", "--server.headless", "true"],
        ["--theme.base", "dark"],
    ],
)
def test_streamlit_options_are_accepted(args):
    assert launch.check_streamlit_args(args) == args


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["photo.jpg"], "unexpected argument 'photo.jpg'"),
        (["--server.port", "1", "2"], "unexpected argument '2'"),
        (["--port", "1"], "unexpected argument '--port'"),
        (["--server.port"], "--server.port: expected a value"),
    ],
)
def test_other_arguments_are_refused_with_the_reason(args, message):
    with pytest.raises(ConfigError, match=message):
        launch.check_streamlit_args(args)


# -- analysis ----------------------------------------------------------------------------------------
def test_analyse_decodes_in_memory_and_runs_the_pipeline():
    analysis = launch.analyse(make_fake_pipeline(), _png(_lesion_frame()), "mole.png")
    assert analysis.error is None
    assert analysis.frame.shape == (240, 320, 3)
    assert analysis.result.source == "mole.png"
    assert analysis.result.found


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (np.random.default_rng(0).bytes(2000), "not an image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 40, "JPEG"),
        (_png(np.zeros((8, 8, 3), np.uint8)), "too small"),
    ],
)
def test_unreadable_uploads_become_a_one_line_reason(data, reason):
    calls = []
    analysis = launch.analyse(lambda frame, source=None: calls.append(frame), data, "upload.jpg")
    assert analysis.result is None and analysis.frame is None
    assert reason.lower() in analysis.error.lower()
    assert "\n" not in analysis.error
    assert calls == []


def test_an_unreadable_upload_has_no_quality_report():
    analysis = launch.analyse(make_fake_pipeline(), b"not an image", "upload.jpg")
    assert analysis.quality is None and launch.quality_messages(None) == []
    assert "quality" not in launch.report(analysis, make_fake_pipeline())


def test_a_sharp_well_exposed_lesion_passes_the_quality_gate():
    frame = _lesion_frame()
    frame[::4] = frame[::4] // 2  # texture, so the frame is not uniformly smooth
    analysis = launch.analyse(make_fake_pipeline(), _png(frame), "mole.png")
    assert analysis.quality.ok, analysis.quality
    assert launch.quality_messages(analysis.quality) == []
    assert launch.report(analysis, make_fake_pipeline())["quality"]["ok"] is True


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: cv2.GaussianBlur(f, (0, 0), 6), "hold still: the image looks blurred"),
        (lambda f: (f * 0.2).astype(np.uint8), "too dark: the image is too dark"),
        (lambda f: np.full_like(f, 252), "too bright: the image is over-exposed"),
    ],
)
def test_quality_gate_messages_say_what_to_do(change, message):
    frame = _lesion_frame()
    frame[::4] = frame[::4] // 2
    report = launch.assess_quality(change(frame), None)
    assert message in launch.quality_messages(report)


# -- what the page shows -----------------------------------------------------------------------------
def test_model_facts_come_from_the_specs():
    facts = launch.model_facts(make_fake_pipeline())
    assert [f.role for f in facts] == ["Classifier"]  # the classical detector has no spec
    (fact,) = facts
    assert fact.name == "fake-ui-classifier"
    assert fact.input_size == "224x224 RGB"
    assert fact.metrics == {"balanced accuracy": "0.500", "auc malignant": "0.750"}
    assert fact.licence == "test fixture"


def test_headline_metrics_prefer_the_shipped_int8_variant():
    metrics = {
        "validation_images": 855,
        "float": {"dx": {"accuracy": 0.78, "balanced_accuracy": 0.69}},
        "int8_calibrated": {"dx": {"accuracy": 0.76, "balanced_accuracy": 0.67}, "malignant_auc": 0.93, "note": "x"},
    }
    assert launch.headline_metrics(metrics) == {
        "dx balanced accuracy": "0.670",
        "malignant auc": "0.930",
        "dx accuracy": "0.760",
        "validation images": "855",
    }
    assert len(launch.headline_metrics({f"m{i}": i / 100 for i in range(30)}, limit=5)) == 5
    assert launch.headline_metrics({}) == {}


def test_licence_comes_from_the_spec_or_else_the_model_card(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESKIN_MODELS_DIR", str(tmp_path))
    (tmp_path / "MODEL_CARD.md").write_text(
        "# card\n\n**Intended use:** research.\n**Licence of the weights:** trained on X (CC BY-NC 4.0):\n"
        "non-commercial use only. Every figure below is measured.\n"
    )
    pipeline = make_fake_pipeline()
    assert launch.model_facts(pipeline)[0].licence == "test fixture"  # the spec's own
    pipeline.classifier.spec = pipeline.classifier.spec.with_updates(provenance={"data": "X"})
    (fact,) = launch.model_facts(pipeline)
    assert fact.licence == "trained on X (CC BY-NC 4.0): non-commercial use only."
    assert fact.data == "X"


def test_preprocessing_views_show_the_classifier_input_before_and_after_its_profile():
    spec = FakeClassifier().spec
    before, after, name = launch.preprocessing_views(_lesion_frame(), _lesion(), spec)
    assert name == "colour"
    assert before.shape == after.shape == (224, 224, 3)
    assert not np.array_equal(before, after)  # shades of gray changes the colour cast


def test_preprocessing_views_clip_a_crop_box_outside_the_frame():
    spec = FakeClassifier().spec
    before, _, _ = launch.preprocessing_views(_lesion_frame(), _lesion(crop_box=(-50, -50, 400, 300)), spec)
    assert before.shape == (224, 224, 3)


def test_encode_png_round_trips():
    frame = _lesion_frame()
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(launch.encode_png(frame), np.uint8), 1), cv2.COLOR_BGR2RGB)
    assert np.array_equal(decoded, frame)


def test_report_is_json_with_models_result_and_notice():
    pipeline = make_fake_pipeline()
    analysis = launch.analyse(pipeline, _png(_lesion_frame()), "mole.png")
    document = json.loads(json.dumps(launch.report(analysis, pipeline)))
    assert document["source"] == "mole.png"
    assert document["notice"] == launch.NOT_A_DIAGNOSIS
    assert document["models"]["classifier"]["name"] == "fake-ui-classifier"
    assert document["result"]["lesions"][0]["label"] in DX_CLASSES
    assert "error" not in document


def test_report_of_a_failed_upload_names_the_error():
    analysis = launch.analyse(make_fake_pipeline(), b"nonsense", "bad.jpg")
    document = launch.report(analysis, make_fake_pipeline())
    assert document["error"] == analysis.error and "result" not in document


def test_no_lesion_message_matches_the_pipeline():
    from edgeskin.tasks.pipeline import NO_LESION_FOUND

    assert launch.NO_LESION_MESSAGE == NO_LESION_FOUND
    empty = PipelineResult((320, 240), (), messages=(NO_LESION_FOUND,))
    assert not empty.found
