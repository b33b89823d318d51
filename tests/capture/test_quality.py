"""The quality gate on real dermoscopy (PH2, HAM10000, ISIC) and on blurred, darkened, brightened and zoomed-out
versions; it judges the skin's exposure and the edges' focus, not the lesion's darkness or the skin's texture."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeskin.capture.quality import GUIDANCE, QualityGate, QualityThresholds, assess_quality, edge_softness
from edgeskin.image import read_image


@pytest.fixture(scope="module")
def ph2_frames(ph2_paths) -> list[np.ndarray]:
    return [read_image(p) for p in ph2_paths]


def _degrade(image: np.ndarray, how: str) -> np.ndarray:
    if how == "blur":  # σ 3 pixels at the gate's analysis size (320 on the long side)
        return cv2.GaussianBlur(image, (0, 0), 3 * max(1.0, max(image.shape[:2]) / 320))
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


def test_edge_softness_does_not_depend_on_exposure_or_resolution(ph2_frames):
    frame = ph2_frames[0]
    base = edge_softness(frame)
    assert edge_softness((frame * 0.4).astype(np.uint8)) == pytest.approx(base, abs=0.05)
    doubled = cv2.resize(frame, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    assert edge_softness(doubled) == pytest.approx(base, abs=0.05)


def test_a_dark_frame_says_too_dark_not_hold_still(ph2_frames):
    report = assess_quality(np.full((240, 320, 3), 10, np.uint8))
    assert report.issues == ("dark",)
    assert report.edge_softness == 1.0  # no edge at all


def _skin_with_lesion(lesion_share: float, skin: int = 200, lesion: int = 45, blur: float = 0.0) -> np.ndarray:
    """A well-lit skin frame with a dark, sharp-edged elliptical lesion covering ``lesion_share`` of it."""
    rng = np.random.default_rng(0)
    frame = np.empty((480, 640, 3), np.float32)
    frame[:] = (skin, skin * 0.8, skin * 0.7)
    frame += rng.normal(0, 2, frame.shape)
    axes = (
        round(320 * np.sqrt(lesion_share * 4 / np.pi * 0.75)),
        round(240 * np.sqrt(lesion_share * 4 / np.pi / 0.75)),
    )
    mask = np.zeros((480, 640), np.uint8)
    cv2.ellipse(mask, (320, 240), axes, 0, 0, 360, 1, -1)
    frame[mask > 0] = (lesion, lesion * 0.7, lesion * 0.6)
    if blur:
        frame = cv2.GaussianBlur(frame, (0, 0), blur)
    return np.clip(frame, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("lesion_share", "skin", "blur", "issues"),
    [
        (0.10, 200, 0.0, ()),
        (0.60, 200, 0.0, ()),  # a large dark lesion on well-lit skin is not "too dark" (the mean grey level is)
        (0.80, 200, 0.0, ()),
        (0.60, 80, 0.0, ("dark",)),  # the skin itself is dim
        (0.10, 200, 8.0, ("blur",)),  # the lesion border is out of focus
        (0.60, 200, 8.0, ("blur",)),
    ],
)
def test_exposure_is_the_skins_and_focus_is_the_edges(lesion_share, skin, blur, issues):
    frame = _skin_with_lesion(lesion_share, skin=skin, blur=blur)
    assert assess_quality(frame).issues == issues


def _real_images(shared_file, folder: str, names: list[str]) -> list[np.ndarray]:
    return [read_image(shared_file(f"data/{folder}/{name}.jpg")) for name in names]


@pytest.fixture(scope="module")
def smooth_naevi(shared_file) -> list[np.ndarray]:
    """HAM10000 validation and ISIC Task 1 images, in focus, that the earlier gate (brightness-normalised variance
    of the Laplacian < 20) called blurred: smooth lesions with little texture (issue 29)."""
    ham = ["ISIC_0024438", "ISIC_0024693", "ISIC_0024743", "ISIC_0024858", "ISIC_0024908", "ISIC_0024951"]
    isic = ["ISIC_0000391", "ISIC_0000442", "ISIC_0000483", "ISIC_0000509", "ISIC_0000522", "ISIC_0001106"]
    return _real_images(shared_file, "ham10000/images", ham) + _real_images(shared_file, "isic2018_task1/images", isic)


@pytest.mark.shared
def test_real_dermoscopy_of_other_sources_passes_and_its_blurred_copies_do_not(smooth_naevi):
    reports = [assess_quality(image) for image in smooth_naevi]
    assert all(r.ok for r in reports), [r.to_dict() for r in reports]
    for image in smooth_naevi:
        blurred = cv2.GaussianBlur(image, (0, 0), 3 * max(1.0, max(image.shape[:2]) / 320))
        assert "blur" in assess_quality(blurred).issues


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
        {"min_skin_luminance": 200, "max_median_luminance": 100},
        {"max_edge_softness": 0.0},
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
