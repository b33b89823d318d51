"""Where the benchmark report finds its models and real images, and the bits every report job shares.

The INT8 edge models are the shipped ``edgeskin/models`` (or ``$EDGESKIN_MODELS_DIR``): always there, so the
runtime rows (pipeline latency) are measured from an installed wheel too. Everything else comes from an
edgeskin **source checkout** (:data:`CHECKOUT`: ``$EDGESKIN_CHECKOUT``, else the folder above this package
when it is one, else the working directory when it is one) and is reported as missing without it:

* Float baselines: ``artifacts/classifier/model.keras`` (Keras), the detector spec's ``provenance.weights``
  (ultralytics ``best.pt`` committed with its training record; else ``artifacts/detector/run/weights/best.pt``),
  and float TFLite files made from them (:func:`float_tflite_paths`, made by
  ``python -m benchmarks.export_float`` in the checkout).
* Real data in ``../shared/data``: the classifier's validation split (``training/runs/classifier/split.json``,
  HAM10000) and the detector's held-out PH2 half (``training/runs/detector/ph2_split.json``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def _find_checkout() -> Path | None:
    """The edgeskin source checkout the report reads training artifacts and data from, or None."""
    named = os.environ.get("EDGESKIN_CHECKOUT")
    candidates = [Path(named)] if named else [Path(__file__).resolve().parents[2], Path.cwd()]
    for folder in candidates:
        if (folder / "pyproject.toml").is_file() and (folder / "edgeskin").is_dir() and (folder / "training").is_dir():
            return folder.resolve()
    return None


CHECKOUT = _find_checkout()
# Without a checkout the paths below point into a folder that does not exist, so every lookup reports its
# file as missing (with the reason, see require_file) and nothing is written there.
REPO_ROOT = CHECKOUT or Path(tempfile.gettempdir()) / "edgeskin-no-source-checkout"
SHARED = (REPO_ROOT / ".." / "shared").resolve()
PH2_DIR = SHARED / "data" / "ph2"
HAM_DIR = SHARED / "data" / "ham10000"
CLASSIFIER_RUN = REPO_ROOT / "artifacts" / "classifier"
DETECTOR_WORK = REPO_ROOT / "artifacts" / "detector"
BENCH_ARTIFACTS = REPO_ROOT / "artifacts" / "bench"
KERAS_MODEL = CLASSIFIER_RUN / "model.keras"
DETECTOR_WEIGHTS = DETECTOR_WORK / "run" / "weights" / "best.pt"
# The splits are committed with the training records (training/runs/); a fresh training run's copy under
# artifacts/ wins when there is one.
PH2_SPLIT = next(
    (p for p in (DETECTOR_WORK / "dataset" / "ph2_split.json", REPO_ROOT / "training/runs/detector/ph2_split.json")
     if p.is_file()),
    DETECTOR_WORK / "dataset" / "ph2_split.json",
)  # fmt: skip
CLASSIFIER_SPLIT = next(
    (p for p in (CLASSIFIER_RUN / "split.json", REPO_ROOT / "training/runs/classifier/split.json") if p.is_file()),
    CLASSIFIER_RUN / "split.json",
)
SEED = 0
# A timing job during which other processes used more than this many cores on average is run again.
CONTENDED_CORES = 0.1


class Missing(Exception):
    """Something a benchmark needs is absent; the message says what and why (it goes into the report)."""


def models() -> tuple[Path, Path]:
    """The INT8 classifier and detector ``.tflite`` (shipped, or ``$EDGESKIN_MODELS_DIR``)."""
    from edgeskin.errors import NoDefaultModelError
    from edgeskin.models import default_classifier_path, default_detector_path

    try:
        return default_classifier_path(), default_detector_path()
    except NoDefaultModelError as exc:
        raise Missing(str(exc)) from None


def keras_baseline(classifier_int8: Path | None = None) -> Path:
    """The float Keras model the INT8 classifier was exported from.

    The spec's ``provenance.checkpoint`` (a file in ``artifacts/classifier``, e.g. ``model.keras``), else
    ``artifacts/classifier/model.keras``. A checkpoint written after the INT8 export is not its source: then
    :class:`Missing` says so instead of comparing two different models.
    """
    classifier_int8 = classifier_int8 or models()[0]
    spec = json.loads(classifier_int8.with_suffix(".json").read_text())
    name = (spec.get("provenance") or {}).get("checkpoint") or "model.keras"
    path = Path(name) if Path(name).is_absolute() else CLASSIFIER_RUN / Path(name).name
    what = "the float Keras classifier (the INT8 model's provenance.checkpoint)"
    return _float_source(
        path, classifier_int8, what, "re-export the classifier, or restore the checkpoint it came from"
    )


def detector_baseline(detector_int8: Path | None = None) -> Path:
    """The float ultralytics weights the INT8 detector was exported from.

    The spec's ``provenance.weights`` (committed with its training record, a path in the checkout), checked
    against ``provenance.weights_sha256``; else ``artifacts/detector/run/weights/best.pt``, which must not be
    newer than the INT8 export. Raises :class:`Missing` when they are absent or are not the INT8 model's source.
    """
    detector_int8 = detector_int8 or models()[1]
    spec = json.loads(detector_int8.with_suffix(".json").read_text())
    provenance = spec.get("provenance") or {}
    if not provenance.get("weights"):
        return _float_source(
            DETECTOR_WEIGHTS, detector_int8, "the float detector weights (best.pt)", "re-export the detector"
        )
    path = require_file(
        REPO_ROOT / provenance["weights"], "the float detector weights (the INT8 model's provenance.weights)"
    )
    expected = provenance.get("weights_sha256")
    if expected:
        from edgeskin.runtime.spec import sha256_file

        if sha256_file(path) != expected:
            raise Missing(
                f"{path} does not match the sha256 in {detector_int8.name}'s spec, so it is not its float source"
            )
    return path


def _float_source(path: Path, int8: Path, what: str, remedy: str) -> Path:
    """``path`` when it exists and is not newer than the INT8 model made from it (else :class:`Missing`)."""
    require_file(path, what)
    if path.stat().st_mtime > int8.stat().st_mtime + 60:
        raise Missing(
            f"{path} was written after {int8.name} was exported, so it is not the INT8 model's float source ({remedy})"
        )
    return path


def require_file(path: Path, what: str) -> Path:
    if not Path(path).is_file():
        if CHECKOUT is None:
            raise Missing(
                f"{what}: comes from an edgeskin source checkout, none found (run in one or set EDGESKIN_CHECKOUT)"
            )
        raise Missing(f"{what} not found at {path}")
    return Path(path)


# -- PH2 frames --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ph2Frame:
    image_id: str
    path: Path
    gt_box: np.ndarray | None  # tight box of the expert mask, frame pixels, xyxy


def ph2_validation(limit: int | None = None) -> list[Ph2Frame]:
    """The detector's held-out PH2 images (never trained on) with their ground-truth boxes."""
    import cv2

    from edgeskin.core.boxes import mask_to_box

    split = json.loads(require_file(PH2_SPLIT, "the detector's PH2 split (ph2_split.json)").read_text())
    ids = sorted(split["val"])[:limit]
    frames = []
    for image_id in ids:
        path = require_file(PH2_DIR / "images" / f"{image_id}.jpg", "PH2 image")
        mask = cv2.imread(str(PH2_DIR / "masks" / f"{image_id}_segmentation.png"), cv2.IMREAD_GRAYSCALE)
        frames.append(Ph2Frame(image_id, path, None if mask is None else mask_to_box(mask)))
    return frames


