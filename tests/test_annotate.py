"""Annotators draw on a copy: boxes, labels, heatmaps over the lesion box, the notice and messages."""

from __future__ import annotations

import numpy as np
import pytest

from edgeskin.annotate import (
    NOT_A_DIAGNOSIS,
    BannerAnnotator,
    BoxAnnotator,
    HeatmapAnnotator,
    LabelAnnotator,
    MessageAnnotator,
    annotate,
    lesion_crop_heatmap,
    lesion_label,
)
from edgeskin.errors import ConfigError, ImageError
from edgeskin.labels import DX_CLASSES, GROUPS
from edgeskin.results import Classification, Detections, Lesion, PipelineResult

W, H = 400, 300
PROBS = np.array([0.02, 0.03, 0.05, 0.02, 0.82, 0.04, 0.02], np.float32)


def _lesion(box=(100, 80, 220, 200), crop_box=(80, 60, 240, 220), refer=True, cam=True) -> Lesion:
    heat = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4) if cam else None
    dx = Classification(PROBS, DX_CLASSES)
    return Lesion(
        box=np.array(box, np.float32), score=0.91, dx=dx, group=Classification([0.82, 0.03, 0.02, 0.13], GROUPS),
        malignant=0.87, refer=refer, crop_box=np.array(crop_box, np.int32), cam=heat,
    )  # fmt: skip


def _frame() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(60, 200, (H, W, 3)).astype(np.uint8)


def _result(*lesions: Lesion, messages=()) -> PipelineResult:
    return PipelineResult((W, H), lesions, {"total": 1.0}, messages)


ANNOTATORS = [
    ("box", lambda f, r: BoxAnnotator().annotate(f, r)),
    ("label", lambda f, r: LabelAnnotator().annotate(f, r)),
    ("heatmap", lambda f, r: HeatmapAnnotator().annotate(f, r)),
    ("banner", lambda f, r: BannerAnnotator().annotate(f, r)),
    ("all", lambda f, r: annotate(f, r)),
]


@pytest.mark.parametrize("name, draw", ANNOTATORS, ids=[a[0] for a in ANNOTATORS])
def test_annotators_return_a_new_frame_and_leave_the_input_alone(name, draw):
    frame = _frame()
    before = frame.copy()
    out = draw(frame, _result(_lesion()))
    np.testing.assert_array_equal(frame, before)
    assert out is not frame and out.shape == frame.shape and out.dtype == np.uint8
    assert not np.array_equal(out, frame), f"{name} drew nothing"


def test_boxes_are_drawn_on_the_box_edge_red_when_referred_green_otherwise():
    frame = np.zeros((H, W, 3), np.uint8)
    referred = BoxAnnotator(thickness=2).annotate(frame, _result(_lesion(refer=True)))
    fine = BoxAnnotator(thickness=2).annotate(frame, _result(_lesion(refer=False)))
    edge = referred[140, 100]  # on the left edge, x0 = 100
    assert edge[0] > 150 and edge[1] < 80  # red
    assert fine[140, 100][1] > 150 and fine[140, 100][0] < 80  # green
    assert (referred[150, 150] == 0).all()  # the inside is untouched
    dets = BoxAnnotator().annotate(frame, Detections([[10, 10, 50, 50]], [0.5], [0]))
    assert dets[30, 10].any() and not dets[30, 30].any()


def test_the_label_names_the_diagnosis_probability_code_and_refer():
    assert lesion_label(_lesion(refer=True)) == "Melanoma 0.82 (mel)  REFER"
    assert lesion_label(_lesion(refer=False)) == "Melanoma 0.82 (mel)"
    frame = np.zeros((H, W, 3), np.uint8)
    out = LabelAnnotator().annotate(frame, _result(_lesion()))
    changed = np.argwhere(out.any(axis=2))
    assert changed[:, 0].max() < 80 and changed[:, 1].min() >= 100  # just above the box (y0 = 80), from x0 on


