"""Model specs: the JSON file beside each ``.tflite`` that says how to feed it and read it.

A spec records the task, input size, colour order, resize mode, normalisation, preprocessing profile,
labels, which output tensor plays which role, and the SHA-256 of the model file. :func:`load_model`
opens a model together with its spec and refuses, with a sentence that says why, a model that
disagrees with its spec. Third-party models without a spec get one from explicit arguments
(:meth:`ModelSpec.for_third_party_classifier`).

The JSON schema is documented in ``docs/ARCHITECTURE.md``. ``input.size`` is ``[height, width]``, the order
of the input tensor ``[1, H, W, 3]`` and of ``edgeskin.core.geometry.resize_to_input``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from edgeskin.core.views import check_views
from edgeskin.errors import ChecksumMismatchError, ConfigError, ModelError, SpecError
from edgeskin.runtime._exports import EXPORTS as _RUNTIME_EXPORTS

if TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import Unpack

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
TASKS: tuple[str, ...] = ("classification", "detection")
COLOR_ORDERS: tuple[str, ...] = ("RGB", "BGR")
RESIZE_MODES: tuple[str, ...] = ("stretch", "letterbox")
OUTPUTS_ARE: tuple[str, ...] = ("probabilities", "logits")
DETECTION_LAYOUTS: tuple[str, ...] = ("yolo", "yolo_dfl")
BOX_FORMATS: tuple[str, ...] = ("xywh_normalized", "xywh_pixels")
REQUIRED_OUTPUT_ROLE = {"classification": "probabilities", "detection": "predictions"}
THIRD_PARTY_MEAN = 127.5  # maps pixels [0, 255] to [-1, 1], what most TF/Keras ImageNet models expect
THIRD_PARTY_STD = 127.5

_KNOWN_KEYS = {
    "format_version", "name", "task", "model_file", "sha256", "input", "preprocessing", "labels", "outputs",
    "outputs_are", "layout", "boxes", "cam", "calibration", "triage", "thresholds", "metrics", "provenance", "tta",
}  # fmt: skip


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def spec_path_for(model_path: str | Path) -> Path:
    """The spec file of a model: ``<stem>.json`` beside the ``.tflite``."""
    path = Path(model_path)
    return path.with_name(path.stem + ".json")


def read_labels(path: str | Path) -> tuple[str, ...]:
    """Read a labels file: one label per line, in output order.

    Blank lines at the end are ignored. Files in the ``"<index> <label>"`` style (Coral's) are accepted
    when every line carries its index, 0, 1, 2, ... in order.

    Raises:
        SpecError: the file is missing, unreadable or empty.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"labels file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read labels file {path}: {exc}") from exc
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise SpecError(f"labels file {path} is empty: expected one label per line")
    indexed = [re.match(r"^(\d+)[\s:]+(.+)$", line) for line in lines]
    if all(indexed) and [int(m.group(1)) for m in indexed] == list(range(len(lines))):  # type: ignore[union-attr]
        lines = [m.group(2).strip() for m in indexed]  # type: ignore[union-attr]
    return tuple(lines)


def _numbers(value: Any, what: str, *, length: int | None = None) -> tuple[float, ...]:
    values = value if isinstance(value, (list, tuple)) else [value]
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise SpecError(f"{what}: expected numbers, got {value!r}") from None
    if not all(math.isfinite(v) for v in out):
        raise SpecError(f"{what}: expected finite numbers, got {value!r}")
    if length is not None and len(out) != length:
        raise SpecError(f"{what}: expected {length} numbers, got {len(out)} ({value!r})")
    return out


def _channels(value: Any, what: str) -> tuple[float, ...]:
    out = _numbers(value, what)
    if len(out) == 1:
        out = out * 3
    if len(out) != 3:
        raise SpecError(f"{what}: expected 1 or 3 numbers (one per colour channel), got {len(out)}")
    return out


