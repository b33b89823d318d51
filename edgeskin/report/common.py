"""What the benchmark report is given to measure with, and the bits every report job shares.

The INT8 edge models are the shipped ``edgeskin/models`` (or ``$EDGESKIN_MODELS_DIR``): always there, so the
runtime rows (pipeline latency) are measured from an installed wheel too. Everything else is named by the
caller (:class:`ReportInputs`, one command-line option each, :func:`add_input_arguments`), and a row whose input
was not given, or is absent, says so:

* the data folder (``--data``: ``ph2/``, ``ham10000/``, ``isic2018_task1/``, ``isic_ground_truth/``) with the
  classifier's validation split (``--classifier-split``) and the detector's held-out PH2 half
  (``--detector-split``);
* the float baselines: the Keras classifier (``--float-classifier``) and the ultralytics detector weights
  (``--float-detector``) the INT8 models were exported from, and the float TFLite files made from them
  (``--float-dir``, :func:`float_tflite_paths`);
* other trained backbones (``--trained-dir``), a GPU run's stored float results (``--gpu-baseline``) and the
  per-device reference results (``--reference-dir``).

The package knows no source checkout: ``python -m benchmarks.report`` in one passes the checkout's paths.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

SEED = 0
# A timing job during which other processes used more than this many cores on average is run again.
CONTENDED_CORES = 0.1


@dataclass(frozen=True)
class ReportInputs:
    """Where the report finds what it measures with; None: not given (the rows that need it say so).

    Attributes:
        data: The data folder: ``ph2/`` (images, masks), ``ham10000/`` (metadata, images),
            ``isic2018_task1/images`` and ``isic_ground_truth/`` (a multi-source split's ISIC 2017 images).
        classifier_split: The classifier's ``split.json`` (its ``val`` images are scored).
        detector_split: The detector's ``ph2_split.json`` (its ``val`` PH2 images are scored).
        float_classifier: The float Keras classifier (``.keras``) the INT8 classifier was exported from.
        float_detector: The float ultralytics weights (``best.pt``) the INT8 detector was exported from.
        float_dir: Float TFLite companions of the INT8 models (``<stem>-float32.tflite``, ...) and ``peers/``.
        trained_dir: A folder searched for other backbones' trained ``.keras`` (their run's ``config.json``).
        gpu_baseline: A GPU run's stored float results (``float-baseline.json``).
        reference_dir: The per-device reference results (``<device>.json`` of ``edgeskin bench``).
        work: Job logs and ultralytics' settings (default: a temporary folder).
    """

    data: Path | None = None
    classifier_split: Path | None = None
    detector_split: Path | None = None
    float_classifier: Path | None = None
    float_detector: Path | None = None
    float_dir: Path | None = None
    trained_dir: Path | None = None
    gpu_baseline: Path | None = None
    reference_dir: Path | None = None
    work: Path | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ReportInputs:
        """The inputs parsed by :func:`add_input_arguments` (absolute paths)."""
        return cls(**{f.name: _absolute(getattr(args, f.name, None)) for f in fields(cls)})

    def argv(self) -> list[str]:
        """The options that give these inputs to a job (the inverse of :meth:`from_args`)."""
        out: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out += [_option(f.name), str(value)]
        return out

    def need(self, name: str, what: str) -> Path:
        """The input ``name`` when it was given, else :class:`Missing` naming its option."""
        value = getattr(self, name)
        if value is None:
            raise Missing(f"{what}: not given ({_option(name)})")
        return value

    def data_folder(self, *parts: str) -> Path:
        """A folder or file under :attr:`data` (:class:`Missing` when no data folder was given)."""
        return self.need("data", "the data folder").joinpath(*parts)

    def work_dir(self, name: str) -> Path:
        """``work/<name>`` (made), or a new temporary folder when no work folder was given."""
        if self.work is None:
            return Path(tempfile.mkdtemp(prefix=f"edgeskin-report-{name}-"))
        folder = self.work / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder


INPUT_HELP = {
    "data": "data folder (ph2/, ham10000/, isic2018_task1/, isic_ground_truth/): the rows on real images",
    "classifier_split": "the classifier's split.json (its 'val' images are scored)",
    "detector_split": "the detector's ph2_split.json (its 'val' PH2 images are scored)",
    "float_classifier": "the float .keras the INT8 classifier was exported from (float rows, CAM fidelity)",
    "float_detector": "the float best.pt the INT8 detector was exported from (float rows, peers)",
    "float_dir": "folder of the float TFLite companions (<model>-float32.tflite, ...) and peers/",
    "trained_dir": "folder searched for other backbones' trained .keras (their run's config.json)",
    "gpu_baseline": "a GPU run's stored float results (float-baseline.json)",
    "reference_dir": "folder of the per-device reference results (<device>.json of edgeskin bench)",
    "work": "folder for job logs and ultralytics settings (default: a temporary folder)",
}


def add_input_arguments(parser: argparse.ArgumentParser | Any) -> None:
    """One option per :class:`ReportInputs` field (``--data``, ``--classifier-split``, ...), all optional."""
    for f in fields(ReportInputs):
        parser.add_argument(_option(f.name), dest=f.name, metavar="PATH", help=INPUT_HELP[f.name])


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _absolute(value: str | Path | None) -> Path | None:
    return None if value in (None, "") else Path(value).resolve()


def display_path(path: str | Path) -> str:
    """``path`` relative to the working directory when it lies under it (what a report shows), else absolute."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


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