def test_the_heatmap_changes_only_the_lesion_box_and_most_where_the_map_is_high():
    frame = np.full((H, W, 3), 128, np.uint8)
    out = HeatmapAnnotator(opacity=0.6).annotate(frame, _result(_lesion()))
    outside = np.ones((H, W), bool)
    outside[80:200, 100:220] = False  # the lesion box; the crop around it (60:220, 80:240) stays clear
    assert (out[outside] == 128).all()
    change = np.abs(out.astype(int) - 128).sum(axis=2)
    assert change[195, 215] > change[85, 105] + 50  # the map rises to 1 at the bottom right of the crop
    assert change[85, 105] == 0  # below the floor the heatmap is transparent: the skin shows as it is
    unweighted = HeatmapAnnotator(opacity=0.6, weighted=False).annotate(frame, _result(_lesion()))
    assert np.abs(unweighted[85, 105].astype(int) - 128).sum() > 30


def test_the_8_bit_blend_follows_the_float_blend_of_the_map_over_the_box():
    from edgeskin.annotate import _JET_RGB
    from edgeskin.core.cam import upsample_cam

    frame = _frame()
    lesion = _lesion()
    opacity, floor = 0.6, 0.25
    out = HeatmapAnnotator(opacity=opacity, floor=floor).annotate(frame, _result(lesion))
    # Reference: the map resized to the crop (60:220, 80:240), the box's window, alpha from the map, float blend.
    cam = upsample_cam(lesion.cam, (160, 160))[20:140, 20:140]
    alpha = opacity * np.clip((cam - floor) / (1 - floor), 0, 1)[..., None]
    colour = _JET_RGB[np.rint(cam * 255).astype(int), 0].astype(float)
    expected = (1 - alpha) * frame[80:200, 100:220] + alpha * colour
    assert np.abs(out[80:200, 100:220] - expected).max() <= 4  # 8-bit map levels and rounding
    assert np.abs(out[80:200, 100:220] - expected).mean() < 1.0


def test_the_heatmap_work_images_kept_between_frames_leak_into_no_result():
    """The blend reuses per-thread work images: a later, larger or smaller frame must not change an earlier
    result, and threads drawing at once must get what one thread gets."""
    from concurrent.futures import ThreadPoolExecutor

    frame = _frame()
    small = _result(_lesion())
    large = _result(_lesion(box=(20, 20, 380, 280), crop_box=(0, 0, 400, 300)))
    first = annotate(frame, small)
    kept = first.copy()
    big = annotate(frame, large)
    np.testing.assert_array_equal(first, kept)
    np.testing.assert_array_equal(annotate(frame, small), kept)
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda r: annotate(frame, r), [small, large] * 8))
    for i, out in enumerate(outs):
        np.testing.assert_array_equal(out, kept if i % 2 == 0 else big)


def test_map_values_outside_0_1_are_clipped_not_folded():
    frame = np.full((H, W, 3), 128, np.uint8)
    negative = _lesion()
    negative = Lesion(**{**negative.__dict__, "cam": np.full((4, 4), -0.9, np.float32)})
    np.testing.assert_array_equal(HeatmapAnnotator().annotate(frame, _result(negative)), frame)  # below the floor


def test_label_text_is_rendered_once_and_pasted_after():
    from edgeskin.annotate import _text_patch

    frame = _frame()
    first = LabelAnnotator().annotate(frame, _result(_lesion()))
    before = _text_patch.cache_info()
    again = LabelAnnotator().annotate(frame, _result(_lesion()))
    after = _text_patch.cache_info()
    np.testing.assert_array_equal(first, again)
    assert after.hits == before.hits + 1 and after.misses == before.misses


def test_no_heatmap_without_a_map_or_with_zero_opacity():
    frame = _frame()
    np.testing.assert_array_equal(HeatmapAnnotator().annotate(frame, _result(_lesion(cam=False))), frame)
    np.testing.assert_array_equal(HeatmapAnnotator(opacity=0.0).annotate(frame, _result(_lesion())), frame)
    with pytest.raises(ConfigError, match="opacity"):
        HeatmapAnnotator(opacity=1.5)


