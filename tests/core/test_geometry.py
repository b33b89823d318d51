from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeskin.core.boxes import mask_to_box
from edgeskin.core.geometry import ImageTransform, letterbox, resize_into, resize_stretch, resize_to_input
from edgeskin.errors import ConfigError, ImageError

# (frame height, frame width), model input (height, width)
SIZES = [
    ((576, 768), (320, 320)),
    ((768, 576), (320, 320)),
    ((450, 600), (224, 224)),
    ((100, 100), (224, 224)),  # upscaling, no padding
    ((480, 640), (256, 320)),  # non-square input
    ((37, 301), (64, 64)),  # odd sizes, tiny content height
]


def frame_with_box(frame_hw, box):
    frame = np.zeros((*frame_hw, 3), np.uint8)
    x0, y0, x1, y1 = box
    frame[y0:y1, x0:x1] = 255
    return frame


@pytest.mark.parametrize(("frame_hw", "input_hw"), SIZES)
def test_letterbox_shape_centred_padding_and_transform(frame_hw, input_hw):
    frame = np.full((*frame_hw, 3), 7, np.uint8)
    out, t = letterbox(frame, input_hw, pad_value=114)
    assert out.shape == (*input_hw, 3) and out.dtype == np.uint8
    assert t.src_size == (frame_hw[1], frame_hw[0]) and t.dst_size == (input_hw[1], input_hw[0])
    content = mask_to_box(out[..., 0] == 7)
    new_w, new_h = content[2] - content[0], content[3] - content[1]
    np.testing.assert_allclose([t.pad_x, t.pad_y], content[:2])
    np.testing.assert_allclose([t.scale_x, t.scale_y], [new_w / frame_hw[1], new_h / frame_hw[0]])
    # aspect kept (to rounding) and padding centred (the two sides differ by at most one pixel)
    assert abs(new_w / new_h - frame_hw[1] / frame_hw[0]) <= frame_hw[1] / frame_hw[0] * (1 / new_h + 1 / new_w) + 1e-9
    assert abs((input_hw[1] - content[2]) - content[0]) <= 1 and abs((input_hw[0] - content[3]) - content[1]) <= 1
    assert np.all(out[out[..., 0] != 7] == 114)


@pytest.mark.parametrize(("frame_hw", "input_hw"), SIZES)
def test_letterboxed_object_maps_back_to_its_frame_box(frame_hw, input_hw):
    h, w = frame_hw
    box = (w // 5, h // 4, w // 5 + max(4, w // 3), h // 4 + max(4, h // 2))
    out, t = letterbox(frame_with_box(frame_hw, box), input_hw, pad_value=0)
    found_in_input = mask_to_box(out[..., 0] > 127)  # where the object landed in the model input
    in_frame = t.to_frame(found_in_input)
    tolerance = 1.0 / min(t.scale_x, t.scale_y) + 0.5  # one input pixel, in frame pixels
    np.testing.assert_allclose(in_frame, box, atol=tolerance)


@pytest.mark.parametrize(("frame_hw", "input_hw"), SIZES)
@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_to_input_and_to_frame_round_trip(frame_hw, input_hw, mode):
    h, w = frame_hw
    _, t = resize_to_input(np.zeros((h, w, 3), np.uint8), input_hw, mode)
    boxes = np.array([[0, 0, w, h], [w * 0.1, h * 0.2, w * 0.6, h * 0.9], [3, 5, 7, 9]], np.float32)
    np.testing.assert_allclose(t.to_frame(t.to_input(boxes)), boxes, rtol=1e-5, atol=1e-3)
    content = [t.pad_x, t.pad_y, t.pad_x + w * t.scale_x, t.pad_y + h * t.scale_y]
    np.testing.assert_allclose(t.to_input(boxes[0]), content, atol=1e-3)


def test_to_frame_clips_detections_in_the_padding():
    _, t = letterbox(np.zeros((576, 768, 3), np.uint8), (320, 320))  # pad_y = 40
    assert t.pad_y == 40
    np.testing.assert_allclose(t.to_frame([[-10, 0, 330, 20]]), [[0, 0, 768, 0]])


def test_resize_stretch_transform():
    frame = np.zeros((100, 200, 3), np.uint8)
    out, t = resize_stretch(frame, (50, 40))
    assert out.shape == (50, 40, 3)
    assert t == ImageTransform(0.2, 0.5, 0.0, 0.0, (200, 100), (40, 50))
    np.testing.assert_allclose(t.to_frame([10, 10, 20, 20]), [50, 20, 100, 40])


@pytest.mark.parametrize("shape", [(60, 80), (60, 80, 1), (60, 80, 4)])
def test_letterbox_other_channel_counts(shape):
    out, _ = letterbox(np.zeros(shape, np.uint8), (32, 32))
    assert out.shape == (32, 32, *shape[2:])


def test_same_size_needs_no_resize():
    frame = np.random.default_rng(0).integers(0, 255, (64, 48, 3), dtype=np.uint8)
    out, t = letterbox(frame, (64, 48))
    np.testing.assert_array_equal(out, frame)
    assert (t.scale_x, t.scale_y, t.pad_x, t.pad_y) == (1, 1, 0, 0)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: resize_to_input(np.zeros((8, 8, 3), np.uint8), (4, 4), "crop"), ConfigError, "stretch, letterbox"),
        (lambda: letterbox(np.zeros((0, 8, 3), np.uint8), (4, 4)), ImageError, "non-empty"),
        (lambda: letterbox(np.zeros((8, 8, 3), np.uint8), (0, 4)), ConfigError, "positive"),
        (lambda: resize_stretch(np.zeros(8, np.uint8), (4, 4)), ImageError, r"\(H, W\)"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 400), st.integers(1, 400), st.integers(8, 320), st.integers(8, 320))
