"""Dermoscopy preprocessing: hair removal, denoising, colour constancy, contrast, normalisation.

Every operation takes an RGB uint8 (H, W, 3) image of any size and returns a new RGB uint8 image of
the same shape. A :class:`PreprocessingProfile` composes operations by name; it is stored in the model
spec (``"preprocessing"``) so training and the runtime run the same code on the same pixels.
Profiles are meant for the model-input-sized image (after resize or crop), which keeps them cheap.
"""

from __future__ import annotations

import decimal
import functools
import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np

from edgeskin.errors import ConfigError, ImageError

__all__ = [
    "hair_mask",
    "remove_hair",
    "denoise",
    "shades_of_gray",
    "clahe_lightness",
    "normalize",
    "OPS",
    "PreprocessStep",
    "PreprocessingProfile",
    "PROFILES",
    "get_profile",
]

# Hair removal sizes are given for a dermoscopic frame with this short side (768x576, the PH2 and
# dermatoscope-camera scale) and scaled with the actual short side, so a 224x224 model input and a
# full frame remove the same hairs.
HAIR_REFERENCE_SIDE = 576


def _check_rgb(image: np.ndarray, op: str) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ImageError(f"{op}: expected an RGB uint8 image of shape (H, W, 3), got {got}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"{op}: expected a non-empty image, got shape {image.shape}")


def _odd(value: float, minimum: int = 3) -> int:
    size = max(minimum, int(round(value)))
    return size if size % 2 else size + 1


def _scaled(value: float, image: np.ndarray) -> float:
    return value * min(image.shape[:2]) / HAIR_REFERENCE_SIDE


def hair_mask(image: np.ndarray, kernel_size: int = 17, threshold: int = 10, dilate: int = 1) -> np.ndarray:
    """Mask of thin dark structures (hairs) by a morphological black-hat, the DullRazor idea.

    The black-hat (closing minus image) of the grayscale image is large where a dark structure is
    narrower than the kernel; thresholding it gives the hair mask, which is then dilated a little to
    cover the hair's soft edges. The grayscale image is first smoothed with a 3x3 Gaussian: without
    it, JPEG and sensor noise in skin texture passes the threshold (on real PH2 frames about half the
    lesion pixels), and inpainting them blurs the lesion and costs time.

    Args:
        image: RGB uint8 (H, W, 3).
        kernel_size: Black-hat kernel side in pixels for a 576-pixel short side (a 768x576 frame);
            scaled with the image's short side (17 → 7 at 224x224) and kept odd, at least 3.
        threshold: Minimum black-hat response (gray levels) counted as hair.
        dilate: Dilation iterations with a 3x3 kernel (0: none).

    Returns:
        uint8 (H, W) mask, 255 on hair and 0 elsewhere.
    """
    _check_rgb(image, "hair_mask")
    if kernel_size < 1 or threshold < 0 or dilate < 0:
        raise ConfigError(
            f"hair_mask: expected kernel_size >= 1, threshold >= 0, dilate >= 0, "
            f"got {kernel_size}, {threshold}, {dilate}"
        )
    gray = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (3, 3), 0)
    k = _odd(_scaled(kernel_size, image))
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    blackhat = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, kernel)
    _, mask = cv2.threshold(blackhat, threshold, 255, cv2.THRESH_BINARY)
    if dilate:
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=dilate)
    return mask


HAIR_FILLS = ("inpaint", "closing")