def ph2_images(count: int) -> list[Path]:
    """``count`` PH2 frames (validation half first), in a fixed order."""
    return [frame.path for frame in ph2_validation()[:count]]


# -- HAM10000 validation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HamValidation:
    image_ids: list[str]
    paths: list[Path]
    labels: np.ndarray  # dx indices into edgeskin.labels.DX_CLASSES (the 7-dx view)


def ham_validation(limit: int | None = None, seed: int = SEED) -> HamValidation:
    """The classifier's internal validation split (``split.json``'s ``val``), optionally a seeded subset.

    A multi-source split (one with a ``source_holdout``: HAM10000 and the ISIC 2017 images) is read through
    :func:`edgeskin.datasets.load_multisource`, a HAM10000-only one through the HAM10000 metadata. Labels are
    in the 7-dx view (ak + scc = akiec), which every shipped classifier can be scored on.
    """
    from edgeskin.datasets import apply_split, load_ham10000, load_multisource

    split = json.loads(require_file(CLASSIFIER_SPLIT, "the classifier's split (split.json)").read_text())
    metadata = require_file(HAM_DIR / "HAM10000_metadata.csv", "HAM10000 metadata")
    if "source_holdout" in split:
        isic_images, truth = SHARED / "data" / "isic2018_task1" / "images", SHARED / "data" / "isic_ground_truth"
        require_file(truth / "ISIC_2019_Training_GroundTruth.csv", "the ISIC 2019 ground truth")
        if not isic_images.is_dir():
            raise Missing(f"the ISIC 2017/2018 images not found at {isic_images}")
        data = load_multisource(metadata, HAM_DIR / "images", isic_images, truth)
    else:
        data = load_ham10000(metadata, HAM_DIR / "images")
    val = apply_split(data, split, "val")
    labels = val.dx7_labels()
    index = np.arange(len(val))
    if limit is not None and limit < len(val):
        index = np.sort(np.random.default_rng(seed).choice(len(val), size=limit, replace=False))
    return HamValidation([val.image_ids[i] for i in index], [Path(val.paths[i]) for i in index], labels[index])