def test_letterbox_property(h, w, in_h, in_w):
    out, t = letterbox(np.zeros((h, w, 3), np.uint8), (in_h, in_w))
    assert out.shape == (in_h, in_w, 3)
    content_w, content_h = w * t.scale_x, h * t.scale_y
    assert t.pad_x >= 0 and t.pad_y >= 0
    assert t.pad_x + content_w <= in_w + 1e-6 and t.pad_y + content_h <= in_h + 1e-6
    full = t.to_frame([[0, 0, in_w, in_h]])[0]
    np.testing.assert_allclose(full, [0, 0, w, h], rtol=1e-5)


@pytest.mark.parametrize(("frame_hw", "input_hw"), [*SIZES, ((320, 320), (320, 320)), ((240, 320), (320, 320))])
@pytest.mark.parametrize("mode", ["letterbox", "stretch"])
@pytest.mark.parametrize("channels", [3, 1, None])
def test_resize_into_writes_what_resize_to_input_returns(frame_hw, input_hw, mode, channels):
    shape = frame_hw if channels is None else (*frame_hw, channels)
    image = np.random.default_rng(7).integers(0, 256, shape, dtype=np.uint8)
    want, want_transform = resize_to_input(image, input_hw, mode)
    # A dirty buffer: every pixel, the padding too, must be written.
    out = np.full((*input_hw, *shape[2:]), 7, np.uint8)
    transform = resize_into(image, out, mode)
    np.testing.assert_array_equal(out, want)
    assert transform == want_transform


def test_resize_into_writes_into_a_view_of_a_larger_buffer():
    image = np.random.default_rng(8).integers(0, 256, (768, 576, 3), dtype=np.uint8)  # portrait: pillarbox
    batch = np.zeros((2, 320, 320, 3), np.uint8)
    resize_into(image, batch[1], "letterbox")
    np.testing.assert_array_equal(batch[1], letterbox(image, (320, 320))[0])
    assert not batch[0].any()


def test_resize_into_refuses_an_output_of_another_kind():
    image = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ImageError, match="expected an output"):
        resize_into(image, np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageError, match="expected an output"):
        resize_into(image, np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ConfigError, match="resize mode"):
        resize_into(image, np.zeros((4, 4, 3), np.uint8), "crop")  # type: ignore[arg-type]
