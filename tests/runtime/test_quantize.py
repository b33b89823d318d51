"""quantize()/dequantize(): round trips, rounding, clipping, integer widening, per-axis parameters."""

from __future__ import annotations

import numpy as np
import pytest

from edgeskin.errors import ConfigError
from edgeskin.runtime.interpreter import InputEncoder, TensorInfo, dequantize, quantize

# (dtype, scale, zero_point): the parameter kinds real models use
PER_TENSOR = [
    (np.int8, 1.0, -128),  # edgeskin models: int8 input = pixel - 128
    (np.int8, 0.00784286, -1),
    (np.int8, 0.00390625, -128),  # int8 softmax output
    (np.int8, 0.05, 0),
    (np.uint8, 0.0078125, 128),  # mobilenet_v2_1.0_224_quant input
    (np.uint8, 0.007843137718737125, 127),  # tf2 mobilenet ptq input
    (np.uint8, 0.00390625, 0),  # uint8 softmax output
    (np.uint8, 0.2, 3),
]


@pytest.mark.parametrize("dtype, scale, zero_point", PER_TENSOR)
def test_every_integer_survives_dequantize_then_quantize(dtype, scale, zero_point):
    info = np.iinfo(dtype)
    q = np.arange(info.min, info.max + 1).astype(dtype)
    x = dequantize(q, scale, zero_point)
    assert x.dtype == np.float32
    back = quantize(x, scale, zero_point, dtype)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, q)


@pytest.mark.parametrize("dtype, scale, zero_point", PER_TENSOR)
def test_float_round_trip_error_is_at_most_half_a_step(dtype, scale, zero_point):
    info = np.iinfo(dtype)
    low, high = (info.min - zero_point) * scale, (info.max - zero_point) * scale
    x = np.random.default_rng(0).uniform(low, high, size=2000)
    error = np.abs(dequantize(quantize(x, scale, zero_point, dtype), scale, zero_point) - x)
    assert error.max() <= scale / 2 * (1 + 1e-4)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_out_of_range_values_clip_to_the_dtype_range(dtype):
    info = np.iinfo(dtype)
    q = quantize(np.array([-1e6, 1e6]), 0.1, 0 if dtype == np.int8 else 128, dtype)
    assert q.tolist() == [info.min, info.max]


@pytest.mark.parametrize(
    "x, expected",
    [(0.5, 1), (-0.5, -1), (1.5, 2), (2.5, 3), (-2.5, -3), (0.49, 0), (-0.49, 0)],
)
def test_rounding_is_half_away_from_zero_like_tflite(x, expected):
    # np.rint would give 2 for 2.5 (half to even); TFLite's QUANTIZE kernel rounds away from zero.
    assert int(quantize(np.array([x]), 1.0, 0, np.int8)[0]) == expected


def test_uint8_is_widened_before_the_zero_point_is_subtracted():
    q = np.array([0, 1, 127, 128, 255], dtype=np.uint8)
    np.testing.assert_array_equal(dequantize(q, 1.0, 128), [-128, -127, -1, 0, 127])
    np.testing.assert_array_equal(dequantize(np.array([-128, 127], np.int8), 1.0, -128), [0, 255])


@pytest.mark.parametrize("dtype, zero_points", [(np.int8, [0, 3, -5]), (np.uint8, [128, 0, 10])])
@pytest.mark.parametrize("axis", [0, -1])
def test_per_axis_parameters_round_trip(dtype, zero_points, axis):
    scales = np.array([0.1, 0.02, 0.5])
    info = np.iinfo(dtype)
    shape = (3, 50) if axis == 0 else (50, 3)
    q = np.random.default_rng(1).integers(info.min, info.max + 1, size=shape).astype(dtype)
    x = dequantize(q, scales, zero_points, axis=axis)
    # each slice along the axis uses its own scale and zero point
    first = np.take(q, 0, axis=axis).astype(np.int32)
    np.testing.assert_allclose(np.take(x, 0, axis=axis), (first - zero_points[0]) * 0.1, rtol=1e-6)
    np.testing.assert_array_equal(quantize(x, scales, zero_points, dtype, axis=axis), q)


@pytest.mark.parametrize(
    "scale, dtype, message",
    [(0.0, np.int8, "positive"), (-1.0, np.int8, "positive"), (1.0, np.float32, "integer dtype")],
)
def test_invalid_quantization_parameters_raise(scale, dtype, message):
    with pytest.raises(ConfigError, match=message):
        quantize(np.zeros(3), scale, 0, dtype)


