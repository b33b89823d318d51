from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgeskin.core.preprocess import (
    OPS,
    PROFILES,
    PreprocessingProfile,
    PreprocessStep,
    clahe_lightness,
    denoise,
    get_profile,
    hair_mask,
    normalize,
    remove_hair,
    shades_of_gray,
)
from edgeskin.errors import ConfigError, ImageError

HAM_IMAGES = ["ISIC_0024306", "ISIC_0024485", "ISIC_0026192"]
PH2_IMAGES = ["IMD006", "IMD017"]


def read_rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def synthetic_skin(height: int = 224, width: int = 224, seed: int = 0) -> np.ndarray:
    """Pinkish skin with a soft gradient, mild texture and a brown blob lesion in the middle."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    skin = np.stack([215 - 20 * yy / height, 165 - 15 * xx / width, 150 + 0 * xx], axis=-1)
    skin += cv2.GaussianBlur(rng.normal(0, 4, (height, width, 3)).astype(np.float32), (5, 5), 0)
    r2 = ((xx - width / 2) / (0.25 * width)) ** 2 + ((yy - height / 2) / (0.2 * height)) ** 2
    lesion = np.clip(1.2 - r2, 0, 1)[..., None]
    skin = skin * (1 - 0.6 * lesion) + np.array([90, 55, 40], np.float32) * 0.6 * lesion
    return np.clip(skin, 0, 255).astype(np.uint8)


def draw_hair(image: np.ndarray, seed: int, count: int = 8, widths=(1, 3), shade=(10, 60)):
    """Draw dark straight and curved hairs; return the hairy image and the boolean mask of hair pixels."""
    rng = np.random.default_rng(seed)
    hairy, mask = image.copy(), np.zeros(image.shape[:2], np.uint8)
    height, width = image.shape[:2]
    for i in range(count):
        thickness = int(rng.integers(*widths))
        colour = tuple(int(v) for v in rng.integers(*shade, 3))
        start, end = rng.uniform(0, [width, height]), rng.uniform(0, [width, height])
        if i % 2:  # quadratic Bezier curve
            t = np.linspace(0, 1, 40)[:, None]
            bend = rng.uniform(0, [width, height])
            points = [((1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end).astype(np.int32)]
            cv2.polylines(hairy, points, False, colour, thickness, cv2.LINE_AA)
            cv2.polylines(mask, points, False, 255, thickness)
        else:
            a, b = tuple(int(v) for v in start), tuple(int(v) for v in end)
            cv2.line(hairy, a, b, colour, thickness, cv2.LINE_AA)
            cv2.line(mask, a, b, 255, thickness)
    return hairy, mask > 0


def hair_errors(clean, hairy, restored, hair, ring_px, region=None):
    """Mean absolute error to the clean image on hair pixels and on pixels away from any hair."""
    away = ~(cv2.dilate(hair.astype(np.uint8), np.ones((ring_px, ring_px), np.uint8)) > 0)
    if region is not None:
        away &= region
    err = np.abs(restored.astype(np.int16) - clean).mean(-1)
    before = np.abs(hairy.astype(np.int16) - clean).mean(-1)
    return before[hair].mean(), err[hair].mean(), err[away].mean()


# Thresholds from measurements (HAM10000 224x224, dark hairs 1-2 px): hair-pixel error drops from
# 83-136 to 4-7 gray levels (< 0.09 of before); pixels away from hairs change by 0.2-0.5 on average,
# while a 7x7 median blur changes them by 1.8-2.3 (see test_hair_metric_can_fail).
HAIR_KEPT_FRACTION = 0.15
AWAY_MAX_ERROR = 1.5


FILLS = ["inpaint", "closing"]


@pytest.mark.shared
@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("name", HAM_IMAGES)
def test_remove_hair_on_real_ham10000_image(shared_file, name, fill):
    clean = read_rgb(shared_file(f"data/ham10000/images/{name}.jpg"))
    hairy, hair = draw_hair(clean, seed=0)
    before, after, away = hair_errors(clean, hairy, remove_hair(hairy, fill=fill), hair, ring_px=5)
    assert before > 60  # the drawn hairs are really there
    assert after < HAIR_KEPT_FRACTION * before, f"hair error {before:.1f} -> {after:.1f}"
    assert away < AWAY_MAX_ERROR, f"pixels away from hair changed by {away:.2f} on average"


@pytest.mark.shared
@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("name", PH2_IMAGES)
def test_remove_hair_on_real_ph2_frame_keeps_lesion(shared_file, name, fill):
    """At 768x576 (kernel scaled up) thicker hairs go and the expert-segmented lesion changes little.

    Measured: hair error 69-118 -> 5-7 (inpaint) or 7-9 (closing); lesion pixels away from drawn
    hair change by about 3 (inpaint) or 4-5 (closing) on average, mostly the real hairs of these
    images being removed too.
    """
    clean = cv2.resize(read_rgb(shared_file(f"data/ph2/images/{name}.jpg")), (768, 576))
    lesion = cv2.imread(str(shared_file(f"data/ph2/masks/{name}_segmentation.png")), cv2.IMREAD_GRAYSCALE)
    lesion = cv2.resize(lesion, (768, 576), interpolation=cv2.INTER_NEAREST) > 0
    hairy, hair = draw_hair(clean, seed=1, count=10, widths=(2, 6))
    before, after, away = hair_errors(clean, hairy, remove_hair(hairy, fill=fill), hair, ring_px=9, region=lesion)
    assert after < 0.2 * before, f"hair error {before:.1f} -> {after:.1f}"
    assert away < 6.0, f"lesion pixels changed by {away:.2f} on average"


@pytest.mark.shared
def test_hair_metric_can_fail(shared_file):
    """The criteria above reject doing nothing and reject blurring everything."""
    clean = read_rgb(shared_file(f"data/ham10000/images/{HAM_IMAGES[0]}.jpg"))
    hairy, hair = draw_hair(clean, seed=0)
    before, after, _ = hair_errors(clean, hairy, hairy.copy(), hair, ring_px=5)
    assert after >= HAIR_KEPT_FRACTION * before
    _, _, away = hair_errors(clean, hairy, cv2.medianBlur(hairy, 7), hair, ring_px=5)
    assert away >= AWAY_MAX_ERROR


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("size", [(224, 224), (150, 300), (576, 768)])
def test_remove_hair_on_synthetic_skin(size, fill):
    clean = synthetic_skin(*size)
    scale = min(size) / 224
    hairy, hair = draw_hair(clean, seed=2, widths=(1, max(2, int(3 * scale))))
    before, after, away = hair_errors(clean, hairy, remove_hair(hairy, fill=fill), hair, ring_px=5)
    assert after < HAIR_KEPT_FRACTION * before and away < AWAY_MAX_ERROR
    assert hair_mask(hairy)[hair].mean() / 255 > 0.8  # most hair pixels are found


def test_remove_hair_rejects_unknown_fill():
    with pytest.raises(ConfigError, match="inpaint.*closing.*'blur'"):
        remove_hair(synthetic_skin(32, 32), fill="blur")


def test_remove_hair_without_hair_changes_nothing():
    flat = np.full((64, 64, 3), 180, np.uint8)
    out = remove_hair(flat)
    assert out is not flat
    np.testing.assert_array_equal(out, flat)


# --- colour constancy --------------------------------------------------------------------------------


def gray_deviation(image: np.ndarray) -> float:
    means = image.reshape(-1, 3).mean(0)
    return float(np.abs(means - means.mean()).max() / means.mean())


def chroma_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance between the chromaticities (r, g, b) / (r + g + b) of two images."""

    def chroma(image):
        pixels = image.astype(np.float64) + 1.0
        return pixels / pixels.sum(-1, keepdims=True)

    return float(np.abs(chroma(a) - chroma(b)).mean())