def remove_hair(
    image: np.ndarray,
    kernel_size: int = 17,
    threshold: int = 10,
    inpaint_radius: int = 3,
    dilate: int = 1,
    fill: str = "inpaint",
) -> np.ndarray:
    """Remove hairs: detect them with :func:`hair_mask` and fill them from the surrounding skin.

    ``fill="inpaint"`` (DullRazor-style) uses OpenCV's Telea inpainting; its cost grows with the number
    of hair pixels (2-18 ms at 224x224, 0.1-0.35 s at 768x576 on one x86 core). ``fill="closing"``
    replaces hair pixels by the colour image's morphological closing with the same kernel, which
    removes dark thin structures: about 25x faster at 768x576, with slightly larger errors on
    big frames (measured on real PH2/HAM10000 images with synthetic hairs).

    Args:
        image: RGB uint8 (H, W, 3).
        kernel_size: See :func:`hair_mask`.
        threshold: See :func:`hair_mask`.
        inpaint_radius: Inpainting neighbourhood in pixels for a 576-pixel short side, scaled like the
            kernel (at least 1). Used by ``fill="inpaint"``.
        dilate: See :func:`hair_mask`.
        fill: ``"inpaint"`` or ``"closing"``.

    Returns:
        RGB uint8 image of the same shape (a copy even when no hair is found).
    """
    if fill not in HAIR_FILLS:
        raise ConfigError(f"remove_hair: expected fill in {HAIR_FILLS}, got {fill!r}")
    if inpaint_radius < 1:
        raise ConfigError(f"remove_hair: expected inpaint_radius >= 1, got {inpaint_radius}")
    mask = hair_mask(image, kernel_size=kernel_size, threshold=threshold, dilate=dilate)
    if not mask.any():
        return image.copy()
    if fill == "closing":
        k = _odd(_scaled(kernel_size, image))
        closed = cv2.morphologyEx(image, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
        out = image.copy()
        hair = mask > 0
        out[hair] = closed[hair]
        return out
    radius = max(1, int(round(_scaled(inpaint_radius, image))))
    return cv2.inpaint(image, mask, radius, cv2.INPAINT_TELEA)


DENOISE_METHODS = ("median", "bilateral")


def denoise(
    image: np.ndarray,
    method: str = "median",
    ksize: int = 3,
    sigma_color: float = 25.0,
    sigma_space: float = 5.0,
) -> np.ndarray:
    """Reduce noise with a median filter (salt-and-pepper, sensor speckle) or an edge-keeping bilateral filter.

    Args:
        image: RGB uint8 (H, W, 3).
        method: ``"median"`` or ``"bilateral"``.
        ksize: Median aperture (odd, >= 3) or bilateral neighbourhood diameter (>= 1).
        sigma_color: Bilateral filter range sigma in gray levels.
        sigma_space: Bilateral filter spatial sigma in pixels.

    Returns:
        RGB uint8 image of the same shape.
    """
    _check_rgb(image, "denoise")
    if method == "median":
        if ksize < 3 or ksize % 2 == 0:
            raise ConfigError(f"denoise: expected an odd median ksize >= 3, got {ksize}")
        return cv2.medianBlur(image, ksize)
    if method == "bilateral":
        if ksize < 1:
            raise ConfigError(f"denoise: expected a bilateral ksize >= 1, got {ksize}")
        return cv2.bilateralFilter(image, ksize, sigma_color, sigma_space)
    raise ConfigError(f"denoise: expected method in {DENOISE_METHODS}, got {method!r}")


def shades_of_gray(image: np.ndarray, power: float = 6) -> np.ndarray:
    """Shades of Gray colour constancy (Finlayson & Trezzi 2004), as used for ISIC dermoscopy.

    The illuminant is estimated per channel as the Minkowski ``power``-norm of the pixel values,
    ``e_c = mean(I_c ** p) ** (1 / p)``; each channel is multiplied by ``|e| / (sqrt(3) * e_c)`` so the
    estimated illuminant becomes gray, and the result is clipped to [0, 255]. ``power=1`` is Gray World;
    large powers approach max-RGB. The norm is computed from per-channel histograms and the gains are
    applied with a lookup table, so the cost is two passes over the image.

    Bit-exact on every platform (issue 13): the histogram moments are exact integers, the roots and gains
    are computed in integers (Python's ``decimal`` for a fractional power) and the table in 32-bit fixed
    point, so no BLAS reduction, SIMD ``pow`` or libm rounding can move a table entry.

    Args:
        image: RGB uint8 (H, W, 3).
        power: Minkowski norm order, >= 1.

    Returns:
        RGB uint8 image of the same shape.
    """
    _check_rgb(image, "shades_of_gray")
    if not (isinstance(power, (int, float)) and math.isfinite(power) and power >= 1):
        raise ConfigError(f"shades_of_gray: expected a finite power >= 1, got {power!r}")
    weights, denominator = _sog_weights(float(power))
    pixels = image.shape[0] * image.shape[1]
    if pixels < 1 << 24:
        # calcHist counts in float32, exact below 2^24 pixels. Each moment sum(h_l * w_l) is taken on 24-bit
        # limbs of the weights in int64 (h < 2^24, so every partial sum stays below 2^56): exact, vectorised.
        hists = np.stack([cv2.calcHist([image], [c], None, [256], [0, 256]).ravel() for c in range(3)])
        parts = (hists.astype(np.int64) @ _sog_limbs(float(power))).tolist()
        moments = [sum(int(v) << (_LIMB_BITS * k) for k, v in enumerate(row)) for row in parts]
    else:  # bincount (slower) and Python integers beyond
        moments = []
        for c in range(3):
            hist = np.bincount(image[..., c].reshape(-1), minlength=256)
            moments.append(sum(int(h) * w for h, w in zip(hist.tolist(), weights, strict=True) if h))
    gains = _sog_gains(tuple(moments), pixels, denominator, float(power))
    if gains is None:
        return image.copy()
    levels = np.arange(256, dtype=np.int64)[:, None]
    lut = np.minimum((levels * np.asarray(gains, np.int64)[None, :] + (1 << 31)) >> 32, 255).astype(np.uint8)
    return cv2.LUT(image, lut.reshape(256, 1, 3))


@functools.lru_cache(maxsize=8)
def _sog_weights(power: float) -> tuple[tuple[int, ...], int]:
    """Integer weights w_l with w_l / denominator = (l / 255) ** power: exact for a whole power."""
    if power == int(power):
        p = int(power)
        return tuple(level**p for level in range(256)), 255**p
    with decimal.localcontext(_SOG_CONTEXT):
        exponent = decimal.Decimal(power)
        scale = decimal.Decimal(2) ** 62
        weights = tuple(
            int(((decimal.Decimal(level) / 255) ** exponent * scale).to_integral_value()) for level in range(256)
        )
    return weights, 1 << 62


_SOG_CONTEXT = decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN)
_LIMB_BITS = 24