def test_tensor_info_quantizes_with_its_own_parameters_and_passes_floats_through():
    uint8 = TensorInfo("input", (1, 4), np.dtype(np.uint8), 0.0078125, 128, 0, scales=(0.0078125,), zero_points=(128,))
    assert uint8.is_quantized
    np.testing.assert_array_equal(uint8.quantize([-1.0, 0.0, 0.5, 1.0]), [0, 128, 192, 255])
    float32 = TensorInfo("input", (1, 4), np.dtype(np.float32), 0.0, 0, 0)
    assert not float32.is_quantized
    x = np.array([0.25, -3.0], np.float32)
    np.testing.assert_array_equal(float32.quantize(x), x)
    np.testing.assert_array_equal(float32.dequantize(x), x)


def _int8_input(scale: float, zero_point: int) -> TensorInfo:
    return TensorInfo(
        "image", (1, 16, 16, 3), np.dtype(np.int8), scale, zero_point, 0, scales=(scale,), zero_points=(zero_point,)
    )


@pytest.mark.parametrize(
    "scale, zero_point, mean, std, fast",
    [
        (1.0, -128, 0.0, 1.0, True),  # the scaling is in the graph: q = pixel - 128
        (0.9999987, -128, 0.0, 1.0, True),  # what the TFLite converter really emits for that graph
        (1 / 255, -128, 0.0, 255.0, True),  # a detector taking [0, 1] input
        (0.0078125, 0, 127.5, 127.5, False),  # a [-1, 1] input: q = pixel - 127.5 is not an integer shift
        (0.5, -128, 0.0, 1.0, False),
    ],
)
def test_input_encoder_fast_path_is_exact_for_every_pixel_value(scale, zero_point, mean, std, fast):
    info = _int8_input(scale, zero_point)
    encoder = InputEncoder(info, [mean] * 3, [std] * 3)
    assert (encoder.integer_shift is not None) == fast
    pixels = np.arange(256, dtype=np.uint8).repeat(3).reshape(16, 16, 3)
    reference = info.quantize(((pixels.astype(np.float32) - mean) / std)[np.newaxis])
    np.testing.assert_array_equal(encoder.encode(pixels), reference)


def test_input_encoder_reverses_channels_for_bgr_models():
    encoder = InputEncoder(_int8_input(1.0, -128), [0.0] * 3, [1.0] * 3, color_order="BGR")
    pixels = np.zeros((16, 16, 3), np.uint8)
    pixels[..., 0] = 200  # red
    encoded = encoder.encode(pixels)
    assert encoded[0, 0, 0, 2] == 200 - 128 and encoded[0, 0, 0, 0] == -128


@pytest.mark.parametrize("dtype, scale, zero_point", PER_TENSOR)
def test_a_tensors_dequantize_is_the_functions_to_the_bit(dtype, scale, zero_point):
    # TensorInfo sets a per-tensor quantization up once; the arithmetic must stay dequantize()'s and the
    # general per-axis path's (the mean of summed terms too).
    info = TensorInfo("t", (1, 4), np.dtype(dtype), scale, zero_point, 0, scales=(scale,), zero_points=(zero_point,))
    limits = np.iinfo(dtype)
    q = np.arange(limits.min, limits.max + 1).astype(dtype).reshape(-1, 4)
    np.testing.assert_array_equal(info.dequantize(q), dequantize(q, scale, zero_point))
    # Scalars take dequantize()'s short path; one-element sequences its general (per-axis) one: the same bits.
    np.testing.assert_array_equal(dequantize(q, scale, zero_point), dequantize(q, (scale,), (zero_point,)))
    general = TensorInfo(
        "t",
        (1, 4),
        np.dtype(dtype),
        scale,
        zero_point,
        0,
        scales=(scale, scale),
        zero_points=(zero_point, zero_point),
        quantized_dimension=0,
    )
    sums = q.astype(np.int32)[: len(q) // 2 * 2].reshape(2, -1, 4).sum(axis=0, dtype=np.int32)
    for out in (np.float32, np.float64):
        expected = (sums - np.float64(zero_point) * 2).astype(out) * np.asarray(np.float64(scale) / 2, out)
        np.testing.assert_array_equal(info.dequantize_mean(sums, 2, dtype=out), expected)
        np.testing.assert_array_equal(
            general.dequantize_mean(sums[:2], 2, dtype=out), info.dequantize_mean(sums[:2], 2, dtype=out)
        )
    floats = np.linspace(-3, 3, 8).reshape(2, 4)  # float values given to an integer tensor: the general path
    np.testing.assert_array_equal(info.dequantize(floats), dequantize(floats, scale, zero_point))
    np.testing.assert_array_equal(dequantize(floats, scale, zero_point), dequantize(floats, (scale,), (zero_point,)))