def _choice(value: Any, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise SpecError(f"{what}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
    return str(value)


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return dict(value)


@dataclass(frozen=True)
class InputSpec:
    """How to feed a model.

    Attributes:
        size: ``(height, width)`` of the model input in pixels (tensor order).
        color_order: ``"RGB"`` or ``"BGR"``: the channel order the model was trained on.
        resize: ``"stretch"`` (resize to size, aspect ratio not kept) or ``"letterbox"`` (fit and pad).
        mean: Per-channel mean subtracted from float pixels in [0, 255].
        std: Per-channel divisor applied after the mean.
    """

    size: tuple[int, int]
    color_order: str = "RGB"
    resize: str = "stretch"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        size = self.size
        if (
            not isinstance(size, (list, tuple))
            or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
        ):
            raise SpecError(f"input.size: expected [height, width] as two positive integers, got {size!r}")
        object.__setattr__(self, "size", (int(size[0]), int(size[1])))
        _choice(self.color_order, COLOR_ORDERS, "input.color_order")
        _choice(self.resize, RESIZE_MODES, "input.resize")
        object.__setattr__(self, "mean", _channels(self.mean, "input.mean"))
        std = _channels(self.std, "input.std")
        if any(v == 0 for v in std):
            raise SpecError(f"input.std: expected non-zero values, got {list(std)}")
        object.__setattr__(self, "std", std)

    @property
    def height(self) -> int:
        return self.size[0]

    @property
    def width(self) -> int:
        return self.size[1]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        data = _mapping(data, "input")
        if "size" not in data:
            raise SpecError("input.size is missing: expected [height, width]")
        unknown = set(data) - {"size", "color_order", "resize", "mean", "std"}
        if unknown:
            raise SpecError(f"input: unknown field(s) {sorted(unknown)}")
        size = data["size"]
        if isinstance(size, list):
            size = tuple(size)
        return cls(
            size=size,
            color_order=data.get("color_order", "RGB"),
            resize=data.get("resize", "stretch"),
            mean=data.get("mean", 0.0),
            std=data.get("std", 1.0),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "color_order": self.color_order,
            "resize": self.resize,
            "mean": list(self.mean),
            "std": list(self.std),
        }


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to feed a model and read its outputs (the ``<model>.json`` beside it).

    Attributes:
        name: Model name.
        task: ``"classification"`` or ``"detection"``.
        input: Input size, colour order, resize mode and normalisation.
        labels: Class names in output order.
        outputs: Output role → output name (signature name, or tensor name without a signature), e.g.
            ``{"probabilities": "probs", "features": "features"}`` or ``{"predictions": "output_0"}``.
        model_file: File name of the ``.tflite`` the spec belongs to.
        sha256: Hex SHA-256 of the model file (checked at load when present).
        preprocessing: Preprocessing profile as a dict (``PreprocessingProfile.from_dict``), the name of a
            built-in profile, or None.
        outputs_are: Whether the classification output is ``"probabilities"`` (softmax inside the
            model) or ``"logits"``.
        layout: Detection output layout (``"yolo"``: ``[1, 4 + n_classes, N]`` decoded in the graph;
            ``"yolo_dfl"``: the raw DFL box logits ``[1, 64, N]`` as "predictions" and the class scores
            ``[1, n_classes, N]`` as "scores", decoded by :mod:`edgeskin.core.dfl`, for the Edge TPU).
        boxes: Detection box format (``"xywh_normalized"`` or ``"xywh_pixels"``).
        cam: ``{"weights": (C_features, n_classes), "bias": (n_classes,)}`` of the Dense head, or None.
        calibration: ``{"temperature": T}``, optionally ``"top_label": {"x": [...], "y": [...],
            "max_slope": s}``, a monotone piecewise-linear map of the top probability whose slope is at
            most ``s`` (:func:`edgeskin.calibration.fit_top_label`); a step-shaped map is refused
            (:func:`edgeskin.calibration.check_top_label`).
        triage: ``{"malignant_threshold": t}``.
        thresholds: Detection ``{"confidence": ..., "iou": ...}``.
        tta: Classification: test-time augmentation views whose logits the Classifier averages
            (:data:`edgeskin.core.views.VIEWS`, e.g. ``["identity", "hflip", "vflip", "rot180"]``); empty:
            the input alone.
        metrics: Free-form measured metrics.
        provenance: Free-form origin (data, training run, conversion).
        extras: Any other top-level JSON fields, preserved on save.
        format_version: Spec format version (1).
    """

    name: str
    task: str
    input: InputSpec
    labels: tuple[str, ...]
    outputs: Mapping[str, str]
    model_file: str | None = None
    sha256: str | None = None
    preprocessing: Mapping[str, Any] | str | None = None
    outputs_are: str = "probabilities"
    layout: str | None = None
    boxes: str | None = None
    cam: Mapping[str, Any] | None = None
    calibration: Mapping[str, Any] = field(default_factory=dict)
    triage: Mapping[str, Any] = field(default_factory=dict)
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    tta: tuple[str, ...] = ()
    metrics: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)
    extras: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SpecError(f"name: expected a non-empty string, got {self.name!r}")
        _choice(self.task, TASKS, "task")
        if not isinstance(self.input, InputSpec):
            object.__setattr__(self, "input", InputSpec.from_dict(self.input))
        if isinstance(self.labels, str) or not all(isinstance(v, str) for v in self.labels):
            raise SpecError(f"labels: expected a list of strings, got {self.labels!r}")
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.task == "classification" and not self.labels:
            raise SpecError("labels: a classification spec needs its class names in output order")
        outputs = _mapping(self.outputs, "outputs")
        if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in outputs.items()):
            raise SpecError(f"outputs: expected role -> output name strings, got {outputs!r}")
        role = REQUIRED_OUTPUT_ROLE[self.task]
        if role not in outputs:
            raise SpecError(f"outputs: a {self.task} spec needs the {role!r} role, got roles {sorted(outputs)}")
        object.__setattr__(self, "outputs", outputs)
        _choice(self.outputs_are, OUTPUTS_ARE, "outputs_are")
        if self.task == "detection":
            _choice(self.layout, DETECTION_LAYOUTS, "layout")
            _choice(self.boxes, BOX_FORMATS, "boxes")
            if self.layout == "yolo_dfl" and ("scores" not in outputs or self.boxes != "xywh_normalized"):
                raise SpecError('layout "yolo_dfl": expected a "scores" output role and boxes "xywh_normalized"')
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", str(self.sha256)):
            raise SpecError(f"sha256: expected 64 lowercase hex digits, got {self.sha256!r}")
        if self.preprocessing is not None:
            if not isinstance(self.preprocessing, str):
                object.__setattr__(self, "preprocessing", _mapping(self.preprocessing, "preprocessing"))
            self.preprocessing_profile()  # fail at load, not at the first frame
        for name in ("calibration", "triage", "thresholds", "metrics", "provenance", "extras"):
            object.__setattr__(self, name, _mapping(getattr(self, name), name))
        if self.format_version != FORMAT_VERSION:
            raise SpecError(
                f"format_version: this edgeskin reads version {FORMAT_VERSION}, got {self.format_version!r}"
            )
        temperature = self.calibration.get("temperature", 1.0)
        if not isinstance(temperature, (int, float)) or not temperature > 0 or not math.isfinite(temperature):
            raise SpecError(f"calibration.temperature: expected a positive number, got {temperature!r}")
        if "top_label" in self.calibration:
            from edgeskin.calibration import check_top_label

            try:
                check_top_label(self.calibration["top_label"])
            except ValueError as exc:
                raise SpecError(f"calibration.top_label: {exc}") from None
        threshold = self.triage.get("malignant_threshold")
        if threshold is not None and not (isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0):
            raise SpecError(f"triage.malignant_threshold: expected a number in [0, 1], got {threshold!r}")
        if self.cam is not None:
            self._check_cam()
        if self.tta:
            if self.task != "classification":
                raise SpecError("tta: test-time augmentation is for classification specs")
            try:
                object.__setattr__(self, "tta", check_views(self.tta, self.input.size))
            except ConfigError as exc:
                raise SpecError(f"tta: {exc}") from None

    def _check_cam(self) -> None:
        cam = _mapping(self.cam, "cam")
        if self.task != "classification":
            raise SpecError("cam: only a classification spec can carry CAM weights")
        if "weights" not in cam:
            raise SpecError("cam.weights is missing: expected the Dense head's (C_features, n_classes) kernel")
        weights = cam["weights"]
        rows = weights if isinstance(weights, (list, tuple)) else None
        if not rows or not all(isinstance(r, (list, tuple)) and len(r) == len(self.labels) for r in rows):
            raise SpecError(
                f"cam.weights: expected a (C_features, {len(self.labels)}) nested list, one column per label"
            )
        bias = cam.get("bias")
        if bias is not None and len(_numbers(bias, "cam.bias")) != len(self.labels):
            raise SpecError(f"cam.bias: expected {len(self.labels)} numbers (one per label), got {len(bias)}")
        object.__setattr__(self, "cam", cam)

    # -- convenience -------------------------------------------------------------------------------
    @property
    def temperature(self) -> float:
        """Calibration temperature (1.0: uncalibrated)."""
        return float(self.calibration.get("temperature", 1.0))

    @property
    def malignant_threshold(self) -> float | None:
        value = self.triage.get("malignant_threshold")
        return None if value is None else float(value)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def output_name(self, role: str) -> str | None:
        """The output name for ``role`` (e.g. ``"probabilities"``, ``"features"``), or None."""
        return self.outputs.get(role)

    def preprocessing_profile(self) -> Any:
        """The spec's :class:`~edgeskin.core.preprocess.PreprocessingProfile`, or None.

        Raises:
            SpecError: the profile is unknown or malformed.
        """
        if self.preprocessing is None:
            return None
        from edgeskin.core.preprocess import PreprocessingProfile, get_profile
        from edgeskin.errors import ConfigError

        try:
            if isinstance(self.preprocessing, str):
                return get_profile(self.preprocessing)
            return PreprocessingProfile.from_dict(self.preprocessing)
        except ConfigError as exc:
            raise SpecError(f"preprocessing: {exc}") from exc

    def cam_arrays(self) -> tuple[Any, Any] | None:
        """``(weights (C, n_classes) float32, bias (n_classes,) float32)`` or None without CAM."""
        if self.cam is None:
            return None
        import numpy as np

        weights = np.asarray(self.cam["weights"], dtype=np.float32)
        bias = np.asarray(self.cam.get("bias", np.zeros(len(self.labels))), dtype=np.float32)
        return weights, bias

    # -- (de)serialisation ------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Build and validate a spec from its JSON dict; unknown top-level fields go to ``extras``."""
        if not isinstance(data, Mapping):
            raise SpecError(f"a model spec must be a JSON object, got {type(data).__name__}")
        missing = [key for key in ("name", "task", "input", "outputs") if key not in data]
        if missing:
            raise SpecError(f"missing field(s): {', '.join(missing)}")
        extras = {k: v for k, v in data.items() if k not in _KNOWN_KEYS}
        labels = data.get("labels", [])
        if not isinstance(labels, (list, tuple)):
            raise SpecError(f"labels: expected a list of strings, got {type(labels).__name__}")
        return cls(
            name=data["name"],
            task=data["task"],
            input=InputSpec.from_dict(data["input"]),
            labels=tuple(labels),
            outputs=_mapping(data["outputs"], "outputs"),
            model_file=data.get("model_file"),
            sha256=data.get("sha256"),
            preprocessing=data.get("preprocessing"),
            outputs_are=data.get("outputs_are", "probabilities"),
            layout=data.get("layout"),
            boxes=data.get("boxes"),
            cam=data.get("cam"),
            calibration=_mapping(data.get("calibration"), "calibration"),
            triage=_mapping(data.get("triage"), "triage"),
            thresholds=_mapping(data.get("thresholds"), "thresholds"),
            tta=data.get("tta") or (),
            metrics=_mapping(data.get("metrics"), "metrics"),
            provenance=_mapping(data.get("provenance"), "provenance"),
            extras=extras,
            format_version=data.get("format_version", FORMAT_VERSION),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON dict of this spec (``from_dict(to_dict())`` gives an equal spec)."""
        out: dict[str, Any] = {
            "format_version": self.format_version,
            "name": self.name,
            "task": self.task,
            "model_file": self.model_file,
            "sha256": self.sha256,
            "input": self.input.to_dict(),
            "preprocessing": (
                self.preprocessing
                if self.preprocessing is None or isinstance(self.preprocessing, str)
                else dict(self.preprocessing)
            ),
            "labels": list(self.labels),
            "outputs": dict(self.outputs),
            "outputs_are": self.outputs_are,
        }
        if self.task == "detection":
            out["layout"] = self.layout
            out["boxes"] = self.boxes
        for name in ("cam", "calibration", "triage", "thresholds", "metrics", "provenance"):
            value = getattr(self, name)
            if value:
                out[name] = dict(value)
        if self.tta:
            out["tta"] = list(self.tta)
        out.update(self.extras)
        return out

    def save(self, path: str | Path) -> Path:
        """Write the spec as JSON (an explicit save; nothing else writes to disk)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    def with_updates(self, **changes: Any) -> ModelSpec:
        """A copy with some fields replaced (validated again)."""
        return replace(self, **changes)

    # -- third-party models ------------------------------------------------------------------------
    @classmethod
    def for_third_party_classifier(
        cls,
        model_path: str | Path,
        labels: str | Path | Sequence[str],
        mean: float | Sequence[float] = THIRD_PARTY_MEAN,
        std: float | Sequence[float] = THIRD_PARTY_STD,
        **spec_args: Unpack[ThirdPartySpecArgs],
    ) -> ModelSpec:
        """A spec for a classification ``.tflite`` that came without one.

        The input size comes from the input tensor, the output from the model's only (or named) output,
        the SHA-256 from the file. ``outputs_are`` is inferred when not given: "probabilities" when the
        graph ends in a softmax or the output is quantized to exactly [0, 1], else "logits".

        Args:
            model_path: The ``.tflite`` file.
            labels: A labels file (one label per line, in output order) or the labels themselves.
            mean: Per-channel (or one) mean subtracted from pixels in [0, 255]; default 127.5.
            std: Per-channel (or one) divisor; default 127.5 (pixels → [-1, 1]).
            name: Spec name (default: the file stem).
            resize: ``"stretch"`` or ``"letterbox"``.
            color_order: ``"RGB"`` or ``"BGR"``.
            outputs_are: ``"probabilities"`` or ``"logits"`` (default: inferred).
            output: Output name to classify from, when the model has several.

        Raises:
            ModelError: the file is not a usable TFLite model.
            SpecError: the labels do not match the output size, or the input is not an image tensor.
        """
        from edgeskin.runtime.interpreter import TFLiteModel

        with TFLiteModel.from_file(model_path) as model:
            return _third_party_spec(model, Path(model_path), labels, mean, std, **spec_args)


class ThirdPartySpecArgs(TypedDict, total=False):
    """The optional keyword arguments that say how to feed and read a classifier that came without a spec, taken
    by :meth:`ModelSpec.for_third_party_classifier` (which documents them) and :func:`load_third_party_classifier`."""

    name: str | None
    resize: str
    color_order: str
    outputs_are: str | None
    output: str | None


def _third_party_spec(
    model: Any,
    path: Path,
    labels: str | Path | Sequence[str],
    mean: Any,
    std: Any,
    *,
    name: str | None = None,
    resize: str = "stretch",
    color_order: str = "RGB",
    outputs_are: str | None = None,
    output: str | None = None,
) -> ModelSpec:
    label_list = read_labels(labels) if isinstance(labels, (str, Path)) else tuple(labels)
    shape = model.input.shape
    if len(shape) != 4 or shape[3] != 3:
        raise SpecError(f"{path}: expected an image input tensor [1, height, width, 3], got {list(shape)}")
    if output is None:
        if len(model.outputs) != 1:
            raise SpecError(
                f"{path}: the model has {len(model.outputs)} outputs {list(model.output_names)}; name the one with the class scores"
            )
        output = model.outputs[0].name
    info = model.output(output)
    if outputs_are is None:
        outputs_are = "probabilities" if _looks_like_probabilities(model, info) else "logits"
    spec = ModelSpec(
        name=name or path.stem,
        task="classification",
        input=InputSpec(size=(shape[1], shape[2]), color_order=color_order, resize=resize, mean=mean, std=std),
        labels=label_list,
        outputs={"probabilities": output},
        model_file=path.name,
        sha256=sha256_file(path),
        outputs_are=outputs_are,
        provenance={"source": "third-party", "spec": "built from explicit arguments"},
    )
    _check_against_model(spec, model, path)
    return spec


def _looks_like_probabilities(model: Any, info: Any) -> bool:
    if info.is_quantized and len(info.scales) == 1:
        import numpy as np

        limits = np.iinfo(info.dtype)
        low, high = info.dequantize(np.array([limits.min, limits.max], dtype=info.dtype))
        if abs(float(low)) < 1e-6 and abs(float(high) - 1.0) < 0.01:
            return True
    ops = model.op_names()
    return bool(ops) and "SOFTMAX" in ops[-3:]


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate a spec JSON file.

    Raises:
        SpecError: missing or unreadable file, invalid JSON, or an invalid spec (the message names the
            file and the field).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"model spec not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}: not valid JSON ({exc})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read model spec {path}: {exc}") from exc
    try:
        return ModelSpec.from_dict(data)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from exc


def _element_count(shape: Sequence[int]) -> int:
    count = 1
    for dim in shape[1:] if len(shape) > 1 else shape:
        count *= int(dim)
    return count


def _check_against_model(spec: ModelSpec, model: Any, path: Path) -> None:
    """Check the model's tensors against the spec (input size, output names and sizes)."""
    shape = model.input.shape
    height, width = spec.input.size
    if len(shape) != 4 or (shape[1], shape[2]) != (height, width) or shape[3] != 3:
        raise SpecError(
            f"{path}: the spec says input size [{height}, {width}] (height, width) with 3 channels, "
            f"but the model's input tensor is {list(shape)} (batch, height, width, channels)"
        )
    names = set(model.output_names)
    for role, output in spec.outputs.items():
        if output not in names:
            raise SpecError(
                f"{path}: the spec's {role!r} output {output!r} is not an output of the model; "
                f"its outputs are {sorted(names)}"
            )
    if spec.task == "classification":
        info = model.output(spec.outputs["probabilities"])
        count = _element_count(info.shape)
        if count != len(spec.labels):
            hint = " (the labels may lack the 'background' first line)" if count == len(spec.labels) + 1 else ""
            raise SpecError(
                f"{path}: {len(spec.labels)} labels but the model's output {info.name!r} has {count} values "
                f"(shape {list(info.shape)}); expected one label per output{hint}"
            )
        if "features" in spec.outputs:
            features = model.output(spec.outputs["features"])
            if len(features.shape) != 4:
                raise SpecError(
                    f"{path}: the 'features' output must be a (1, H, W, C) feature map, got {list(features.shape)}"
                )
            cam = spec.cam_arrays()
            if cam is not None and cam[0].shape[0] != features.shape[3]:
                raise SpecError(
                    f"{path}: cam.weights has {cam[0].shape[0]} rows but the feature map has {features.shape[3]} channels"
                )
    elif spec.task == "detection" and spec.layout == "yolo_dfl":
        logits, scores = model.output(spec.outputs["predictions"]), model.output(spec.outputs["scores"])
        n = logits.shape[2] if len(logits.shape) == 3 and logits.shape[1] == 64 else logits.shape[1]
        if len(logits.shape) != 3 or 64 not in logits.shape[1:] or len(scores.shape) != 3 or n not in scores.shape[1:]:
            raise SpecError(
                f"{path}: yolo_dfl needs DFL logits [1, 64, N] and scores [1, n_classes, N], got "
                f"{list(logits.shape)} and {list(scores.shape)}"
            )
    elif spec.task == "detection":
        info = model.output(spec.outputs["predictions"])
        if len(info.shape) != 3:
            raise SpecError(f"{path}: YOLO predictions must be [1, 4 + n_classes, N], got {list(info.shape)}")
        if spec.labels and info.shape[1] != 4 + len(spec.labels):
            raise SpecError(
                f"{path}: {len(spec.labels)} labels but the predictions tensor {list(info.shape)} has "
                f"{info.shape[1]} rows; expected [1, 4 + {len(spec.labels)}, N]"
            )


def load_model(
    model_path: str | Path,
    spec: ModelSpec | str | Path | None = None,
    *,
    expected_task: str | None = None,
    num_threads: int | None = None,
    delegate: str = "cpu",
) -> tuple[Any, ModelSpec]:
    """Open a model with its spec, checking that they agree.

    Checks, in order: the file exists and is a TFLite flatbuffer; the task is the one expected; the
    SHA-256 matches the spec; the input tensor has the spec's size; every output the spec names exists;
    a classifier's output has one value per label.

    Args:
        model_path: The ``.tflite`` file.
        spec: A :class:`ModelSpec`, a path to its JSON, or None for ``<stem>.json`` beside the model.
        expected_task: ``"classification"`` or ``"detection"`` when the caller needs one.
        num_threads: Interpreter CPU threads.
        delegate: ``"cpu"``, ``"edgetpu"`` or ``"auto"``.

    Returns:
        ``(TFLiteModel, ModelSpec)``.

    Raises:
        ModelError: unusable file or the wrong task. ChecksumMismatchError: the file is not the one the
            spec describes. SpecError: spec missing, invalid, or disagreeing with the tensors.
    """
    from edgeskin.runtime.interpreter import TFLiteModel, check_model_file

    path = check_model_file(model_path)
    if spec is None:
        spec_path = spec_path_for(path)
        if not spec_path.exists():
            raise SpecError(
                f"no model spec beside {path} (expected {spec_path.name}); for a third-party classifier "
                f"give its labels file (--labels) and normalisation (--mean/--std)"
            )
        spec = load_spec(spec_path)
    elif not isinstance(spec, ModelSpec):
        spec = load_spec(spec)
    if expected_task is not None:
        _choice(expected_task, TASKS, "expected_task")
        if spec.task != expected_task:
            article = {"classification": "a classification", "detection": "a detection"}
            raise ModelError(
                f"{path}: this is {article[spec.task]} model (spec '{spec.name}'); {expected_task} was asked"
            )
    if spec.sha256 is not None:
        actual = sha256_file(path)
        if actual != spec.sha256:
            raise ChecksumMismatchError(
                f"{path}: SHA-256 {actual} does not match the spec's {spec.sha256}; the file is corrupt or "
                f"not the model the spec describes (re-download or re-convert it)"
            )
    else:
        logger.debug("spec %s has no sha256; the model file is not verified", spec.name)
    model = TFLiteModel.from_file(path, num_threads=num_threads, delegate=delegate)  # type: ignore[arg-type]
    try:
        _check_against_model(spec, model, path)
    except BaseException:
        model.close()
        raise
    return model, spec


def load_third_party_classifier(
    model_path: str | Path,
    labels: str | Path | Sequence[str],
    mean: float | Sequence[float] = THIRD_PARTY_MEAN,
    std: float | Sequence[float] = THIRD_PARTY_STD,
    *,
    num_threads: int | None = None,
    delegate: str = "cpu",
    **spec_args: Unpack[ThirdPartySpecArgs],
) -> tuple[Any, ModelSpec]:
    """Open a third-party classifier without a spec; see :meth:`ModelSpec.for_third_party_classifier`.

    Returns:
        ``(TFLiteModel, ModelSpec)``, the model opened once.
    """
    from edgeskin.runtime.interpreter import TFLiteModel

    path = Path(model_path)
    model = TFLiteModel.from_file(path, num_threads=num_threads, delegate=delegate)  # type: ignore[arg-type]
    try:
        spec = _third_party_spec(model, path, labels, mean, std, **spec_args)
    except BaseException:
        model.close()
        raise
    return model, spec


# The names edgeskin.runtime exports from this module (one list, in edgeskin.runtime._exports).
__all__ = list(_RUNTIME_EXPORTS["spec"])