@functools.lru_cache(maxsize=8)
def _sog_limbs(power: float) -> np.ndarray:
    """The weights of :func:`_sog_weights` split into 24-bit limbs, (256, limbs) int64 (read-only)."""
    weights, _ = _sog_weights(power)
    count = max(1, -(-max(weights).bit_length() // _LIMB_BITS))
    mask = (1 << _LIMB_BITS) - 1
    limbs = np.array([[(w >> (_LIMB_BITS * k)) & mask for k in range(count)] for w in weights], np.int64)
    limbs.setflags(write=False)
    return limbs


def _iroot(value: int, n: int) -> int:
    """floor(value ** (1 / n)) of a non-negative integer, exactly (Newton's method on integers)."""
    if value < 2 or n == 1:
        return value
    root = 1 << -(-value.bit_length() // n)  # >= the root
    while True:
        better = ((n - 1) * root + value // root ** (n - 1)) // n
        if better >= root:
            return root
        root = better


_SOG_FRACTION_BITS = 32


def _sog_gains(moments: tuple[int, ...], pixels: int, denominator: int, power: float) -> tuple[int, ...] | None:
    """Per-channel gains in 32-bit fixed point from the channels' moments (None: an all-black image).

    The gain of channel c is ``sqrt(mean_k e_k ** 2) / e_c`` with ``e_c = (moment_c / (pixels *
    denominator)) ** (1 / power)`` (the common factor 255 cancels), in integers for a whole power.
    """
    shift = _SOG_FRACTION_BITS
    if power == int(power):
        p = int(power)
        # e_c * 2^shift, floored; for a whole power the denominator is 255^p, which cancels with the 255.
        scaled = [_iroot((m << (shift * p)) // pixels, p) for m in moments]
    else:
        with decimal.localcontext(_SOG_CONTEXT):
            root = decimal.Decimal(1) / decimal.Decimal(power)
            scaled = [
                int((decimal.Decimal(m) / (decimal.Decimal(pixels) * denominator)) ** root * 255 * (1 << shift))
                if m
                else 0
                for m in moments
            ]
    total = sum(e * e for e in scaled)
    if total == 0:
        return None
    norm = math.isqrt((total << (2 * shift)) // 3)  # sqrt(mean e^2) * 2^(2 shift)
    return tuple((norm + e // 2) // e if e > 0 else 1 << shift for e in scaled)


def clahe_lightness(image: np.ndarray, clip_limit: float = 2.0, tile_grid: int | Sequence[int] = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of the L channel of Lab (colours kept).

    Args:
        image: RGB uint8 (H, W, 3).
        clip_limit: CLAHE clip limit (> 0); higher gives more contrast.
        tile_grid: Number of tiles per side, or ``(tiles_x, tiles_y)``.

    Returns:
        RGB uint8 image of the same shape.
    """
    _check_rgb(image, "clahe_lightness")
    grid = (
        (int(tile_grid), int(tile_grid))
        if isinstance(tile_grid, (int, np.integer))
        else tuple(int(t) for t in tile_grid)
    )
    if len(grid) != 2 or min(grid) < 1 or not clip_limit > 0:
        raise ConfigError(
            f"clahe_lightness: expected clip_limit > 0 and tile_grid >= 1 (or a pair), got {clip_limit}, {tile_grid!r}"
        )
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    clahe = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=grid)
    lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def normalize(image: np.ndarray, mean: float | Sequence[float], std: float | Sequence[float]) -> np.ndarray:
    """``(pixel - mean) / std`` on float pixels in [0, 255], per channel.

    Args:
        image: (H, W, C) or (N, H, W, C) array of pixels in [0, 255] (any numeric dtype).
        mean: Scalar or one value per channel.
        std: Scalar or one value per channel, all nonzero.

    Returns:
        float32 array of the same shape.
    """
    mean_arr = np.asarray(mean, dtype=np.float32)
    std_arr = np.asarray(std, dtype=np.float32)
    if np.any(std_arr == 0) or not (np.all(np.isfinite(mean_arr)) and np.all(np.isfinite(std_arr))):
        raise ConfigError(f"normalize: expected finite mean and nonzero finite std, got mean={mean}, std={std}")
    channels = image.shape[-1] if image.ndim >= 3 else 1
    for name, arr in (("mean", mean_arr), ("std", std_arr)):
        if arr.ndim > 1 or (arr.ndim == 1 and arr.size not in (1, channels)):
            raise ConfigError(
                f"normalize: expected a scalar {name} or one per channel ({channels}), got {arr.tolist()}"
            )
    return (image.astype(np.float32) - mean_arr) / std_arr


OPS: Mapping[str, Callable[..., np.ndarray]] = MappingProxyType(
    {
        "remove_hair": remove_hair,
        "denoise": denoise,
        "shades_of_gray": shades_of_gray,
        "clahe": clahe_lightness,
    }
)


def _freeze(value: Any) -> Any:
    """Lists (from JSON) become tuples so steps compare and hash by value."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class PreprocessStep:
    """One named operation of :data:`OPS` with its keyword parameters.

    Unknown operations and parameters fail when the step is built, not when it first runs.
    """

    op: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ConfigError(f"preprocessing op: expected one of {', '.join(OPS)}, got {self.op!r}")
        if not isinstance(self.params, Mapping):
            raise ConfigError(f"{self.op}: expected a mapping of parameters, got {type(self.params).__name__}")
        params = {str(k): _freeze(v) for k, v in self.params.items()}
        signature = inspect.signature(OPS[self.op])
        allowed = [name for name in signature.parameters if name != "image"]
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ConfigError(f"{self.op}: expected parameters among {', '.join(allowed)}, got {', '.join(unknown)}")
        object.__setattr__(self, "params", MappingProxyType(params))

    def __hash__(self) -> int:
        return hash((self.op, tuple(sorted(self.params.items()))))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return OPS[self.op](image, **self.params)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, **{k: _thaw(v) for k, v in self.params.items()}}


@dataclass(frozen=True)
class PreprocessingProfile:
    """A named sequence of preprocessing steps, serialised into the model spec.

    JSON form: ``{"name": "colour", "steps": [{"op": "shades_of_gray", "power": 6}]}``.

    Attributes:
        name: Profile name.
        steps: Steps applied in order. ``(op, params)`` pairs are accepted and converted.
    """

    name: str
    steps: tuple[PreprocessStep, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"profile name: expected a non-empty string, got {self.name!r}")
        object.__setattr__(self, "steps", tuple(_as_step(s) for s in self.steps))

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Run every step on an RGB uint8 (H, W, 3) image.

        Returns:
            The processed image; the input itself when the profile has no steps.
        """
        _check_rgb(image, f"profile {self.name!r}")
        for step in self.steps:
            image = step(image)
        return image

    __call__ = apply

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "steps": [step.to_dict() for step in self.steps]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessingProfile:
        """Build a profile from its JSON form, failing with :class:`ConfigError` on any malformed part."""
        if not isinstance(data, Mapping) or set(data) - {"name", "steps"} or "name" not in data:
            got = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise ConfigError(f'preprocessing profile: expected {{"name": str, "steps": [...]}}, got {got}')
        steps = data.get("steps", [])
        if not isinstance(steps, (list, tuple)):
            raise ConfigError(f"preprocessing profile steps: expected a list, got {type(steps).__name__}")
        parsed = []
        for i, step in enumerate(steps):
            if not isinstance(step, Mapping) or "op" not in step:
                raise ConfigError(f'preprocessing step {i}: expected {{"op": name, ...params}}, got {step!r}')
            params = {k: v for k, v in step.items() if k != "op"}
            parsed.append(PreprocessStep(step["op"], params))
        return cls(data["name"], tuple(parsed))


def _as_step(step: PreprocessStep | tuple[str, Mapping[str, Any]] | Iterable[Any]) -> PreprocessStep:
    if isinstance(step, PreprocessStep):
        return step
    try:
        op, params = step  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ConfigError(f"preprocessing step: expected PreprocessStep or (op, params), got {step!r}") from None
    return PreprocessStep(op, params)


PROFILES: Mapping[str, PreprocessingProfile] = MappingProxyType(
    {
        "none": PreprocessingProfile("none", ()),
        "colour": PreprocessingProfile("colour", (PreprocessStep("shades_of_gray", {"power": 6}),)),
        "fast": PreprocessingProfile("fast", (PreprocessStep("shades_of_gray", {"power": 6}),)),
        "dermoscopy": PreprocessingProfile(
            "dermoscopy",
            (
                PreprocessStep("remove_hair", {"kernel_size": 17, "threshold": 10, "inpaint_radius": 3}),
                PreprocessStep("denoise", {"method": "median", "ksize": 3}),
                PreprocessStep("shades_of_gray", {"power": 6}),
                PreprocessStep("clahe", {"clip_limit": 2.0, "tile_grid": 8}),
            ),
        ),
    }
)


def get_profile(name: str) -> PreprocessingProfile:
    """Return a built-in profile by name ("none", "colour", "dermoscopy", "fast")."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"preprocessing profile: expected one of {', '.join(PROFILES)}, got {name!r}") from None
