"""Pack the classifier's multi-source training data for a GPU machine: WebP frames, mask boxes as JSON, the split.

A GPU machine receives a copy of the repository's working tree plus a few ignored folders, 64 MiB in all, and no
``../shared``. A pack holds what the multi-source trainer reads there (``train_classifier --data-pack DIR``;
``training/gpu_run.sh`` runs it):

- ``images.json``: the whole multi-source table (image id, 8-dx label, lesion id and source of every image, the
  held-out ones too, so that the trainer derives the source holdout and the lesion-grouped split from the same
  rows with the same code), the loader's data report, and for each packed frame its expert-mask box in frame
  pixels (the float32 values, exactly) and whether a mask gave it;
- ``frames/<image_id>.webp``: the frame of every image the config trains or validates on, as the frame cache holds
  it (restored to 4:3, ``frame_height`` rows, RGB), lossy WebP;
- ``split.json``: the split the config gives (checked against ``--split`` when given);
- ``weights/<file>``: the ImageNet weights file the config names, when it has one;
- ``manifest.json``: what the pack was built for (config name, frame size, holdout, seed), the frames per source
  and part, the WebP qualities and their measured mean absolute pixel change against the cached frames, and the
  size and SHA-256 of every file (the frames as one digest over their names and SHA-256s).

Validation frames are stored at a higher quality than training frames. A training frame is cropped with a random
margin and jitter and then augmented (colour ±25 %, gamma, blur, noise, JPEG quality 40-95): WebP's loss is
smaller than what the augmentation does to it on purpose. A validation frame is cropped once, without
augmentation, and its scores are compared with runs that read the original frames: its loss goes straight into
the reported metrics, so it is kept small there.

Build, then check (``gpu_run.sh --dry-run`` runs the check)::

    python -m training.pack_for_gpu --config training/configs/teacher-m1.json --out .gpu/pack
    python -m training.pack_for_gpu --check .gpu/pack --config training/configs/teacher-m1.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeskin.datasets import LabelledImages
from edgeskin.image import read_image
from edgeskin.labels import DX8_CLASSES
from edgeskin.runtime.spec import sha256_file
from training.classifier_data import CropImages

log = logging.getLogger("pack_for_gpu")

FORMAT = "edgeskin-classifier-pack"
VERSION = 1
MANIFEST, IMAGES, SPLIT, FRAMES, WEIGHTS = "manifest.json", "images.json", "split.json", "frames", "weights"
MIB = 2**20


# ----------------------------------------------------------------------------------------------------- building


def encode_frame(frame: np.ndarray, quality: int) -> tuple[bytes, float]:
    """``frame`` (RGB uint8) as lossy WebP, and the mean absolute pixel change that decoding it back shows."""
    ok, encoded = cv2.imencode(".webp", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {frame.shape} frame as WebP")
    data = encoded.tobytes()
    change = np.abs(read_image(data, min_size=1).astype(np.int16) - frame).mean()
    return data, float(change)


def float32_list(values: np.ndarray) -> list[float]:
    """float32 values as the shortest decimals that read back as the same float32 (exact, and short in JSON)."""
    return [float(str(v)) for v in np.asarray(values, np.float32)]


@dataclass(frozen=True)
class Selection:
    """What the trainer would read for a config: the whole table, its training images and their split."""

    data: LabelledImages
    rest: LabelledImages
    split: dict


def select(config: dict, split_path: str | None) -> Selection:
    """The trainer's own data selection for ``config``; the split must equal ``split_path``'s when given."""
    from training.train_classifier import load_data

    data, rest, split = load_data(config, config.get("limit"))
    if split_path:
        recorded = json.loads(Path(split_path).read_text())
        if recorded.get("train") != split["train"] or recorded.get("val") != split["val"]:
            raise ValueError(f"{split_path} is not the split this config gives with ../shared's data now")
    return Selection(data, rest, split)


def write_frames(
    frames: CropImages, sel: Selection, out: Path, qualities: dict[str, int], workers: int
) -> tuple[dict, list[str]]:
    """Encode every frame of ``sel.rest`` into ``out/frames``; per-part counts, bytes and pixel change."""
    val = set(sel.split["val"])
    parts = ["val" if image_id in val else "train" for image_id in sel.rest.image_ids]
    (out / FRAMES).mkdir(parents=True)

    def one(i: int) -> tuple[int, float]:
        data, change = encode_frame(np.ascontiguousarray(frames.frames[i]), qualities[parts[i]])
        (out / FRAMES / f"{sel.rest.image_ids[i]}.webp").write_bytes(data)
        return len(data), change

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, range(len(sel.rest))))
    stats = {}
    for part in ("train", "val"):
        rows = [r for r, p in zip(results, parts, strict=True) if p == part]
        changes = [c for _, c in rows]
        stats[part] = {
            "frames": len(rows),
            "webp_quality": qualities[part],
            "bytes": sum(n for n, _ in rows),
            "mean_abs_change": round(float(np.mean(changes)), 3) if rows else None,
            "max_abs_change_per_frame": round(float(np.max(changes)), 3) if rows else None,
        }
    return stats, parts


def images_record(sel: Selection, frames: CropImages, parts: list[str]) -> dict:
    """``images.json``: the whole table as parallel columns, and the boxes of the packed frames."""
    data = sel.data
    return {
        "classes": list(data.classes),
        "table": {
            "image_id": list(data.image_ids),
            "dx": [data.classes[int(label)] for label in data.labels],
            "lesion": list(data.groups),
            "source": list(data.image_sources),
        },
        "data_report": data.extras,
        "frames": {
            "image_id": list(sel.rest.image_ids),
            "part": parts,
            "box": [float32_list(box) for box in frames.boxes],
            "masked": [bool(m) for m in frames.masked],
        },
    }


def frames_digest(folder: Path) -> tuple[int, int, str]:
    """Count, bytes and one SHA-256 over the sorted ``name sha256`` lines of the frames."""
    digest = hashlib.sha256()
    count = size = 0
    for path in sorted(folder.glob("*.webp")):
        digest.update(f"{path.name} {sha256_file(path)}\n".encode())
        count += 1
        size += path.stat().st_size
    return count, size, digest.hexdigest()


def copy_weights(config: dict, out: Path) -> str | None:
    """Copy the ImageNet weights file the config resolves to (none for ``weights: none``) into ``out/weights``."""
    from training.classifier_model import resolve_weights
    from training.train_classifier import resolve

    weights_dir = config.get("weights_dir")
    path = resolve_weights(
        config["backbone"],
        config["alpha"],
        config.get("weights", "none"),
        resolve(weights_dir) if weights_dir else None,
    )
    if path is None:
        return None
    (out / WEIGHTS).mkdir()
    shutil.copyfile(path, out / WEIGHTS / Path(path).name)
    return f"{WEIGHTS}/{Path(path).name}"


def recipe(config: dict) -> dict:
    """The config keys that decide which images a pack holds and how its frames look."""
    return {
        "frame_height": config["frame_height"],
        "holdout": config["holdout"],
        "val_fraction": config["val_fraction"],
        "seed": config["seed"],
        "limit": config.get("limit"),
    }


def build(config: dict, config_name: str, out: Path, options: argparse.Namespace) -> dict:
    """Write the pack of ``config`` into the new folder ``out``; returns its manifest."""
    from training.frame_cache import cached_frames
    from training.train_classifier import resolve

    started = time.perf_counter()
    if out.exists():
        raise ValueError(f"{out} exists: remove it or name a new --out")
    sel = select(config, options.split)
    cache = None if options.cache == "none" else options.cache
    mask_dirs = [resolve(d) for d in config["data"]["masks"]]
    frames = cached_frames(sel.rest, mask_dirs, config["frame_height"], cache, options.workers)
    out.mkdir(parents=True)
    stats, parts = write_frames(
        frames, sel, out, {"train": options.quality, "val": options.val_quality}, options.workers
    )
    (out / IMAGES).write_text(json.dumps(images_record(sel, frames, parts), separators=(",", ":")))
    (out / SPLIT).write_text(json.dumps(sel.split, indent=1))
    files = [IMAGES, SPLIT]
    weights = None if options.no_weights else copy_weights(config, out)
    files += [weights] if weights else []
    count, size, digest = frames_digest(out / FRAMES)
    per_source: dict[str, dict[str, int]] = {}
    for source, part in zip(sel.rest.image_sources, parts, strict=True):
        per_source.setdefault(source, {"train": 0, "val": 0})[part] += 1
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "config": config_name,
        "recipe": recipe(config),
        "frame_size": list(np.asarray(frames.frames[0]).shape[1::-1]),
        "weights": weights,
        "frames": {"count": count, "bytes": size, "sha256": digest, "per_source": per_source, "parts": stats},
        "files": {name: {"bytes": (out / name).stat().st_size, "sha256": sha256_file(out / name)} for name in files},
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    manifest["total_bytes"] = size + sum(f["bytes"] for f in manifest["files"].values())
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    total = manifest["total_bytes"] + (out / MANIFEST).stat().st_size
    if total > options.max_mib * MIB:
        raise ValueError(
            f"the pack in {out} is {total / MIB:.1f} MiB, over --max-mib {options.max_mib}: lower --quality "
            f"(now {options.quality}) or --val-quality (now {options.val_quality})"
        )
    return manifest


# ------------------------------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class Pack:
    """A pack folder, its manifest checked against its files (use :func:`open_pack`)."""

    root: Path
    manifest: dict

    @property
    def weights_dir(self) -> Path | None:
        return self.root / WEIGHTS if self.manifest.get("weights") else None

    def with_weights(self, config: dict) -> dict:
        """``config`` with ``weights_dir`` in the pack, so that ``weights: imagenet`` finds the packed file."""
        return {**config, "weights_dir": str(self.weights_dir)} if self.weights_dir else config

    def records(self) -> dict:
        return json.loads((self.root / IMAGES).read_text())

    def table(self) -> LabelledImages:
        """The multi-source table, as ``edgeskin.datasets.load_multisource`` gives it; paths into ``frames/``."""
        records = self.records()
        table = records["table"]
        if tuple(records["classes"]) != DX8_CLASSES:
            raise ValueError(f"{self.root}: the pack's classes {records['classes']} are not {list(DX8_CLASSES)}")
        return LabelledImages(
            image_ids=tuple(table["image_id"]),
            paths=tuple(self.root / FRAMES / f"{image_id}.webp" for image_id in table["image_id"]),
            labels=np.array([DX8_CLASSES.index(dx) for dx in table["dx"]], dtype=np.int64),
            groups=tuple(table["lesion"]),
            source="multi",
            extras=records["data_report"],
            classes=DX8_CLASSES,
            sources=tuple(table["source"]),
        )

    def packed_rows(self, packed: dict, images: LabelledImages) -> list[int]:
        """The row in ``images.json``'s ``frames`` of each image; a ValueError when one has no frame."""
        row = {image_id: i for i, image_id in enumerate(packed["image_id"])}
        absent = [image_id for image_id in images.image_ids if image_id not in row]
        if absent:
            raise ValueError(
                f"{self.root} has no frame for {len(absent)} of the {len(images)} images this config trains and "
                f"validates on (e.g. {absent[0]}); it was built for {self.manifest['config']} with "
                f"{self.manifest['recipe']}"
            )
        return [row[image_id] for image_id in images.image_ids]

    def frames(self, images: LabelledImages, workers: int = 2) -> CropImages:
        """The packed frames and mask boxes of ``images``, decoded: what ``training.frame_cache`` would give."""
        packed = self.records()["frames"]
        index = self.packed_rows(packed, images)
        with ThreadPoolExecutor(workers) as pool:
            frames = list(pool.map(read_image, [images.paths[i] for i in range(len(images))]))
        boxes = np.array([packed["box"][i] for i in index], np.float32).reshape(-1, 4)
        masked = np.array([packed["masked"][i] for i in index], bool)
        log.info("data pack: %d frames from %s", len(frames), self.root)
        return CropImages(frames, boxes, masked)