CASTS = [(1.0, 0.85, 0.6), (0.7, 0.9, 1.0), (0.8, 1.0, 0.75)]


@pytest.mark.parametrize("cast", CASTS)
def test_shades_of_gray_removes_colour_cast_synthetic(cast):
    clean = synthetic_skin()
    tinted = np.clip(clean * np.array(cast), 0, 255).astype(np.uint8)
    corrected = shades_of_gray(tinted, power=6)
    assert gray_deviation(corrected) < 0.5 * gray_deviation(tinted)
    # the same scene under two illuminants gets nearly the same colours (brightness may differ)
    assert chroma_distance(corrected, shades_of_gray(clean)) < 0.25 * chroma_distance(tinted, clean)


@pytest.mark.shared
@pytest.mark.parametrize("cast", CASTS)
def test_shades_of_gray_removes_colour_cast_real(shared_file, cast):
    clean = read_rgb(shared_file(f"data/ham10000/images/{HAM_IMAGES[1]}.jpg"))
    tinted = np.clip(clean * np.array(cast), 0, 255).astype(np.uint8)
    corrected = shades_of_gray(tinted)
    assert gray_deviation(corrected) < 0.5 * gray_deviation(tinted)
    assert chroma_distance(corrected, shades_of_gray(clean)) < 0.25 * chroma_distance(tinted, clean)