def test_the_banner_is_at_the_bottom_and_messages_at_the_top():
    frame = np.full((H, W, 3), 255, np.uint8)
    out = BannerAnnotator().annotate(frame, _result(messages=("no lesion found",)))
    assert (out[-5:] != 255).any() and (out[:5] != 255).any()
    assert (out[H // 2] == 255).all()
    quiet = BannerAnnotator(show_messages=False).annotate(frame, _result(messages=("no lesion found",)))
    assert (quiet[:5] == 255).all()


def test_the_banner_writes_its_notice_by_default_not_a_diagnosis():
    frame = np.full((H, W, 3), 255, np.uint8)
    default = BannerAnnotator(show_messages=False).annotate(frame)
    np.testing.assert_array_equal(default, BannerAnnotator(text=NOT_A_DIAGNOSIS, show_messages=False).annotate(frame))
    assert not np.array_equal(default, BannerAnnotator(text="research use", show_messages=False).annotate(frame))
    assert (BannerAnnotator(text="", show_messages=False).annotate(frame) == 255).all()  # no notice: no strip


def test_annotate_refuses_a_frame_of_another_size_and_non_rgb_frames():
    with pytest.raises(ImageError, match="400x300 frame"):
        annotate(np.zeros((100, 100, 3), np.uint8), _result(_lesion()))
    with pytest.raises(ImageError, match="RGB uint8"):
        BoxAnnotator().annotate(np.zeros((H, W), np.uint8), _result(_lesion()))


def test_annotate_options_turn_parts_off():
    frame = np.full((H, W, 3), 128, np.uint8)
    boxes_only = annotate(frame, _result(_lesion()), heatmap=False, labels=False, banner=False)
    np.testing.assert_array_equal(boxes_only, BoxAnnotator().annotate(frame, _result(_lesion())))


@pytest.mark.parametrize("opacity", [0.0, 0.5, 1.0])
def test_lesion_crop_heatmap_blends_the_map_over_the_whole_crop(opacity):
    frame = _frame()
    lesion = _lesion(cam=False)
    lesion = Lesion(**{**lesion.__dict__, "cam": np.eye(7, dtype=np.float32)})
    overlay = lesion_crop_heatmap(frame, lesion, opacity)
    crop = frame[60:220, 80:240]  # crop_box (80, 60, 240, 220)
    assert overlay.shape == crop.shape and overlay.dtype == np.uint8
    difference = np.abs(overlay.astype(int) - crop.astype(int)).mean()
    if opacity == 0.0:
        assert difference == 0
    else:
        assert difference > 10 * opacity
    if opacity == 1.0:  # the map alone: the diagonal is hot (red end of JET), the corners cold (blue end)
        assert overlay[80, 80, 0] > overlay[80, 80, 2] and overlay[5, 150, 2] > overlay[5, 150, 0]
    assert lesion_crop_heatmap(frame, _lesion(cam=False), 0.5) is None


def test_lesion_crop_heatmap_clips_a_crop_box_that_leaves_the_frame():
    lesion = _lesion(crop_box=(-40, -30, 120, 130))
    overlay = lesion_crop_heatmap(_frame(), lesion, 0.5)
    assert overlay.shape == (130, 120, 3)


def test_message_annotator_writes_its_lines_at_the_top_on_a_copy():
    frame = np.full((H, W, 3), 255, np.uint8)
    out = MessageAnnotator(("hold still", "too dark")).annotate(frame)
    assert (frame == 255).all()
    assert (out[:5] != 255).any() and (out[H // 2 :] == 255).all()
    two_lines = (out != 255).any(axis=(1, 2)).nonzero()[0].max()
    one_line = (MessageAnnotator(("hold still",)).annotate(frame) != 255).any(axis=(1, 2)).nonzero()[0].max()
    assert two_lines > one_line  # stacked, not overwritten