def verify(root: Path) -> dict:
    """The manifest of the pack in ``root`` after checking format, sizes and SHA-256 of every file."""
    path = root / MANIFEST
    if not path.is_file():
        raise ValueError(f"{root} is not a data pack: no {MANIFEST} (build one with python -m training.pack_for_gpu)")
    manifest = json.loads(path.read_text())
    if (manifest.get("format"), manifest.get("version")) != (FORMAT, VERSION):
        raise ValueError(
            f"{path}: format {manifest.get('format')} v{manifest.get('version')}, expected {FORMAT} v{VERSION}"
        )
    for name, entry in manifest["files"].items():
        file = root / name
        if not file.is_file():
            raise ValueError(f"{root}: {name} is missing")
        if file.stat().st_size != entry["bytes"] or sha256_file(file) != entry["sha256"]:
            raise ValueError(f"{root}: {name} differs from the manifest (size or SHA-256): rebuild the pack")
    count, size, digest = frames_digest(root / FRAMES)
    expected = manifest["frames"]
    if (count, size, digest) != (expected["count"], expected["bytes"], expected["sha256"]):
        raise ValueError(
            f"{root}/{FRAMES}: {count} frames, {size} bytes, digest {digest[:12]}; the manifest says "
            f"{expected['count']}, {expected['bytes']}, {expected['sha256'][:12]}: rebuild the pack"
        )
    return manifest


