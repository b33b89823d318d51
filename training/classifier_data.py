"""Training data of the classifier: multi-source lesion crops, source-balanced sampling, augmentation.

The runtime classifies the detector's box grown by a margin (:func:`edgeskin.core.crop.crop_with_margin`),
stretched to the model input (:func:`edgeskin.core.geometry.resize_to_input`, bit-exact), then the spec's
preprocessing profile. Training therefore sees the same: the expert mask's box of each image, grown by a
random margin around the runtime's and jittered like a detector box, cropped with the same function and
resized the same way; augmented (albumentations) as a camera, a dermatoscope and a JPEG encoder would change
it; and only then the profile, as on the device. A share of the samples is the whole frame (frame-filling
lesions, whole-image classification).

The HAM10000 and ISIC 2017/2018 copies here were resized to squares without keeping the aspect; images are
restored to 4:3 (the HAM10000 originals are 600x450; most ISIC 2017 originals are 4:3 or 3:2) before cropping,
so lesions have their real shape, as in a camera frame.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeskin.core.boxes import mask_to_box
from edgeskin.core.crop import crop_with_margin
from edgeskin.core.geometry import resize_to_input
from edgeskin.core.preprocess import get_profile
from edgeskin.datasets import LabelledImages
from edgeskin.image import read_image

log = logging.getLogger(__name__)

MASK_SUFFIX = "_segmentation.png"


@dataclass(frozen=True)
class CropImages:
    """Decoded frames (restored to 4:3, ``height`` rows) and the expert lesion box of each, in frame pixels."""

    frames: list[np.ndarray]
    boxes: np.ndarray  # (N, 4) float32; the whole frame where no mask was found
    masked: np.ndarray  # (N,) bool: the box comes from a mask


def load_frames(
    data: LabelledImages, mask_dirs: Sequence[str | Path], height: int = 240, aspect: float = 4 / 3, workers: int = 2
) -> CropImages:
    """Decode every image of ``data`` at 4:3 and find its mask box (``<id>_segmentation.png`` in ``mask_dirs``)."""
    width = round(height * aspect)
    dirs = [Path(d) for d in mask_dirs]

    def one(i: int) -> tuple[np.ndarray, np.ndarray | None]:
        image = read_image(data.paths[i])
        src_h, src_w = image.shape[:2]
        frame = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        for folder in dirs:
            path = folder / f"{data.image_ids[i]}{MASK_SUFFIX}"
            if path.is_file():
                mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
                box = mask_to_box(mask > 127) if mask is not None else None
                if box is not None:
                    scale = np.array([width / mask.shape[1], height / mask.shape[0]] * 2, np.float32)
                    return frame, box * scale
        return frame, None

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, range(len(data))))
    frames = [r[0] for r in results]
    masked = np.array([r[1] is not None for r in results])
    boxes = np.array(
        [r[1] if r[1] is not None else np.array([0, 0, width, height], np.float32) for r in results], np.float32
    )
    if (~masked).any():
        log.warning("%d of %d images have no lesion mask: their whole frame is the box", (~masked).sum(), len(data))
    return CropImages(frames, boxes, masked)


def lesion_crop(frame: np.ndarray, box: np.ndarray, size: int, margin: float = 0.15) -> np.ndarray:
    """The runtime's crop of ``box`` (margin, square) resized to the model input, bit-exact (uint8)."""
    crop, _ = crop_with_margin(frame, box, margin=margin)
    resized, _ = resize_to_input(crop, (size, size), "stretch")
    return resized


def random_crop(frame: np.ndarray, box: np.ndarray, size: int, crop: dict, rng: np.random.Generator) -> np.ndarray:
    """A detector-like crop: the box jittered and grown by a random margin; sometimes the whole frame."""
    if rng.random() < crop.get("whole_frame", 0.0):
        resized, _ = resize_to_input(frame, (size, size), "stretch")
        return resized
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    jitter = crop.get("jitter", 0.0)
    dx0, dy0, dx1, dy1 = rng.uniform(-jitter, jitter, 4) * np.array([w, h, w, h])
    jittered = np.array([x0 + dx0, y0 + dy0, x1 + dx1, y1 + dy1], np.float32)
    if jittered[2] - jittered[0] < 4 or jittered[3] - jittered[1] < 4:
        jittered = box
    lo, hi = crop.get("margin", (0.15, 0.15))
    return lesion_crop(frame, jittered, size, float(rng.uniform(lo, hi)))


