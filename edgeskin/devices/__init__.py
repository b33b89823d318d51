"""Device profiles: how to run edgeskin on a Raspberry Pi 4 or 5, a Pi 5 with a Coral USB Accelerator,
a Coral Dev Board, or an ordinary x86 computer.

A profile is a JSON file in ``edgeskin/devices/profiles/`` (installed with the package) naming the
interpreter threads, the delegate, the default frame source and its stream sizes, the model variant
(``int8`` for the CPU, ``edgetpu`` for the ``<name>_edgetpu.tflite`` models compiled for a Coral) and
the per-frame latency budget::

    profile = load_profile("rpi4")
    pipeline = LesionPipeline.from_defaults(threads=profile.threads, delegate=profile.delegate)

An unknown name fails with the list of known ones. ``load_profile`` also accepts the path of a JSON file
of the same shape, for a device of your own.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeskin.core.views import check_views
from edgeskin.errors import ConfigError, ModelError
from edgeskin.runtime.interpreter import check_delegate

__all__ = [
    "PROFILES_DIR",
    "MODEL_VARIANTS",
    "EDGETPU_SUFFIX",
    "DeviceProfile",
    "available_profiles",
    "load_profile",
    "detect_profile",
    "edgetpu_model_path",
    "pipeline_options",
]

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
MODEL_VARIANTS: tuple[str, ...] = ("int8", "edgetpu")
EDGETPU_SUFFIX = "_edgetpu"  # edgetpu_compiler names its output <name>_edgetpu.tflite


def _size(value: Any, what: str) -> tuple[int, int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ConfigError(f"{what}: expected [width, height] as two positive integers, got {value!r}")
    return int(value[0]), int(value[1])


@dataclass(frozen=True)
class DeviceProfile:
    """How edgeskin runs on one kind of device.

    Attributes:
        name: Profile name, e.g. ``"rpi4"``.
        description: One line for people.
        threads: Interpreter CPU threads; None uses every core.
        delegate: ``"cpu"``, ``"edgetpu"`` or ``"auto"``.
        source: Default frame source (``"picamera2"``, a camera index as text, ...).
        lores_size: (width, height) of the analysis stream.
        main_size: (width, height) of the display / still stream (picamera2).
        model_variant: ``"int8"`` (CPU models) or ``"edgetpu"`` (``<name>_edgetpu.tflite``).
        classifier: Classifier model name or path; None: the shipped default.
        detector: Detector model name or path; None: the shipped default.
        classifier_tta: Classifier test-time augmentation views (``models.tta``); None: the classifier
            spec's; ``[]``: one view (each view is one more classifier invoke per lesion).
        latency_budget_ms: Target time per analysed frame; the live loop reports when it is exceeded.
        smoothing: History weight of the live diagnosis average.
        notes: Free text (why these numbers).
    """

    name: str
    description: str
    threads: int | None
    delegate: str
    source: str
    lores_size: tuple[int, int]
    main_size: tuple[int, int]
    model_variant: str = "int8"
    classifier: str | None = None
    detector: str | None = None
    classifier_tta: tuple[str, ...] | None = None
    latency_budget_ms: float = 100.0
    smoothing: float = 0.6
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(
                f"profile {self.name!r}: threads must be a positive integer or null, got {self.threads!r}"
            )
        check_delegate(self.delegate, f"profile {self.name!r}: delegate")
        if self.model_variant not in MODEL_VARIANTS:
            raise ConfigError(
                f"profile {self.name!r}: models.variant must be one of {', '.join(MODEL_VARIANTS)}, "
                f"got {self.model_variant!r}"
            )
        if self.delegate == "edgetpu" and self.model_variant != "edgetpu":
            raise ConfigError(
                f"profile {self.name!r}: the edgetpu delegate needs models compiled for the Edge TPU "
                '(models.variant "edgetpu")'
            )
        if self.lores_size[0] > self.main_size[0] or self.lores_size[1] > self.main_size[1]:
            raise ConfigError(
                f"profile {self.name!r}: lores_size {self.lores_size} is larger than main_size {self.main_size}"
            )
        if self.classifier_tta is not None:
            object.__setattr__(self, "classifier_tta", check_views(self.classifier_tta))
        if not 0 <= self.smoothing < 1:
            raise ConfigError(f"profile {self.name!r}: live.smoothing must lie in [0, 1), got {self.smoothing}")
        if not self.latency_budget_ms > 0:
            raise ConfigError(
                f"profile {self.name!r}: latency_budget_ms must be positive, got {self.latency_budget_ms}"
            )

    @property
    def num_threads(self) -> int:
        """Threads to give the interpreter (``threads``, or every core when None)."""
        return self.threads if self.threads is not None else max(1, os.cpu_count() or 1)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "profile") -> DeviceProfile:
        """Build a profile from its JSON object (see ``edgeskin/devices/profiles/rpi4.json``)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{origin}: expected a JSON object, got {type(data).__name__}")
        missing = [key for key in ("name", "threads", "delegate", "camera") if key not in data]
        if missing:
            raise ConfigError(f"{origin}: missing {', '.join(missing)}")
        camera = data["camera"]
        if not isinstance(camera, Mapping):
            raise ConfigError(f"{origin}: camera must be an object with lores_size and main_size")
        models = data.get("models") or {}
        live = data.get("live") or {}
        known = {
            "name",
            "description",
            "threads",
            "delegate",
            "source",
            "camera",
            "models",
            "latency_budget_ms",
            "live",
            "notes",
        }
        return cls(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            threads=data["threads"],
            delegate=str(data["delegate"]),
            source=str(data.get("source", "0")),
            lores_size=_size(camera.get("lores_size"), f"{origin}: camera.lores_size"),
            main_size=_size(camera.get("main_size"), f"{origin}: camera.main_size"),
            model_variant=str(models.get("variant", "int8")),
            classifier=models.get("classifier"),
            detector=models.get("detector"),
            classifier_tta=models.get("tta"),
            latency_budget_ms=float(data.get("latency_budget_ms", 100.0)),
            smoothing=float(live.get("smoothing", 0.6)),
            notes=str(data.get("notes", "")),
            extra={k: v for k, v in data.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "threads": self.threads,
            "delegate": self.delegate,
            "source": self.source,
            "camera": {"lores_size": list(self.lores_size), "main_size": list(self.main_size)},
            "models": {
                "variant": self.model_variant,
                "classifier": self.classifier,
                "detector": self.detector,
                **({"tta": list(self.classifier_tta)} if self.classifier_tta is not None else {}),
            },
            "latency_budget_ms": self.latency_budget_ms,
            "live": {"smoothing": self.smoothing},
            "notes": self.notes,
            **dict(self.extra),
        }


def available_profiles() -> tuple[str, ...]:
    """Names of the profiles shipped with edgeskin, sorted."""
    return tuple(sorted(p.stem for p in PROFILES_DIR.glob("*.json")))


def load_profile(name: str | os.PathLike[str]) -> DeviceProfile:
    """Load a shipped profile by name (``"rpi4"``), or a profile JSON file by path.

    Raises:
        ConfigError: Unknown name (the message lists the known ones), unreadable or invalid JSON.
    """
    text = os.fspath(name)
    path = Path(text)
    if path.suffix.lower() == ".json" or os.sep in text or "/" in text:
        if not path.is_file():
            raise ConfigError(f"{path}: device profile file not found")
    else:
        path = PROFILES_DIR / f"{text}.json"
        if not path.is_file():
            known = ", ".join(available_profiles()) or "(none installed)"
            raise ConfigError(f"unknown device profile {text!r}; known profiles: {known}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the device profile ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    return DeviceProfile.from_dict(data, origin=str(path))


def detect_profile(model_path: str | os.PathLike[str] | None = None, machine: str | None = None) -> str:
    """Best guess of the profile for this machine: ``rpi5``, ``rpi4`` or ``x86``.

    Coral hardware cannot be seen from here without its library; choose ``rpi5-coral-usb`` or
    ``coral-devboard`` by name.
    """
    from edgeskin.capture.sources import pi_generation  # noqa: PLC0415 - keeps this module light

    generation = pi_generation(model_path)
    if generation is not None:
        return "rpi5" if generation >= 5 else "rpi4"
    machine = (machine or platform.machine()).lower()
    if machine in ("x86_64", "amd64", "i686", "i386"):
        return "x86"
    raise ConfigError(
        f"cannot tell which device profile fits this {machine} machine; choose one of {', '.join(available_profiles())}"
    )


def edgetpu_model_path(model_path: str | os.PathLike[str]) -> Path:
    """The Edge TPU build of a model: ``<stem>_edgetpu.tflite`` beside it (its spec: ``<stem>_edgetpu.json``)."""
    path = Path(model_path)
    if path.stem.endswith(EDGETPU_SUFFIX):
        return path
    return path.with_name(f"{path.stem}{EDGETPU_SUFFIX}{path.suffix or '.tflite'}")


def _edgetpu_build(model: Path, role: str) -> Path:
    compiled = edgetpu_model_path(model)
    absent = [p.name for p in (compiled, compiled.with_suffix(".json")) if not p.is_file()]
    if absent:
        raise ModelError(
            f"the Edge TPU {role} {' and '.join(absent)} {'is' if len(absent) == 1 else 'are'} missing from "
            f"{compiled.parent}; compile {model.name} with edgetpu_compiler on an x86-64 machine (see "
            "devices/README.md), or run on the CPU with --delegate cpu"
        )
    return compiled


def pipeline_options(
    profile: DeviceProfile, *, threads: int | None = None, delegate: str | None = None
) -> dict[str, Any]:
    """Keyword arguments for ``LesionPipeline.from_defaults`` that run the profile's models on its hardware.

    Args:
        profile: The device profile.
        threads: Overrides the profile's threads.
        delegate: Overrides the profile's delegate. ``"cpu"`` on an ``edgetpu`` profile uses the plain int8
            models (a model compiled for the Edge TPU cannot run without it).

    Raises:
        ModelError: The profile wants Edge TPU models that are not there (the message says how to compile).
        NoDefaultModelError: The shipped models are not installed.
    """
    delegate = delegate or profile.delegate
    options: dict[str, Any] = {"threads": threads if threads is not None else profile.num_threads, "delegate": delegate}
    if profile.classifier is not None:
        options["classifier"] = profile.classifier
    if profile.detector is not None:
        options["detector"] = profile.detector
    if profile.classifier_tta is not None:
        options["tta"] = profile.classifier_tta
    if profile.model_variant == "edgetpu" and delegate != "cpu":
        from edgeskin.models import default_classifier_path, default_detector_path  # noqa: PLC0415

        classifier = Path(options.get("classifier") or default_classifier_path())
        options["classifier"] = _edgetpu_build(classifier, "classifier")
        detector = options.get("detector")
        if detector is None:
            detector = default_detector_path()
        if str(detector) not in ("classical", "none"):
            options["detector"] = _edgetpu_build(Path(detector), "detector")
    return options
