"""Pack the HAM10000 training data small enough to travel to a remote GPU machine.

Out of date: this packs HAM10000 alone, for the earlier HAM10000-only recipe; the multi-source classifier
(HAM10000 + ISIC 2017, mask boxes) needs a pack of its own (see README, "Training and conversion").

Example::

    python -m training.pack_for_gpu --split training/runs/classifier-ham7/split.json --out .gpu/ham

Validation images are copied byte for byte (the float baseline is scored on exactly the files the INT8
model is scored on here); training images are re-encoded as WebP (quality 85 by default: mean absolute
pixel change about 1.9 grey levels, far below the colour augmentation's ±10 %), about 4.5 KB each instead
of 16 KB, so that data, code and wheels stay under the 64 MiB a remote call may carry. The metadata CSV, the split and the ImageNet weights named by ``--weights`` are copied beside them.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2

from edgeskin.datasets import load_ham10000

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metadata", default="../shared/data/ham10000/HAM10000_metadata.csv")
    parser.add_argument("--images", default="../shared/data/ham10000/images")
    parser.add_argument("--split", required=True, help="split.json whose 'val' images are copied unchanged")
    parser.add_argument("--weights", nargs="*", default=[], help="weight files to copy into OUT/weights")
    parser.add_argument("--quality", type=int, default=85, help="WebP quality of the training images")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    out = Path(args.out)
    images_out = out / "images"
    images_out.mkdir(parents=True, exist_ok=True)
    data = load_ham10000(args.metadata, args.images)
    val = set(json.loads(Path(args.split).read_text())["val"])
    for image_id, path in zip(data.image_ids, data.paths, strict=True):
        if image_id in val:
            shutil.copyfile(path, images_out / path.name)
            continue
        ok, encoded = cv2.imencode(".webp", cv2.imread(str(path)), [cv2.IMWRITE_WEBP_QUALITY, args.quality])
        if not ok:
            raise SystemExit(f"could not encode {path}")
        (images_out / f"{image_id}.webp").write_bytes(encoded.tobytes())
    shutil.copyfile(args.metadata, out / "HAM10000_metadata.csv")
    shutil.copyfile(args.split, out / "split.json")
    for weights in args.weights:
        (out / "weights").mkdir(exist_ok=True)
        shutil.copyfile(weights, out / "weights" / Path(weights).name)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{len(data)} images ({len(val)} validation unchanged) → {out}: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
