"""A local cache of decoded training frames: uint8 arrays at the training resolution, never committed.

The classifier trainer decodes every image once per process (about 11,000 JPEGs restored to 4:3 at 240 rows)
and finds its mask box. The cache keeps that result on disk as one ``(N, H, W, 3)`` uint8 array, memory-mapped
when read, so a resumed run starts without decoding anything. Its key is a digest of what the arrays depend on
(image ids, image and mask file sizes and times, frame height, this module's format version); a changed
input gives a new key and a rebuild, never stale frames.

Rebuild by hand (the trainer also builds it when missing)::

    python -m training.frame_cache --config training/configs/classifier.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeskin.datasets import LabelledImages
from training.classifier_data import MASK_SUFFIX, CropImages, load_frames

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "frames"


def cache_key(data: LabelledImages, mask_dirs: Sequence[str | Path], height: int) -> str:
    """A digest of everything the cached arrays depend on."""
    digest = hashlib.sha256(json.dumps({"version": FORMAT_VERSION, "height": height}).encode())
    dirs = [Path(d) for d in mask_dirs]
    for image_id, path in zip(data.image_ids, data.paths, strict=True):
        stat = Path(path).stat()
        digest.update(f"{image_id}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        for folder in dirs:
            mask = folder / f"{image_id}{MASK_SUFFIX}"
            if mask.is_file():
                mask_stat = mask.stat()
                digest.update(f"|{mask_stat.st_size}:{mask_stat.st_mtime_ns}".encode())
                break
    return digest.hexdigest()[:16]


def cached_frames(
    data: LabelledImages,
    mask_dirs: Sequence[str | Path],
    height: int,
    cache_dir: str | Path | None = DEFAULT_CACHE,
    workers: int = 2,
) -> CropImages:
    """:func:`training.classifier_data.load_frames`, read from ``cache_dir`` when it holds these frames.

    ``cache_dir=None`` decodes without a cache. A missing or unreadable entry is rebuilt (and says so).
    """
    if cache_dir is None:
        return load_frames(data, mask_dirs, height, workers=workers)
    entry = Path(cache_dir) / cache_key(data, mask_dirs, height)
    try:
        frames = np.load(entry / "frames.npy", mmap_mode="r")
        boxes = np.load(entry / "boxes.npy")
        masked = np.load(entry / "masked.npy")
        if len(frames) == len(boxes) == len(masked) == len(data):
            log.info("frame cache: %d frames from %s", len(frames), entry)
            return CropImages(frames, boxes, masked)
        log.warning("frame cache %s holds %d frames, expected %d: rebuilding", entry, len(frames), len(data))
    except (OSError, ValueError) as error:
        log.info("frame cache: building %s (%s)", entry, type(error).__name__)
    images = load_frames(data, mask_dirs, height, workers=workers)
    entry.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name first, so a run stopped half-way leaves no truncated entry behind.
    for name, array in (("frames", np.stack(images.frames)), ("boxes", images.boxes), ("masked", images.masked)):
        partial = entry / f"{name}.{os.getpid()}.partial.npy"
        np.save(partial, array)
        partial.replace(entry / f"{name}.npy")
    return CropImages(np.load(entry / "frames.npy", mmap_mode="r"), images.boxes, images.masked)


def main(argv: Sequence[str] | None = None) -> int:
    from training.train_classifier import load_config, load_data, resolve

    parser = argparse.ArgumentParser(description="Build (or check) the classifier trainer's frame cache.")
    parser.add_argument("--config", required=True, help="the trainer's JSON config")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="cache folder (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="decoding threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        config = load_config(args.config, {})
        _, rest, _ = load_data(config)
    except (OSError, KeyError, ValueError) as error:
        print(f"frame_cache: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    mask_dirs = [resolve(d) for d in config["data"]["masks"]]
    images = cached_frames(rest, mask_dirs, config["frame_height"], args.cache, args.workers)
    print(f"{len(images.boxes)} frames of {images.frames.shape[1:]} ready in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