def model_input_pixels(paths: Sequence[Path], size: int, profile: Any) -> np.ndarray:
    """Decode, stretch to the model input and apply the preprocessing profile: uint8 (N, S, S, 3).

    The same functions, in the same order, as ``Classifier.preprocess`` (and training), so the float
    model and the INT8 model see identical pixels. ``profile``: a profile name, a
    :class:`~edgeskin.core.preprocess.PreprocessingProfile` (e.g. ``spec.preprocessing_profile()``) or None.
    """
    from edgeskin.core.geometry import resize_to_input
    from edgeskin.core.preprocess import get_profile
    from edgeskin.image import read_image

    if isinstance(profile, str):
        profile = get_profile(profile)
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, path in enumerate(paths):
        resized, _ = resize_to_input(read_image(path), (size, size), "stretch")
        out[i] = profile.apply(resized) if profile is not None else resized
    return out


# -- float TFLite companions -------------------------------------------------------------------------


def float_tflite_paths(classifier_int8: Path, detector_int8: Path) -> dict[str, Path]:
    """Float TFLite versions of the edge models that exist (made by ``benchmarks/export_float.py``)."""
    found = {}
    for key, int8, variants in (
        ("classifier", classifier_int8, ("float32", "float16")),
        ("detector", detector_int8, ("float32", "float16")),
    ):
        for variant in variants:
            path = BENCH_ARTIFACTS / f"{int8.stem}-{variant}.tflite"
            if path.is_file() and path.with_suffix(".json").is_file():
                found[f"{key}-{variant}"] = path
    return found


def ultralytics_imgsz(input_size: Sequence[int]) -> int | list[int]:
    """A detector input ``(height, width)`` as ultralytics' ``imgsz``: one side when square, else ``[h, w]``
    (one side alone would letterbox a 288x384 model's frames to 288 pixels on their long side)."""
    height, width = (int(v) for v in input_size)
    return height if height == width else [height, width]


def set_offline_ultralytics() -> None:
    """No network for ultralytics (call before importing it), and torchvision's NMS on a CPU-only torch.

    Needs the ``[train]`` extra (torch, ultralytics); says so with :class:`Missing` when it is absent.
    """
    require_extra(("torch", "torchvision", "ultralytics"))
    config_dir = DETECTOR_WORK / "yolo_config" if CHECKOUT else Path(tempfile.mkdtemp(prefix="edgeskin-yolo-"))
    config_dir.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    os.environ.setdefault("YOLO_VERBOSE", "false")
    from edgeskin.report.torch_compat import ensure_torchvision_cpu_ops

    ensure_torchvision_cpu_ops()


def require_extra(modules: Sequence[str], extra: str = "train") -> None:
    """Raise :class:`Missing` naming the extra to install when one of ``modules`` is not importable."""
    from importlib.util import find_spec

    absent = [name for name in modules if find_spec(name) is None]
    if absent:
        how = " (see scripts/install.sh train)" if extra == "train" else ""
        raise Missing(f"needs {', '.join(absent)}: pip install 'edgeskin[{extra}]'{how}")


def keras_backend_modules() -> tuple[str, ...]:
    """Keras and the backend ``$KERAS_BACKEND`` names (tensorflow by default)."""
    return ("keras", os.environ.get("KERAS_BACKEND", "tensorflow"))


def keras_device(backend: str) -> str:
    """Where Keras runs with ``backend``: "GPU (<name>)" or "CPU (no GPU available)" (imports the backend)."""
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"GPU ({gpus[0].name})" if gpus else "CPU (no GPU available)"
    if backend == "torch":
        import torch

        return f"GPU ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "CPU (no GPU available)"
    import jax

    kinds = {d.platform for d in jax.devices()}
    return "GPU" if "gpu" in kinds else "CPU (no GPU available)"


def emit_json(result: Any, out: str | None) -> int:
    """Write a script's JSON result to ``out``, or print it when no file was asked for; exit code 0."""
    text = json.dumps(result, indent=1)
    if out:
        Path(out).write_text(text)
    else:
        print(text)
    return 0