def test_shades_of_gray_matches_direct_formula():
    image = synthetic_skin(60, 80, seed=3)
    pixels = image.astype(np.float64)
    illuminant = np.mean(pixels**6, axis=(0, 1)) ** (1 / 6)
    gains = np.linalg.norm(illuminant) / (np.sqrt(3) * illuminant)
    expected = np.clip(np.rint(pixels * gains), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(shades_of_gray(image), expected)


@pytest.mark.parametrize("value", [0, 128, 255])
def test_shades_of_gray_leaves_neutral_images(value):
    flat = np.full((16, 16, 3), value, np.uint8)
    np.testing.assert_array_equal(shades_of_gray(flat), flat)


# --- CLAHE, denoise, normalise -----------------------------------------------------------------------


def lightness(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32)


@pytest.mark.parametrize("source", ["synthetic", pytest.param("real", marks=pytest.mark.shared)])
def test_clahe_raises_contrast_of_low_contrast_image(request, source):
    if source == "real":
        image = read_rgb(request.getfixturevalue("shared_file")(f"data/ham10000/images/{HAM_IMAGES[2]}.jpg"))
    else:
        image = synthetic_skin()
    flat = np.clip(128 + (image.astype(np.float32) - image.mean()) * 0.25, 0, 255).astype(np.uint8)
    out = clahe_lightness(flat, clip_limit=2.0, tile_grid=8)
    assert lightness(out).std() > 1.3 * lightness(flat).std()  # measured 1.6x on the real image
    # chroma is left alone: only L is equalised
    ab_in = cv2.cvtColor(flat, cv2.COLOR_RGB2LAB)[..., 1:].astype(int)
    ab_out = cv2.cvtColor(out, cv2.COLOR_RGB2LAB)[..., 1:].astype(int)
    assert np.abs(ab_in - ab_out).mean() < 2.0


def test_clahe_accepts_tile_pair_and_higher_clip_gives_more_contrast():
    flat = np.clip(120 + (synthetic_skin().astype(np.float32) - 150) * 0.2, 0, 255).astype(np.uint8)
    low = clahe_lightness(flat, clip_limit=1.0, tile_grid=(4, 4))
    high = clahe_lightness(flat, clip_limit=4.0, tile_grid=(4, 4))
    assert lightness(high).std() > lightness(low).std()


def salt_and_pepper(image: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = image.copy()
    hit = rng.random(image.shape[:2]) < fraction
    noisy[hit] = rng.choice([0, 255], size=(int(hit.sum()), 1)).astype(np.uint8)
    return noisy


@pytest.mark.parametrize("fraction", [0.02, 0.05, 0.1])
def test_median_denoise_reduces_salt_and_pepper_error(fraction):
    clean = synthetic_skin(seed=4)
    noisy = salt_and_pepper(clean, fraction, seed=5)
    before = np.abs(noisy.astype(int) - clean).mean()
    after = np.abs(denoise(noisy, "median", 3).astype(int) - clean).mean()
    assert after < 0.3 * before, f"{before:.2f} -> {after:.2f}"


def test_bilateral_denoise_reduces_gaussian_noise_error():
    clean = synthetic_skin(seed=6)
    noisy = np.clip(clean + np.random.default_rng(7).normal(0, 10, clean.shape), 0, 255).astype(np.uint8)
    before = np.abs(noisy.astype(int) - clean).mean()
    after = np.abs(denoise(noisy, "bilateral", 5, sigma_color=30, sigma_space=5).astype(int) - clean).mean()
    assert after < 0.7 * before, f"{before:.2f} -> {after:.2f}"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"method": "gaussian"}, "median"), ({"ksize": 4}, "odd"), ({"method": "bilateral", "ksize": 0}, ">= 1")],
)
def test_denoise_rejects_bad_options(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        denoise(synthetic_skin(32, 32), **kwargs)


@pytest.mark.parametrize(
    ("mean", "std", "pixel", "expected"),
    [
        (0, 1, (10, 20, 30), (10, 20, 30)),
        (127.5, 127.5, (0, 255, 127.5), (-1, 1, 0)),
        ([10, 20, 30], [2, 4, 5], (10, 28, 40), (0, 2, 2)),
    ],
)
def test_normalize(mean, std, pixel, expected):
    image = np.array(pixel, np.float32).reshape(1, 1, 3)
    out = normalize(image, mean, std)
    assert out.dtype == np.float32 and out.shape == (1, 1, 3)
    np.testing.assert_allclose(out[0, 0], expected, atol=1e-6)


@pytest.mark.parametrize(("mean", "std"), [(0, 0), (0, [1, 0, 1]), ([1, 2], 1), (np.nan, 1)])
def test_normalize_rejects_bad_statistics(mean, std):
    with pytest.raises(ConfigError):
        normalize(np.zeros((2, 2, 3), np.uint8), mean, std)


# --- invariants on any image -------------------------------------------------------------------------

ALL_OPS = [(name, {}) for name in OPS] + [
    ("denoise", {"method": "bilateral", "ksize": 5}),
    ("remove_hair", {"fill": "closing"}),
]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hnp.arrays(np.uint8, st.tuples(st.integers(1, 80), st.integers(1, 80), st.just(3))),
    st.sampled_from(ALL_OPS),
)
def test_every_op_keeps_shape_and_dtype(image, op_and_params):
    name, params = op_and_params
    out = OPS[name](image, **params)
    assert out.shape == image.shape and out.dtype == np.uint8


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize(
    "bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 3), np.float32)]
)
def test_every_op_rejects_non_rgb_uint8(name, bad):
    with pytest.raises(ImageError, match=r"expected an RGB uint8 image of shape \(H, W, 3\)"):
        OPS[name](bad)


