"""Classical lesion localisation (numpy/OpenCV only): the detector's baseline and fallback.

Two levels:

* :func:`classical_box` is the plain baseline (Otsu threshold on a blurred grey image + largest dark
  component). It is what the learned detector is compared against.
* :func:`segment_lesion` / :func:`lesion_box` is a more careful segmentation used to derive training
  boxes from lesion-centred dermoscopy crops (HAM10000) and as the runtime fallback: grey-world-style
  colour constancy, removal of the dark dermoscope vignette, Otsu on a darkness channel inside the field
  of view, morphology, hole filling, and a component choice that prefers large, central components that
  do not hug the image border.

Both work on RGB uint8 (H, W, 3) frames and return float32 pixel ``xyxy`` in the input frame, or None.
They assume the lesion is darker than the surrounding skin, which holds for pigmented lesions.
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeskin.core.boxes import mask_to_box

_WORK_SIDE = 256  # long side of the internal working image; boxes are scaled back to the frame


def _check_rgb(image_rgb: np.ndarray) -> None:
    if not isinstance(image_rgb, np.ndarray) or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        shape = getattr(image_rgb, "shape", None)
        raise ValueError(f"expected an RGB uint8 image of shape (H, W, 3), got shape {shape}")
    if image_rgb.shape[0] < 8 or image_rgb.shape[1] < 8:
        raise ValueError(f"expected an image of at least 8x8 pixels, got {image_rgb.shape[1]}x{image_rgb.shape[0]}")


def _resize_long_side(image: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1.0:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def _scale_box(box: np.ndarray, scale: float, width: int, height: int) -> np.ndarray:
    out = box / scale
    out[[0, 2]] = np.clip(out[[0, 2]], 0, width)
    out[[1, 3]] = np.clip(out[[1, 3]], 0, height)
    return out.astype(np.float32)


def classical_box(image_rgb: np.ndarray) -> np.ndarray | None:
    """Baseline localiser: Otsu on the blurred grey image, then the largest dark component's box.

    Args:
        image_rgb: RGB uint8 (H, W, 3) frame.

    Returns:
        float32 ``[x0, y0, x1, y1]`` in frame pixels, or None when nothing dark enough was found.
    """
    _check_rgb(image_rgb)
    height, width = image_rgb.shape[:2]
    small, scale = _resize_long_side(image_rgb, _WORK_SIDE)
    grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), (5, 5), 0)
    _, dark = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    if count <= 1:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    box = mask_to_box(labels == largest)
    return None if box is None else _scale_box(box, scale, width, height)


def shades_of_gray(image_rgb: np.ndarray, power: float = 6.0) -> np.ndarray:
    """Shades-of-grey colour constancy (Finlayson & Trezzi): scale channels so their p-norm means match."""
    img = image_rgb.astype(np.float32)
    norm = np.power(np.mean(np.power(img, power), axis=(0, 1)), 1.0 / power)
    gain = norm.mean() / np.maximum(norm, 1e-6)
    return np.clip(img * gain, 0, 255).astype(np.uint8)


def field_of_view(grey: np.ndarray) -> np.ndarray:
    """Boolean mask of the lit field of view: excludes very dark regions connected to the image border.

    Dermoscopes leave a dark vignette in the corners; it is darker than any lesion's surroundings and
    would otherwise win the threshold.
    """
    level = 0.45 * float(np.percentile(grey, 90))
    very_dark = (grey < level).astype(np.uint8)
    count, labels = cv2.connectedComponents(very_dark, connectivity=8)
    border_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    vignette = np.isin(labels, border_labels[border_labels > 0])
    # Only a component reaching a corner region counts as vignette (a dark lesion touching one edge is not).
    h, w = grey.shape
    corner = np.zeros_like(vignette)
    ch, cw = max(1, h // 8), max(1, w // 8)
    for ys, xs in (
        (slice(0, ch), slice(0, cw)),
        (slice(0, ch), slice(w - cw, w)),
        (slice(h - ch, h), slice(0, cw)),
        (slice(h - ch, h), slice(w - cw, w)),
    ):
        corner[ys, xs] = True
    keep = np.zeros_like(vignette)
    for label in border_labels[border_labels > 0]:
        component = labels == label
        if (component & corner).any():
            keep |= component
    fov = ~keep
    if fov.mean() < 0.3:  # implausible: treat the whole frame as the field of view
        return np.ones_like(fov)
    return fov


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros(mask.shape, np.uint8)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


def segment_lesion(image_rgb: np.ndarray, work_side: int = _WORK_SIDE) -> np.ndarray | None:
    """Segment the main pigmented lesion of a dermoscopy-like image.

    Args:
        image_rgb: RGB uint8 (H, W, 3) frame.
        work_side: Long side of the internal working image.

    Returns:
        Boolean mask of shape (h, w) of the working image (long side ``work_side``), or None when no
        plausible lesion was found. Use :func:`lesion_box` for a box in frame pixels.
    """
    _check_rgb(image_rgb)
    small, _ = _resize_long_side(image_rgb, work_side)
    h, w = small.shape[:2]
    balanced = shades_of_gray(cv2.GaussianBlur(small, (0, 0), 2.0))
    lab = cv2.cvtColor(balanced, cv2.COLOR_RGB2LAB)
    lightness = lab[..., 0]
    fov = field_of_view(lightness)
    # Darkness plus a little of the "brown-ness" (b*): nevi are darker and browner than skin.
    chroma_b = lab[..., 2].astype(np.float32) - 128.0
    channel = (255.0 - lightness.astype(np.float32)) + 0.5 * chroma_b
    channel = cv2.normalize(channel, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    values = channel[fov]
    if values.size < 16 or int(values.max()) - int(values.min()) < 8:
        return None
    threshold, _ = cv2.threshold(values.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = ((channel > threshold) & fov).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, w // 40) | 1,) * 2)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel, iterations=2)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return None
    best, best_score = 0, 0.0
    diag = float(np.hypot(w, h))
    for label in range(1, count):
        area = float(stats[label, cv2.CC_STAT_AREA])
        if area < 0.002 * w * h:
            continue
        x, y, bw, bh = stats[label, :4]
        touches = (x == 0) + (y == 0) + (x + bw >= w) + (y + bh >= h)
        distance = float(np.hypot(centroids[label][0] - w / 2, centroids[label][1] - h / 2)) / diag
        score = area * np.exp(-((distance / 0.25) ** 2)) * (0.5**touches)
        if score > best_score:
            best, best_score = label, score
    if best == 0:
        return None
    return _fill_holes(labels == best)


def lesion_box(image_rgb: np.ndarray) -> np.ndarray | None:
    """Box of :func:`segment_lesion` in frame pixels: float32 ``[x0, y0, x1, y1]`` or None."""
    mask = segment_lesion(image_rgb)
    if mask is None:
        return None
    box = mask_to_box(mask)
    if box is None:
        return None
    scale = mask.shape[1] / image_rgb.shape[1]
    return _scale_box(box, scale, image_rgb.shape[1], image_rgb.shape[0])


__all__ = ["classical_box", "field_of_view", "lesion_box", "segment_lesion", "shades_of_gray"]
