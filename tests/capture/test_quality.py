"""The quality gate on real PH2 frames and on blurred, darkened, brightened and zoomed-out versions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeskin.capture.quality import GUIDANCE, QualityGate, QualityThresholds, assess_quality, sharpness
from edgeskin.image import read_image


@pytest.fixture(scope="module")
def ph2_frames(ph2_paths) -> list[np.ndarray]:
    return [read_image(p) for p in ph2_paths]


def _degrade(image: np.ndarray, how: str) -> np.ndarray:
    if how == "blur":
        return cv2.GaussianBlur(image, (0, 0), 4)
    if how == "dark":
        return (image * 0.25).astype(np.uint8)
    if how == "bright":
        return np.clip(image.astype(np.float32) * 2.2, 0, 255).astype(np.uint8)
    raise ValueError(how)


def test_real_dermoscopy_frames_pass(ph2_frames):
    for frame in ph2_frames:
        report = assess_quality(frame)
        assert report.ok, report
        assert report.guidance == ()


@pytest.mark.parametrize(("how", "message"), [("blur", "hold still"), ("dark", "too dark"), ("bright", "too bright")])
def test_degraded_real_frames_get_guidance(ph2_frames, how, message):
    flagged = [assess_quality(_degrade(frame, how)) for frame in ph2_frames]
    assert all(not r.ok for r in flagged), [r.to_dict() for r in flagged]
    assert all(message in r.guidance for r in flagged)


def test_sharpness_does_not_depend_on_exposure_or_resolution(ph2_frames):
    frame = ph2_frames[0]
    base = sharpness(frame)
    assert sharpness((frame * 0.4).astype(np.uint8)) == pytest.approx(base, rel=0.25)
    doubled = cv2.resize(frame, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    assert sharpness(doubled) == pytest.approx(base, rel=0.25)


def test_a_dark_frame_says_too_dark_not_hold_still(ph2_frames):
    report = assess_quality(np.full((240, 320, 3), 10, np.uint8))
    assert report.issues == ("dark",)
    assert report.sharpness == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("box", "small"),
    [
        ((0, 0, 320, 240), False),
        ((100, 80, 180, 150), False),  # 7.3 % of the frame
        ((150, 110, 200, 150), True),  # 2.6 %
        ((-50, -50, 10, 10), True),  # mostly outside: clipped to 100 px
        ((300, 200, 300, 240), True),  # empty
    ],
)
def test_lesion_too_small_says_move_closer(ph2_frames, box, small):
    frame = cv2.resize(ph2_frames[0], (320, 240), interpolation=cv2.INTER_AREA)
    report = assess_quality(frame, box)
    assert ("move closer" in report.guidance) is small
    assert report.lesion_fraction is not None


def test_gate_check_box_adds_the_size_check_without_measuring_again(ph2_frames):
    gate = QualityGate()
    frame = cv2.resize(ph2_frames[0], (320, 240), interpolation=cv2.INTER_AREA)
    report = gate(frame)
    assert report.ok and report.lesion_fraction is None
    small = gate.check_box(report, (10, 10, 30, 30), (320, 240))
    assert not small.ok and small.issues == ("small",) and small.guidance == ("move closer",)
    big = gate.check_box(small, (0, 0, 200, 200), (320, 240))
    assert big.ok and big.issues == ()


def test_gate_can_turn_checks_off():
    dark = np.full((240, 320, 3), 10, np.uint8)
    assert not QualityGate()(dark).ok
    assert QualityGate(checks=("blur", "bright"))(dark).ok
    with pytest.raises(ValueError, match="unknown quality checks"):
        QualityGate(checks=("focus",))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_mean_luminance": 200, "max_mean_luminance": 100},
        {"max_clipped_fraction": 1.5},
        {"min_lesion_fraction": -0.1},
        {"analysis_side": 8},
    ],
)
def test_bad_thresholds_fail_when_built(kwargs):
    with pytest.raises(ValueError):
        QualityThresholds(**kwargs)


def test_report_is_json_ready_and_guidance_strings_are_the_documented_ones(ph2_frames):
    report = assess_quality(_degrade(ph2_frames[0], "blur"), (0, 0, 10, 10))
    data = report.to_dict()
    assert data["ok"] is False and data["issues"] == ["blur", "small"]
    assert data["guidance"] == [GUIDANCE["blur"], GUIDANCE["small"]] == ["hold still", "move closer"]


def test_non_rgb_input_is_refused():
    with pytest.raises(ValueError, match="expected an RGB uint8 frame"):
        assess_quality(np.zeros((10, 10), np.uint8))