def build_augment(config: dict):
    """The albumentations pipeline of ``config["augment"]`` (camera, illumination, optics and JPEG variation)."""
    import albumentations as A

    aug = config["augment"]
    steps = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=1.0)]
    if aug.get("rotate"):
        steps.append(
            A.Affine(rotate=(-aug["rotate"], aug["rotate"]), scale=tuple(aug.get("scale", (1.0, 1.0))),
                     border_mode=cv2.BORDER_REFLECT_101, p=0.5)
        )  # fmt: skip
    if aug.get("colour"):
        c = aug["colour"]
        steps.append(A.ColorJitter(brightness=c, contrast=c, saturation=c, hue=aug.get("hue", 0.03), p=0.8))
    if aug.get("gamma"):
        steps.append(A.RandomGamma(gamma_limit=tuple(aug["gamma"]), p=0.3))
    if aug.get("illumination"):
        steps.append(A.Illumination(intensity_range=(0.02, aug["illumination"]), p=0.3))
    if aug.get("blur"):
        steps.append(
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.Defocus(radius=(1, 3)), A.MotionBlur(blur_limit=(3, 5))],
                    p=aug["blur"])
        )  # fmt: skip
    if aug.get("noise"):
        steps.append(A.GaussNoise(std_range=(0.01, 0.04), p=aug["noise"]))
    if aug.get("jpeg"):
        steps.append(A.ImageCompression(quality_range=tuple(aug["jpeg"]), p=aug.get("jpeg_p", 0.5)))
    return A.Compose(steps, seed=None)


class SampleMaker:
    """One training sample: crop → augment → the runtime's preprocessing profile → float32 [0, 255]."""

    def __init__(self, images: CropImages, config: dict):
        self.images = images
        self.size = config["input_size"]
        self.crop = config["crop"]
        self.config = config
        self.profile = get_profile(config["profile"])
        # One albumentations pipeline per thread: seeding a shared one from two batch workers at once would
        # interleave their random streams, and the same seed would no longer give the same sample.
        self._local = threading.local()

    @property
    def augment(self):
        if not hasattr(self._local, "augment"):
            self._local.augment = build_augment(self.config)
        return self._local.augment

    def __call__(self, index: int, rng: np.random.Generator) -> np.ndarray:
        image = random_crop(self.images.frames[index], self.images.boxes[index], self.size, self.crop, rng)
        augment = self.augment
        augment.set_random_seed(int(rng.integers(2**31)))
        image = augment(image=image)["image"]
        return self.profile.apply(np.ascontiguousarray(image)).astype(np.float32)

    def validation(self, index: Sequence[int] | np.ndarray, margin: float) -> np.ndarray:
        """The runtime's view of each image: its mask box with the pipeline's margin, then the profile."""
        out = np.empty((len(index), self.size, self.size, 3), np.uint8)
        for row, i in enumerate(index):
            out[row] = self.profile.apply(lesion_crop(self.images.frames[i], self.images.boxes[i], self.size, margin))
        return out


def sampling_probabilities(sources: Sequence[str], labels: np.ndarray, shares: dict[str, float]) -> np.ndarray:
    """Per-image draw probabilities: each source gets its ``shares`` fraction of the draws, uniform inside it."""
    sources = np.asarray(sources)
    p = np.zeros(len(sources), np.float64)
    names = sorted(set(sources.tolist()))
    total = sum(shares.get(s, 0.0) for s in names)
    if total <= 0:
        raise ValueError(f"source shares {shares} give no weight to any of the sources {names}")
    for name in names:
        members = sources == name
        p[members] = shares.get(name, 0.0) / total / members.sum()
    return p


def balanced_class_weights(labels: np.ndarray, probabilities: np.ndarray, n_classes: int) -> np.ndarray:
    """Loss weights that balance the classes as they are drawn: ``1 / (K * expected share)`` per class, (K,).

    ``probabilities`` are the per-image draw probabilities (summing to 1); a class that is never drawn gets 0.
    """
    expected = np.bincount(labels, weights=probabilities, minlength=n_classes)
    present = expected > 0
    weights = np.zeros(n_classes, np.float32)
    weights[present] = 1.0 / (present.sum() * expected[present])
    return weights
