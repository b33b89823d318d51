"""The detector's "unsure: retake" band: a best box between the spec's ``thresholds.unsure`` and the presence
threshold makes the pipeline ask for a retake instead of saying "no lesion found" (and the CLI, the live
loop and the kiosk show it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeskin.errors import ConfigError
from edgeskin.labels import DX_CLASSES
from edgeskin.results import Classification, Detections
from edgeskin.runtime.spec import ModelSpec
from edgeskin.tasks.pipeline import NO_LESION_FOUND, UNSURE_RETAKE, LesionPipeline, PipelineOptions

FRAME = np.full((240, 320, 3), 180, np.uint8)
BOX = [[60, 40, 200, 180]]


class FakeClassifier:
    labels = DX_CLASSES
    spec = None

    def __init__(self) -> None:
        self.calls = 0

    def classify(self, image):
        self.calls += 1
        return Classification(np.full(len(DX_CLASSES), 1 / len(DX_CLASSES), np.float32), DX_CLASSES)

    def close(self):
        pass


class FakeDetector:
    """Returns fixed boxes; ``spec`` carries the thresholds like a real Detector's."""

    def __init__(self, scores=(), thresholds=None) -> None:
        boxes = np.asarray(BOX * len(scores), np.float32).reshape(-1, 4)
        self.detections = Detections(boxes, np.asarray(scores, np.float32), np.zeros(len(scores)))
        self.spec = ModelSpec.from_dict(
            {"name": "fake-det", "task": "detection", "input": {"size": [320, 320]}, "labels": ["lesion"],
             "outputs": {"predictions": "out"}, "layout": "yolo", "boxes": "xywh_normalized",
             "thresholds": thresholds or {}}
        )  # fmt: skip

    def detect(self, frame):
        return self.detections

    def close(self):
        pass


def _pipeline(score: float | None, **kwargs) -> LesionPipeline:
    thresholds = {"confidence": 0.1, "presence": 0.6, "unsure": 0.3}
    detector = FakeDetector(() if score is None else (score,), thresholds)
    return LesionPipeline(FakeClassifier(), detector, cam=False, **kwargs)


@pytest.mark.parametrize(
    "score, message",
    [
        (None, NO_LESION_FOUND),
        (0.2, NO_LESION_FOUND),
        (0.29, NO_LESION_FOUND),
        (0.3, UNSURE_RETAKE),
        (0.59, UNSURE_RETAKE),
    ],
)
def test_below_presence_the_message_depends_on_the_band(score, message):
    pipeline = _pipeline(score)
    result = pipeline(FRAME)
    assert result.lesions == () and not result.found
    assert result.messages == (message,)
    assert pipeline.classifier.calls == 0  # no diagnosis either way


def test_at_presence_a_lesion_is_reported_without_a_message():
    result = _pipeline(0.6)(FRAME)
    assert len(result.lesions) == 1 and result.messages == ()


def test_the_band_comes_from_the_spec_and_can_be_overridden():
    assert _pipeline(0.4).unsure_confidence == 0.3
    assert _pipeline(0.4, unsure_confidence=0.5)(FRAME).messages == (NO_LESION_FOUND,)
    # A spec without "unsure" has no band: "no lesion found" as before.
    plain = LesionPipeline(FakeClassifier(), FakeDetector((0.5,), {"presence": 0.6}), cam=False)
    assert plain.unsure_confidence is None and plain(FRAME).messages == (NO_LESION_FOUND,)
    # A reporting threshold below the band: every candidate in it is reported, no band left.
    assert _pipeline(0.4, min_confidence=0.2).unsure_confidence is None


def test_the_message_is_per_frame_not_sticky():
    detector = FakeDetector((0.4,), {"presence": 0.6, "unsure": 0.3})
    pipeline = LesionPipeline(FakeClassifier(), detector, cam=False)
    assert pipeline(FRAME).messages == (UNSURE_RETAKE,)
    detector.detections = Detections.empty()
    assert pipeline(FRAME).messages == (NO_LESION_FOUND,)


def test_whole_frame_mode_has_no_band():
    result = LesionPipeline(FakeClassifier(), None, cam=False, unsure_confidence=0.3)(FRAME)
    assert len(result.lesions) == 1 and result.messages == ()


def test_options_check_the_band():
    with pytest.raises(ConfigError, match="unsure_confidence"):
        PipelineOptions("m.tflite", unsure_confidence=1.5)


def test_create_keeps_the_detector_candidates_down_to_the_band(tmp_path, monkeypatch):
    import edgeskin.tasks.classifier as classifier_module
    import edgeskin.tasks.detector as detector_module

    class Opened:
        def __init__(self, threshold):
            self.spec = FakeDetector((), {"confidence": 0.25, "presence": 0.6, "unsure": 0.15}).spec
            self.confidence_threshold = threshold

        def close(self):
            pass

    monkeypatch.setattr(classifier_module.Classifier, "create", classmethod(lambda cls, options: FakeClassifier()))
    monkeypatch.setattr(detector_module.Detector, "create", classmethod(lambda cls, options: Opened(0.25)))
    pipeline = LesionPipeline.create(PipelineOptions("c.tflite", detector="d.tflite", cam=False))
    assert pipeline.detector.confidence_threshold == 0.15 and pipeline.unsure_confidence == 0.15