def keras_baseline(inputs: ReportInputs, classifier_int8: Path | None = None) -> Path:
    """The float Keras model the INT8 classifier was exported from (``inputs.float_classifier``).

    A model written after the INT8 export is not its source: then :class:`Missing` says so instead of comparing
    two different models.
    """
    classifier_int8 = classifier_int8 or models()[0]
    path = inputs.need("float_classifier", "the float Keras classifier (the INT8 model's provenance.checkpoint)")
    what = "the float Keras classifier (the INT8 model's provenance.checkpoint)"
    return _float_source(
        path, classifier_int8, what, "re-export the classifier, or restore the checkpoint it came from"
    )


def detector_baseline(inputs: ReportInputs, detector_int8: Path | None = None) -> Path:
    """The float ultralytics weights the INT8 detector was exported from (``inputs.float_detector``).

    Checked against the spec's ``provenance.weights_sha256`` when it has one; otherwise the weights must not be
    newer than the INT8 export. Raises :class:`Missing` when they are absent or are not the INT8 model's source.
    """
    detector_int8 = detector_int8 or models()[1]
    spec = json.loads(detector_int8.with_suffix(".json").read_text())
    expected = (spec.get("provenance") or {}).get("weights_sha256")
    what = "the float detector weights (the INT8 model's provenance.weights)"
    if not expected:
        return _float_source(inputs.need("float_detector", what), detector_int8, what, "re-export the detector")
    path = require_file(inputs.need("float_detector", what), what)
    from edgeskin.runtime.spec import sha256_file

    if sha256_file(path) != expected:
        raise Missing(f"{path} does not match the sha256 in {detector_int8.name}'s spec, so it is not its float source")
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
    """``path`` when it is a file, else :class:`Missing` saying what was not found where."""
    if not Path(path).is_file():
        raise Missing(f"{what} not found at {path}")
    return Path(path)


# -- PH2 frames --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ph2Frame:
    image_id: str
    path: Path
    gt_box: np.ndarray | None  # tight box of the expert mask, frame pixels, xyxy


