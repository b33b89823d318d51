"""The detector's unsure band: a best box between the spec's ``thresholds.unsure`` and the presence threshold is
answered (classified, refer by the same rule, flagged ``detector_unsure``) when the frame looks like skin and the
box stands out from it; otherwise the frame has no lesion and says why. The CLI and ``evaluate`` show it."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgeskin.core.evidence import PLAIN_SKIN, SCENE, EvidenceThresholds, lesion_evidence
from edgeskin.errors import ConfigError
from edgeskin.labels import DX_CLASSES
from edgeskin.results import Classification, Detections
from edgeskin.runtime.spec import ModelSpec
from edgeskin.tasks.pipeline import (
    DETECTOR_UNSURE,
    NO_LESION_FOUND,
    NOT_SKIN,
    NOTHING_STANDS_OUT,
    LesionPipeline,
    PipelineOptions,
)

BOX = [[60, 40, 200, 180]]


def _skin(height: int = 240, width: int = 320) -> np.ndarray:
    rng = np.random.default_rng(0)
    frame = np.empty((height, width, 3), np.float32)
    frame[:] = (205, 165, 145)
    return np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8)


def _lesion_frame() -> np.ndarray:
    """Skin with a dark brown blob in the middle of BOX."""
    frame = _skin()
    cv2.ellipse(frame, (130, 110), (45, 40), 0, 0, 360, (95, 60, 45), -1)
    return frame


PLAIN = _skin()
LESION = _lesion_frame()
# An everyday scene: many strong edges and many colours.
SCENE_FRAME = cv2.resize(
    np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8), (320, 240), interpolation=cv2.INTER_NEAREST
)


class FakeClassifier:
    labels = DX_CLASSES
    spec = None

    def __init__(self, probabilities=None) -> None:
        self.calls = 0
        self.probabilities = probabilities

    def classify(self, image):
        self.calls += 1
        probs = self.probabilities if self.probabilities is not None else np.full(len(DX_CLASSES), 1 / 7)
        return Classification(np.asarray(probs, np.float32), DX_CLASSES)

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


def _pipeline(score: float | None, classifier=None, **kwargs) -> LesionPipeline:
    thresholds = {"confidence": 0.1, "presence": 0.6, "unsure": 0.3}
    detector = FakeDetector(() if score is None else (score,), thresholds)
    return LesionPipeline(classifier or FakeClassifier(), detector, cam=False, **kwargs)


@pytest.mark.parametrize(
    "frame, score, answered, messages",
    [
        (LESION, None, False, (NO_LESION_FOUND,)),
        (LESION, 0.29, False, (NO_LESION_FOUND,)),  # below the unsure floor
        (LESION, 0.3, True, (DETECTOR_UNSURE,)),
        (LESION, 0.59, True, (DETECTOR_UNSURE,)),
        (LESION, 0.6, True, ()),  # at presence: a lesion, no flag
        (PLAIN, 0.45, False, (NOTHING_STANDS_OUT,)),
        (PLAIN, 0.6, True, ()),  # the evidence is asked in the unsure band only
        (SCENE_FRAME, 0.45, False, (NOT_SKIN,)),
    ],
)
def test_the_unsure_band_is_answered_when_the_frame_backs_it_up(frame, score, answered, messages):
    pipeline = _pipeline(score)
    result = pipeline(frame)
    assert result.messages == messages
    assert result.found is answered and len(result.lesions) == int(answered)
    assert pipeline.classifier.calls == int(answered)  # no diagnosis without an answer
    if answered:
        lesion = result.lesions[0]
        assert lesion.detector_unsure is (score < 0.6)
        assert lesion.score == pytest.approx(score)
        assert lesion.to_dict()["detector_unsure"] is lesion.detector_unsure


@pytest.mark.parametrize("malignant, refer", [(0.9, True), (0.05, False)])
def test_an_unsure_answer_refers_by_the_same_rule(malignant, refer):
    probs = np.zeros(len(DX_CLASSES), np.float32)
    probs[DX_CLASSES.index("mel")], probs[DX_CLASSES.index("nv")] = malignant, 1 - malignant
    pipeline = _pipeline(0.45, FakeClassifier(probs), refer_threshold=0.3)
    lesion = pipeline(LESION).lesions[0]
    assert lesion.detector_unsure and lesion.refer is refer and lesion.malignant == pytest.approx(malignant)


def test_the_evidence_measures_what_the_verdicts_say():
    lesion = lesion_evidence(LESION, BOX[0])
    plain = lesion_evidence(PLAIN, BOX[0])
    scene = lesion_evidence(SCENE_FRAME, BOX[0])
    assert lesion.centre_darkness > 0.3 and lesion.verdict() is None
    assert abs(plain.centre_darkness) < 0.03 and plain.verdict() == PLAIN_SKIN
    assert scene.edge_density > 0.2 and scene.chroma_spread > 9 and scene.verdict() == SCENE
    # A frame-filling dark lesion on well-lit skin: the skin reference is the brightest tenth of the lit field.
    big = _skin()
    cv2.ellipse(big, (160, 120), (150, 110), 0, 0, 360, (70, 45, 35), -1)
    assert lesion_evidence(big, [5, 5, 315, 235]).verdict() is None
    assert lesion.to_dict().keys() == {"centre_darkness", "edge_density", "chroma_spread"}


def test_the_evidence_limits_can_be_changed_and_are_checked():
    strict = EvidenceThresholds(min_centre_darkness=0.9)
    assert _pipeline(0.45, unsure_evidence=strict)(LESION).messages == (NOTHING_STANDS_OUT,)
    with pytest.raises(ValueError, match="min_centre_darkness"):
        EvidenceThresholds(min_centre_darkness=1.5)


def test_the_band_comes_from_the_spec_and_can_be_overridden():
    assert _pipeline(0.4).unsure_confidence == 0.3
    assert _pipeline(0.4, unsure_confidence=0.5)(LESION).messages == (NO_LESION_FOUND,)
    # A spec without "unsure" has no band: "no lesion found" below presence, as before.
    plain = LesionPipeline(FakeClassifier(), FakeDetector((0.5,), {"presence": 0.6}), cam=False)
    assert plain.unsure_confidence is None and plain(LESION).messages == (NO_LESION_FOUND,)
    # A reporting threshold below the band: every candidate in it is reported, no band left.
    assert _pipeline(0.4, min_confidence=0.2).unsure_confidence is None


def test_the_answer_is_per_frame_not_sticky():
    detector = FakeDetector((0.4,), {"presence": 0.6, "unsure": 0.3})
    pipeline = LesionPipeline(FakeClassifier(), detector, cam=False)
    assert pipeline(LESION).lesions[0].detector_unsure
    detector.detections = Detections.empty()
    assert pipeline(LESION).messages == (NO_LESION_FOUND,)


def test_whole_frame_mode_has_no_band():
    result = LesionPipeline(FakeClassifier(), None, cam=False, unsure_confidence=0.3)(PLAIN)
    assert len(result.lesions) == 1 and result.messages == () and not result.lesions[0].detector_unsure


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


def test_cli_predict_shows_the_flag_and_the_reasons(tmp_path, monkeypatch, capsys):
    from edgeskin.cli import main
    from edgeskin.results import RETAKE_ADVICE

    def run(frame, score, *extra):
        image = tmp_path / "frame.png"
        assert cv2.imwrite(str(image), frame[..., ::-1])
        monkeypatch.setattr(LesionPipeline, "create", classmethod(lambda cls, options: _pipeline(score)))
        assert main(["predict", str(image), "--classifier", "c.tflite", "--detector", "d.tflite", *extra]) == 0
        return capsys.readouterr().out

    out = run(LESION, 0.45)
    assert "frame.png (320x240): 1 lesion" in out and "detector score 0.45  (detector unsure" in out
    document = json.loads(run(LESION, 0.45, "--json"))
    assert document["lesions"][0]["detector_unsure"] is True and document["messages"] == [DETECTOR_UNSURE]
    out = run(PLAIN, 0.45)
    assert f"frame.png (320x240): {NOTHING_STANDS_OUT}" in out and RETAKE_ADVICE[NOTHING_STANDS_OUT] in out
    assert "fill most of the frame" not in out  # the advice fits the case
    document = json.loads(run(SCENE_FRAME, 0.45, "--json"))
    assert document["lesions"] == [] and document["messages"] == [NOT_SKIN]


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
    folder.mkdir()
    for image_id, (_, value) in EVALUATED.items():
        frame = LESION.copy()
        frame[0, 0] = value  # all three channels alike
        assert cv2.imwrite(str(folder / f"{image_id}.png"), frame[..., ::-1])
        if masks is not None:
            mask = np.zeros(LESION.shape[:2], np.uint8)
            mask[40:180, 60:200] = 255
            assert cv2.imwrite(str(masks / f"{image_id}_segmentation.png"), mask)


def test_evaluate_classify_counts_unsure_answers_apart_per_dx(tmp_path, monkeypatch):
    """`evaluate classify --detect`: lesions answered from the unsure band are counted apart from the others, per
    dx and per source."""
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
    assert (found["n"], found["lesion"], found["lesion_unsure"], found["no_lesion_found"]) == (5, 1, 1, 3)
    assert found["per_dx"] == {
        "mel": {"n": 2, "lesion": 0, "lesion_unsure": 1, "no_lesion_found": 1},
        "nv": {"n": 3, "lesion": 1, "lesion_unsure": 0, "no_lesion_found": 2},
    }
    assert found["per_source"] == {"ham10000": {"n": 5, "lesion": 1, "lesion_unsure": 1, "no_lesion_found": 3}}


def test_evaluate_detect_counts_unsure_below_the_model_confidence(tmp_path, monkeypatch, capsys):
    """`evaluate detect`: images without a lesion at presence split into the unsure band and below it, with the
    detector's candidates kept down to the band (here below the spec's confidence)."""
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
    assert (gated["no_box"], gated["unsure_band"], gated["no_lesion_found"]) == (4, 2, 2)
    assert report["no_box"] == 3  # the box statistics keep the model's own confidence floor (0.25)
    assert "2 in the unsure band, 2 below it" in capsys.readouterr().out


def test_a_smooth_but_colourful_frame_is_a_scene():
    """A bird on a blurred green background: few edges, but a colour spread no dermoscopy frame has."""
    hue = np.tile(np.linspace(0, 179, 320, dtype=np.float32), (240, 1)).astype(np.uint8)
    hsv = np.dstack([hue, np.full_like(hue, 200), np.full_like(hue, 200)])
    frame = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    evidence = lesion_evidence(frame, BOX[0])
    assert evidence.edge_density < 0.2 and evidence.chroma_spread >= 14 and evidence.verdict() == SCENE


@pytest.mark.shared
def test_the_shipped_models_answer_a_ph2_melanoma_of_the_unsure_band(shared_file):
    """IMD240, a PH2 melanoma filling most of the frame, scores 0.37 (under presence 0.44): answered, flagged,
    referred; the cat's unsure-band box is not answered (issue 29)."""
    from tiny_models import shipped_model_paths

    from edgeskin.capture.quality import assess_quality
    from edgeskin.image import read_image

    shipped_model_paths()
    frame = read_image(shared_file("data/ph2/images/IMD240.jpg"))
    with LesionPipeline.from_defaults(threads=2, cam=False) as pipeline:
        result = pipeline(frame)
        cat = pipeline(read_image(shared_file("data/non_lesion/cat.bmp")))
    assert len(result.lesions) == 1 and result.messages == (DETECTOR_UNSURE,)
    lesion = result.lesions[0]
    assert lesion.detector_unsure and 0.13 <= lesion.score < 0.44
    assert lesion.label == "mel" and lesion.refer
    # Nor is it "too dark" or "too small": the gate judges the skin around it (the app passes the lesion's box).
    assert assess_quality(frame, lesion.box).ok
    assert cat.lesions == () and cat.messages == (NOT_SKIN,)