def test_cli_predict_prints_unsure_retake(tmp_path, monkeypatch, capsys):
    import cv2

    from edgeskin.cli import main

    image = tmp_path / "frame.png"
    assert cv2.imwrite(str(image), FRAME)
    monkeypatch.setattr(LesionPipeline, "create", classmethod(lambda cls, options: _pipeline(0.45)))
    assert main(["predict", str(image), "--classifier", "c.tflite", "--detector", "d.tflite"]) == 0
    out = capsys.readouterr().out
    assert f"frame.png (320x240): {UNSURE_RETAKE}" in out
    assert main(["predict", str(image), "--classifier", "c.tflite", "--detector", "d.tflite", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["lesions"] == [] and document["messages"] == [UNSURE_RETAKE]


class ScoreFromFrame:
    """A detector whose one box scores the frame's first pixel / 255, above its ``confidence_threshold``."""

    def __init__(self, thresholds) -> None:
        self.spec = FakeDetector((), thresholds).spec
        self.confidence_threshold = thresholds["confidence"]

    def detect(self, frame):
        score = float(frame[0, 0, 0]) / 255.0
        keep = score >= self.confidence_threshold
        return Detections(np.asarray(BOX * keep, np.float32).reshape(-1, 4), np.asarray([score] * keep, np.float32),
                          np.zeros(int(keep)))  # fmt: skip

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# (true dx, first-pixel value): scores 0.9 (reported), 0.45 and 0.2 (unsure band), 0.05 (nothing)
EVALUATED = {"ISIC_0000001": ("mel", 115), "ISIC_0000002": ("mel", 13), "ISIC_0000003": ("nv", 230),
             "ISIC_0000004": ("nv", 51), "ISIC_0000005": ("nv", 13)}  # fmt: skip


def _write_images(folder, masks=None) -> None:
    import cv2

    folder.mkdir()
    for image_id, (_, value) in EVALUATED.items():
        frame = FRAME.copy()
        frame[0, 0] = value  # RGB; written as BGR, so all three channels alike
        assert cv2.imwrite(str(folder / f"{image_id}.png"), frame)
        if masks is not None:
            mask = np.zeros(FRAME.shape[:2], np.uint8)
            mask[40:180, 60:200] = 255
            assert cv2.imwrite(str(masks / f"{image_id}_segmentation.png"), mask)


def test_evaluate_classify_counts_unsure_apart_from_no_lesion_per_dx(tmp_path, monkeypatch):
    """`evaluate classify --detect`: "unsure: retake" images are counted apart from "no lesion found", per dx
    and per source (they used to be counted as no lesion)."""
    from types import SimpleNamespace

    pytest.importorskip("sklearn")
    from edgeskin.cli import main

    class Classifier(FakeClassifier):
        spec = SimpleNamespace(malignant_threshold=0.3)

    _write_images(tmp_path / "images")
    labels = tmp_path / "metadata.csv"
    labels.write_text("image_id,dx\n" + "".join(f"{i},{dx}\n" for i, (dx, _) in EVALUATED.items()))
    thresholds = {"confidence": 0.1, "presence": 0.6, "unsure": 0.3}
    monkeypatch.setattr(LesionPipeline, "create", classmethod(
        lambda cls, options: LesionPipeline(Classifier(), ScoreFromFrame(thresholds), cam=False)))  # fmt: skip
    out, model, detector = tmp_path / "report.json", tmp_path / "c.tflite", tmp_path / "d.tflite"
    model.write_bytes(b"c")  # only hashed for the report: the pipeline is the fake above
    detector.write_bytes(b"d")
    assert main(["evaluate", "classify", "--images", str(tmp_path / "images"), "--labels", str(labels),
                 "--model", str(model), "--detect", "--detector", str(detector), "--json", str(out)]) == 0  # fmt: skip
    found = json.loads(out.read_text())["detect"]
    assert (found["n"], found["lesion"], found["unsure_retake"], found["no_lesion_found"]) == (5, 1, 1, 3)
    assert found["per_dx"] == {
        "mel": {"n": 2, "lesion": 0, "unsure_retake": 1, "no_lesion_found": 1},
        "nv": {"n": 3, "lesion": 1, "unsure_retake": 0, "no_lesion_found": 2},
    }
    assert found["per_source"] == {"ham10000": {"n": 5, "lesion": 1, "unsure_retake": 1, "no_lesion_found": 3}}


def test_evaluate_detect_counts_unsure_below_the_model_confidence(tmp_path, monkeypatch, capsys):
    """`evaluate detect`: images without a reported lesion split into "unsure: retake" and "no lesion found",
    with the detector's candidates kept down to the band (here below the spec's confidence)."""
    import edgeskin.tasks.detector as detector_module
    from edgeskin.cli import main

    masks = tmp_path / "masks"
    masks.mkdir()
    _write_images(tmp_path / "images", masks)
    thresholds = {"confidence": 0.25, "presence": 0.6, "unsure": 0.15}
    monkeypatch.setattr(detector_module.Detector, "create",
                        classmethod(lambda cls, options: ScoreFromFrame(thresholds)))  # fmt: skip
    out = tmp_path / "report.json"
    (tmp_path / "d.tflite").write_bytes(b"d")  # only hashed for the report
    assert main(["evaluate", "detect", "--images", str(tmp_path / "images"), "--masks", str(masks),
                 "--model", str(tmp_path / "d.tflite"), "--json", str(out)]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    gated = report["at_presence_threshold"]
    assert (gated["no_box"], gated["unsure_retake"], gated["no_lesion_found"]) == (4, 2, 2)
    assert report["no_box"] == 3  # the box statistics keep the model's own confidence floor (0.25)
    assert "2 unsure: retake, 2 no lesion found" in capsys.readouterr().out
