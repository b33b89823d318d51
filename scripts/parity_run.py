"""Run the shipped pipeline on images and store every reported number, bit for bit, for a cross-machine diff.

Used by ``scripts/check-aarch64.sh`` on x86 and on emulated aarch64 (the same file on both)::

    python scripts/parity_run.py OUT.npz IMAGE...
    python scripts/parity_run.py --compare A.npz B.npz [C.npz ...]

Stores per image: the detector's and the classifier's input tensors (SHA-256, to find where a difference
starts), and per lesion the box, score, dx and group probabilities, P(malignant), refer flag, crop box and
class activation map, plus the package versions. ``--compare`` exits 1 unless every array is bit-identical
(same dtype, shape and bytes) and prints where they differ. Needs only the edgeskin runtime.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import platform
import sys
from pathlib import Path

import numpy as np


def _digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(array.dtype.str.encode() + str(array.shape).encode() + array.tobytes()).hexdigest()


def run(out: Path, images: list[Path], threads: int = 1) -> None:
    import cv2

    import edgeskin
    from edgeskin import LesionPipeline
    from edgeskin.image import read_image

    arrays: dict[str, np.ndarray] = {}
    digests: dict[str, str] = {}
    with LesionPipeline.from_defaults(threads=threads, cam=True) as pipeline:
        for path in images:
            frame = read_image(path)
            key = path.stem
            digests[f"{key}/frame"] = _digest(frame)
            detector = getattr(pipeline, "detector", None)
            if detector is not None and hasattr(detector, "preprocess"):
                digests[f"{key}/detector_input"] = _digest(detector.preprocess(frame)[0])
            result = pipeline(frame)
            arrays[f"{key}/lesions"] = np.array(len(result.lesions))
            # Everything else the result reports (labels, flags, messages such as "no lesion found" or "detector unsure").
            report = {k: v for k, v in result.to_dict().items() if k not in ("timings_ms", "source")}
            arrays[f"{key}/report"] = np.array(json.dumps(report, sort_keys=True, default=str))
            for i, lesion in enumerate(result.lesions):
                prefix = f"{key}/{i}"
                arrays[f"{prefix}/box"] = np.asarray(lesion.box)
                arrays[f"{prefix}/score"] = np.asarray(lesion.score)
                arrays[f"{prefix}/dx"] = np.asarray(lesion.dx.probabilities)
                arrays[f"{prefix}/group"] = np.asarray(lesion.group.probabilities)
                arrays[f"{prefix}/malignant"] = np.asarray(lesion.malignant)
                arrays[f"{prefix}/refer"] = np.asarray(bool(lesion.refer))
                arrays[f"{prefix}/crop_box"] = np.asarray(lesion.crop_box)
                if lesion.cam is not None:
                    arrays[f"{prefix}/cam"] = np.asarray(lesion.cam)
                x0, y0, x1, y1 = (int(v) for v in lesion.crop_box)
                digests[f"{prefix}/classifier_input"] = _digest(pipeline.classifier.preprocess(frame[y0:y1, x0:x1]))
    from edgeskin.models import default_classifier_path, default_detector_path

    models = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in (default_classifier_path(), default_detector_path())
    }
    models.update(
        {
            path.with_suffix(".json").name: hashlib.sha256(path.with_suffix(".json").read_bytes()).hexdigest()
            for path in (default_classifier_path(), default_detector_path())
        }
    )
    meta = {
        "machine": platform.machine(),
        "models": models,
        "reference_ops": _reference_check(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "edgeskin": getattr(edgeskin, "__version__", "?"),
        "litert": _version("ai-edge-litert"),
        "images": [p.name for p in images],
        "digests": digests,
    }
    np.savez(out, **arrays, __meta__=np.array(json.dumps(meta)))
    lesions = sum(int(arrays[k]) for k in arrays if k.endswith("/lesions"))
    print(f"{meta['machine']}: {len(images)} images, {lesions} lesions -> {out}")


def _reference_check() -> list[str] | None:
    """Failures of tests/core/exact_reference.py's check on this machine (None: the file is not beside
    this script or in the repository)."""
    here = Path(__file__).resolve().parent
    for folder in (here, here.parent / "tests" / "core"):
        path = folder / "exact_reference.py"
        if path.is_file():
            spec = importlib.util.spec_from_file_location("exact_reference", path)
            exact_reference = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(exact_reference)
            return exact_reference.check()
    return None


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


def compare(paths: list[Path]) -> int:
    """0 when every file holds the same arrays bit for bit as the first one; 1 otherwise (differences printed)."""
    reference = np.load(paths[0])
    ref_meta = json.loads(str(reference["__meta__"]))
    failures = 0
    for path in paths[1:]:
        other = np.load(path)
        meta = json.loads(str(other["__meta__"]))
        label = f"{ref_meta['machine']} ({paths[0].name}) vs {meta['machine']} ({path.name})"
        for name in ("numpy", "opencv", "litert", "edgeskin", "models"):
            if meta[name] != ref_meta[name]:
                print(f"{label}: different {name} versions {ref_meta[name]} / {meta[name]} (not the same wheels)")
        keys = sorted(set(reference.files) | set(other.files) - {"__meta__"})
        diffs = []
        for key in keys:
            if key == "__meta__":
                continue
            if key not in reference.files or key not in other.files:
                diffs.append(f"{key}: only in {'the first' if key in reference.files else 'the second'}")
                continue
            a, b = reference[key], other[key]
            if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
                detail = ""
                if a.shape == b.shape and a.dtype.kind in "fiub" and b.dtype.kind in "fiub":
                    delta = np.abs(a.astype(np.float64) - b.astype(np.float64))
                    detail = f" max |diff| {delta.max():.3g} on {int((delta > 0).sum())} of {a.size}"
                diffs.append(f"{key}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}{detail}")
        for m in (ref_meta, meta):
            if m.get("reference_ops"):
                diffs.append(f"{m['machine']}: OpenCV ops differ from the numpy references: {m['reference_ops']}")
            elif m.get("reference_ops") is None:
                diffs.append(f"{m['machine']}: the numpy reference check did not run (exact_reference.py missing)")
        for key in sorted(set(ref_meta["digests"]) | set(meta["digests"])):
            if ref_meta["digests"].get(key) != meta["digests"].get(key):
                diffs.append(f"{key}: input tensor differs (SHA-256)")
        arrays = len([k for k in keys if k != "__meta__"])
        if diffs:
            failures += 1
            print(f"{label}: {len(diffs)} differences")
            for line in diffs[:40]:
                print(f"  {line}")
        else:
            print(
                f"{label}: bit-identical ({len(ref_meta['images'])} images, {arrays} arrays, "
                f"{len(ref_meta['digests'])} input digests)"
            )
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", action="store_true", help="compare result files instead of running")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.compare:
        if len(args.paths) < 2:
            parser.error("--compare needs at least two result files")
        return compare(args.paths)
    if len(args.paths) < 2:
        parser.error("expected OUT.npz and at least one image")
    run(args.paths[0], args.paths[1:], args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