def open_pack(root: str | Path, config: dict) -> Pack:
    """The pack in ``root``, verified, with frames of ``config``'s height; a clear ValueError otherwise."""
    pack = Pack(Path(root), verify(Path(root)))
    built = pack.manifest["recipe"]["frame_height"]
    if built != config["frame_height"]:
        raise ValueError(
            f"{root} holds frames of {built} rows; the config asks for frame_height {config['frame_height']}"
        )
    return pack


def check_coverage(pack: Pack, config: dict) -> list[str]:
    """Select the config's images from the pack as the trainer will; notes for people, a ValueError if frames lack.

    The split is derived from the packed table with the trainer's code; when it is not the pack's own split, the
    validation images stored at the training quality are named in a note.
    """
    from training.train_classifier import load_data

    _, rest, split = load_data(config, config.get("limit"), pack)
    packed = pack.records()["frames"]
    part = dict(zip(rest.image_ids, (packed["part"][i] for i in pack.packed_rows(packed, rest)), strict=True))
    notes = [f"{len(split['train'])} train + {len(split['val'])} val images, every frame packed"]
    low = [image_id for image_id in split["val"] if part[image_id] != "val"]
    if low:
        notes.append(f"note: {len(low)} validation images of this config are packed at the training quality")
    return notes


def describe(pack: Pack) -> str:
    """A few lines for people: size, frames per source and part, qualities and pixel change, weights."""
    m = pack.manifest
    total = m["total_bytes"] + (pack.root / MANIFEST).stat().st_size
    lines = [f"{pack.root}: {m['config']}, {total / MIB:.2f} MiB ({total} bytes), {m['frames']['count']} frames of "
             f"{m['frame_size'][0]}x{m['frame_size'][1]}, weights {m['weights'] or 'none'}"]  # fmt: skip
    lines += [
        f"  {source}: {counts['train']} train + {counts['val']} val"
        for source, counts in m["frames"]["per_source"].items()
    ]
    for part, s in m["frames"]["parts"].items():
        lines.append(
            f"  {part}: WebP quality {s['webp_quality']}, {s['bytes'] / MIB:.2f} MiB, mean absolute change "
            f"{s['mean_abs_change']} grey levels vs the cached frames (worst frame {s['max_abs_change_per_frame']})"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from training.train_classifier import load_config

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--config", required=True, help="the trainer's JSON config (a run's config.json works too)")
    parser.add_argument("--out", help="the new pack folder, e.g. .gpu/pack (git-ignored)")
    parser.add_argument("--check", metavar="PACK", help="verify PACK against its manifest and --config; build nothing")
    parser.add_argument("--split", help="a run's split.json that the config must reproduce")
    parser.add_argument("--quality", type=int, default=30, help="WebP quality of training frames (%(default)s)")
    parser.add_argument("--val-quality", type=int, default=80, help="WebP quality of validation frames (%(default)s)")
    parser.add_argument("--limit", type=int, help="only N random training images, as train_classifier --limit N")
    parser.add_argument("--no-weights", action="store_true", help="leave the ImageNet weights out (resumed runs)")
    parser.add_argument("--max-mib", type=float, default=40.0, help="fail when the pack is larger (%(default)s)")
    parser.add_argument("--cache", default=None, help="frame cache folder (default .cache/frames); 'none' to decode")
    parser.add_argument("--workers", type=int, default=2, help="decoding and encoding threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if bool(args.out) == bool(args.check):
        parser.error("give --out (build a pack) or --check PACK (verify one), not both")
    if not all(1 <= q <= 100 for q in (args.quality, args.val_quality)):
        parser.error("--quality and --val-quality are WebP qualities from 1 to 100")
    try:
        config = load_config(args.config, {"limit": args.limit})
        if args.check:
            pack = open_pack(args.check, config)
            notes = check_coverage(pack, config)
            print("\n".join([f"pack OK for {args.config}", describe(pack), *notes]))
            return 0
        if args.cache is None:
            from training.frame_cache import DEFAULT_CACHE

            args.cache = str(DEFAULT_CACHE)
        build(config, Path(args.config).stem, Path(args.out), args)
        print(describe(Pack(Path(args.out), verify(Path(args.out)))))
        return 0
    except (OSError, KeyError, ValueError) as error:
        print(f"pack_for_gpu: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