@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_do_not_modify_their_input(name):
    image = draw_hair(synthetic_skin(64, 64), seed=0)[0]
    copy = image.copy()
    OPS[name](image)
    np.testing.assert_array_equal(image, copy)


# --- profiles ----------------------------------------------------------------------------------------


def test_colour_profile_json_schema_is_exact():
    assert get_profile("colour").to_dict() == {"name": "colour", "steps": [{"op": "shades_of_gray", "power": 6}]}
    assert get_profile("none").to_dict() == {"name": "none", "steps": []}
    assert [s["op"] for s in get_profile("dermoscopy").to_dict()["steps"]] == [
        "remove_hair",
        "denoise",
        "shades_of_gray",
        "clahe",
    ]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profiles_round_trip_through_json(name):
    profile = get_profile(name)
    again = PreprocessingProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert again == profile and hash(again) == hash(profile)


def test_tile_grid_pair_survives_json():
    profile = PreprocessingProfile("custom", [("clahe", {"clip_limit": 3.0, "tile_grid": [4, 6]})])
    again = PreprocessingProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    assert again == profile
    assert again.to_dict()["steps"][0]["tile_grid"] == [4, 6]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_apply_equals_running_the_steps(name):
    image = draw_hair(synthetic_skin(96, 128), seed=1)[0]
    expected = image
    for step in get_profile(name).steps:
        expected = OPS[step.op](expected, **step.params)
    out = get_profile(name).apply(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_dermoscopy_profile_composes_the_four_ops_in_order():
    image = draw_hair(synthetic_skin(), seed=3)[0]
    manual = clahe_lightness(shades_of_gray(denoise(remove_hair(image), "median", 3), 6), 2.0, 8)
    np.testing.assert_array_equal(get_profile("dermoscopy").apply(image), manual)


def test_none_profile_returns_the_input():
    image = synthetic_skin(32, 32)
    assert get_profile("none").apply(image) is image


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: PreprocessStep("sharpen", {}), "remove_hair, denoise, shades_of_gray, clahe.*'sharpen'"),
        (lambda: PreprocessStep("denoise", {"sigma": 3}), "expected parameters among .*ksize.*got sigma"),
        (lambda: get_profile("fancy"), "none, colour, fast, dermoscopy.*'fancy'"),
        (lambda: PreprocessingProfile.from_dict({"name": "x", "steps": [{"power": 6}]}), "op"),
        (lambda: PreprocessingProfile.from_dict({"name": "x", "steps": {"op": "clahe"}}), "expected a list"),
        (lambda: PreprocessingProfile.from_dict({"steps": []}), "name"),
        (lambda: PreprocessingProfile.from_dict({"name": "x", "step": []}), "name"),
        (lambda: PreprocessingProfile("", ()), "non-empty"),
        (lambda: PreprocessingProfile("x", ["clahe"]), "PreprocessStep or"),
    ],
)
def test_bad_profiles_fail_when_built(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_profile_apply_rejects_bad_image():
    with pytest.raises(ImageError, match="profile 'colour'"):
        get_profile("colour").apply(np.zeros((8, 8, 3), np.float32))