def ph2_validation(inputs: ReportInputs, limit: int | None = None) -> list[Ph2Frame]:
    """The detector's held-out PH2 images (never trained on) with their ground-truth boxes."""
    import cv2

    from edgeskin.core.boxes import mask_to_box

    split_file = inputs.need("detector_split", "the detector's PH2 split (ph2_split.json)")
    split = json.loads(require_file(split_file, "the detector's PH2 split (ph2_split.json)").read_text())
    ph2 = inputs.data_folder("ph2")
    ids = sorted(split["val"])[:limit]
    frames = []
    for image_id in ids:
        path = require_file(ph2 / "images" / f"{image_id}.jpg", "PH2 image")
        mask = cv2.imread(str(ph2 / "masks" / f"{image_id}_segmentation.png"), cv2.IMREAD_GRAYSCALE)
        frames.append(Ph2Frame(image_id, path, None if mask is None else mask_to_box(mask)))
    return frames


def ph2_images(inputs: ReportInputs, count: int) -> list[Path]:
    """``count`` PH2 frames (validation half first), in a fixed order."""
    return [frame.path for frame in ph2_validation(inputs)[:count]]


# -- HAM10000 validation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HamValidation:
    image_ids: list[str]
    paths: list[Path]
    labels: np.ndarray  # dx indices into edgeskin.labels.DX_CLASSES (the 7-dx view)


def ham_validation(inputs: ReportInputs, limit: int | None = None, seed: int = SEED) -> HamValidation:
    """The classifier's internal validation split (``split.json``'s ``val``), optionally a seeded subset.

    A multi-source split (one with a ``source_holdout``: HAM10000 and the ISIC 2017 images) is read through
    :func:`edgeskin.datasets.load_multisource`, a HAM10000-only one through the HAM10000 metadata. Labels are
    in the 7-dx view (ak + scc = akiec), which every shipped classifier can be scored on.
    """
    from edgeskin.datasets import apply_split, load_ham10000, load_multisource

    split_file = inputs.need("classifier_split", "the classifier's split (split.json)")
    split = json.loads(require_file(split_file, "the classifier's split (split.json)").read_text())
    ham = inputs.data_folder("ham10000")
    metadata = require_file(ham / "HAM10000_metadata.csv", "HAM10000 metadata")
    if "source_holdout" in split:
        isic_images, truth = inputs.data_folder("isic2018_task1", "images"), inputs.data_folder("isic_ground_truth")
        require_file(truth / "ISIC_2019_Training_GroundTruth.csv", "the ISIC 2019 ground truth")
        if not isic_images.is_dir():
            raise Missing(f"the ISIC 2017/2018 images not found at {isic_images}")
        data = load_multisource(metadata, ham / "images", isic_images, truth)
    else:
        data = load_ham10000(metadata, ham / "images")
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


def float_tflite_paths(inputs: ReportInputs, classifier_int8: Path, detector_int8: Path) -> dict[str, Path]:
    """Float TFLite versions of the edge models found in ``inputs.float_dir`` (none when it was not given)."""
    found: dict[str, Path] = {}
    if inputs.float_dir is None:
        return found
    for key, int8, variants in (
        ("classifier", classifier_int8, ("float32", "float16")),
        ("detector", detector_int8, ("float32", "float16")),
    ):
        for variant in variants:
            path = inputs.float_dir / f"{int8.stem}-{variant}.tflite"
            if path.is_file() and path.with_suffix(".json").is_file():
                found[f"{key}-{variant}"] = path
    return found


def ultralytics_imgsz(input_size: Sequence[int]) -> int | list[int]:
    """A detector input ``(height, width)`` as ultralytics' ``imgsz``: one side when square, else ``[h, w]``
    (one side alone would letterbox a 288x384 model's frames to 288 pixels on their long side)."""
    height, width = (int(v) for v in input_size)
    return height if height == width else [height, width]


def set_offline_ultralytics(inputs: ReportInputs) -> None:
    """No network for ultralytics (call before importing it), its settings in ``inputs``' work folder (else a
    temporary one), and torchvision's NMS on a CPU-only torch.

    Needs the ``[train]`` extra (torch, ultralytics); says so with :class:`Missing` when it is absent.
    """
    require_extra(("torch", "torchvision", "ultralytics"))
    config_dir = inputs.work_dir("yolo_config")
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
