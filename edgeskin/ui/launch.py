"""Helpers of the Streamlit app and of ``edgeskin ui``, kept free of Streamlit so they test quickly.

* :func:`streamlit_command` builds the ``python -m streamlit run <app.py> ...`` command line.
* :func:`analyse` decodes uploaded bytes in memory and runs the pipeline (nothing touches the disk).
* :func:`model_facts`, :func:`preprocessing_views`, :func:`report` and :func:`encode_png` turn a result into
  what the page shows and offers for download; pictures are drawn by the annotators (:mod:`edgeskin.annotate`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeskin.capture.quality import QualityReport
from edgeskin.capture.quality import assess_quality as assess
from edgeskin.errors import ConfigError, EdgeskinError
from edgeskin.labels import DX_NAMES
from edgeskin.results import DETECTOR_UNSURE, NO_LESION_FOUND, RETAKE_ADVICE, Lesion, PipelineResult
from edgeskin.roles import HasSpec, InspectablePipeline
from edgeskin.runtime.spec import ModelSpec

__all__ = [
    "APP_PATH",
    "DEFAULT_STREAMLIT_OPTIONS",
    "NOT_A_DIAGNOSIS",
    "NO_LESION_MESSAGE",
    "RETAKE_ADVICE",
    "UNSURE_MESSAGE",
    "Analysis",
    "ModelFacts",
    "analyse",
    "assess_quality",
    "check_streamlit_args",
    "classifier_spec",
    "detector_spec",
    "dx_title",
    "encode_png",
    "headline_metrics",
    "load_pipeline",
    "model_card_text",
    "model_facts",
    "preprocessing_views",
    "quality_messages",
    "report",
    "streamlit_command",
]

APP_PATH = Path(__file__).resolve().with_name("app.py")

# Defaults for a local, private app; options given to ``edgeskin ui`` come later and win.
DEFAULT_STREAMLIT_OPTIONS: Mapping[str, str] = {
    "server.address": "127.0.0.1",
    "browser.gatherUsageStats": "false",
    "global.developmentMode": "false",
    # The packaged app does not change while it runs; watching files costs CPU on a Pi.
    "server.fileWatcherType": "none",
    "server.runOnSave": "false",
    # No "Deploy" button or developer menu: the page is an instrument, not a development server.
    "client.toolbarMode": "minimal",
}

# The pipeline's messages (edgeskin.results): a frame without an answer says why with one of RETAKE_ADVICE's keys,
# and the page adds the advice; a lesion answered from the detector's unsure band comes with UNSURE_MESSAGE.
NO_LESION_MESSAGE = NO_LESION_FOUND
UNSURE_MESSAGE = DETECTOR_UNSURE
ABSENT_MESSAGES = tuple(RETAKE_ADVICE)

NOT_A_DIAGNOSIS = (
    "Research prototype, not a medical device. The results are not a diagnosis and must not replace "
    "the examination of a skin lesion by a doctor. See a dermatologist about any lesion that changes, "
    "bleeds, itches or worries you."
)


# -- the command line --------------------------------------------------------------------------------
def check_streamlit_args(args: Sequence[str]) -> list[str]:
    """Check that ``args`` are Streamlit config options (``--section.option value`` or ``--a.b=value``).

    Raises:
        ConfigError: an argument is neither such an option nor the value after one.
    """
    args = list(args)
    expecting_value = False
    for arg in args:
        if arg.startswith("--") and "." in arg.split("=", 1)[0]:
            expecting_value = "=" not in arg
        elif expecting_value:
            expecting_value = False
        else:
            raise ConfigError(
                f"unexpected argument {arg!r}: expected Streamlit options such as --server.port 8501 "
                "or --server.headless true (see 'streamlit run --help')"
            )
    if expecting_value:
        raise ConfigError(f"{args[-1]}: expected a value after the option")
    return args


def streamlit_command(args: Sequence[str] = (), python: str | None = None) -> list[str]:
    """The command that serves the packaged app: ``python -m streamlit run app.py <options>``.

    Args:
        args: Streamlit options, e.g. ``["--server.port", "8502", "--server.headless", "true"]``; they
            override :data:`DEFAULT_STREAMLIT_OPTIONS` (Streamlit keeps the last value of an option).
        python: The interpreter; default: the running one.

    Raises:
        ConfigError: ``args`` holds something other than Streamlit options.
    """
    command = [python or sys.executable, "-m", "streamlit", "run", str(APP_PATH)]
    for option, value in DEFAULT_STREAMLIT_OPTIONS.items():
        command += [f"--{option}", value]
    return command + check_streamlit_args(args)


# -- models ------------------------------------------------------------------------------------------
def load_pipeline() -> InspectablePipeline:
    """The default :class:`~edgeskin.tasks.pipeline.LesionPipeline` (shipped detector and classifier).

    Raises:
        NoDefaultModelError: the shipped models are not installed.
        ModelError: a model is corrupt or disagrees with its spec.
    """
    from edgeskin.tasks.pipeline import LesionPipeline

    return LesionPipeline.from_defaults()


def _spec_of(component: object) -> ModelSpec | None:
    return component.spec if isinstance(component, HasSpec) else None


def classifier_spec(pipeline: InspectablePipeline) -> ModelSpec | None:
    """The classifier's :class:`~edgeskin.runtime.spec.ModelSpec` of a pipeline, or None."""
    return _spec_of(pipeline.classifier)


def detector_spec(pipeline: InspectablePipeline) -> ModelSpec | None:
    """The detector's :class:`~edgeskin.runtime.spec.ModelSpec` of a pipeline, or None (no detector, or the
    classical localiser)."""
    return _spec_of(pipeline.detector)


@dataclass(frozen=True)
class ModelFacts:
    """What the page says about one model, from its spec (and the model card for the licence)."""

    role: str
    name: str
    input_size: str
    metrics: dict[str, str] = field(default_factory=dict)
    licence: str | None = None
    data: str | None = None
    sha256: str | None = None


# The metrics of the shipped INT8 model, when a spec records several variants (float, INT8, ...).
_PREFERRED_METRICS = ("int8_calibrated", "int8", "tflite", "int8_uncalibrated", "validation", "val")
_HEADLINE_METRICS = ("balanced_accuracy", "auc", "malignant_auc", "map50", "map50_95", "precision", "recall")


def _format_metric(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float, np.floating, np.integer)):
        value = float(value)
        return f"{value:.3f}" if abs(value) < 10 else f"{value:g}"
    return None


def _flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float | str]:
    """Numeric metrics as ``{"dx balanced accuracy": "0.673"}``; nested dicts are walked, the rest skipped."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}".replace("_", " ")
        if isinstance(value, Mapping):
            out.update(_flatten_metrics(value, f"{prefix}{key} "))
        elif (text := _format_metric(value)) is not None:
            out[name] = text
    return out


def headline_metrics(metrics: Mapping[str, Any], limit: int = 8) -> dict[str, str]:
    """The few validation metrics worth showing: those of the shipped (INT8) variant when the spec
    records several, headline measures (balanced accuracy, AUC, mAP, ...) first."""
    if not isinstance(metrics, Mapping):
        return {}
    chosen: Mapping[str, Any] = metrics
    for key in _PREFERRED_METRICS:
        if isinstance(metrics.get(key), Mapping):
            chosen = metrics[key]
            break
    flat = _flatten_metrics(chosen)
    headline = {k: v for k, v in flat.items() if k.split(" ", 1)[-1].replace(" ", "_") in _HEADLINE_METRICS}
    rest = {k: v for k, v in flat.items() if k not in headline}
    out = dict(list({**headline, **rest}.items())[:limit])
    for key in ("validation_images", "images", "val_images"):
        if (text := _format_metric(metrics.get(key))) is not None:
            out["validation images"] = text
            break
    return out


def _licence_from_card() -> str | None:
    """The first sentence after "Licence ...:" in the shipped model card."""
    card = model_card_text()
    match = re.search(r"Licen[cs]e[^:\n]*:\**\s*(.+?\.)(?:\s|$)", card or "", re.DOTALL)
    return " ".join(match.group(1).split()) if match else None


def _licence(spec: Any) -> str | None:
    for source in (spec.provenance, spec.extras):
        for key in ("license", "licence", "weights_license"):
            value = source.get(key) if isinstance(source, Mapping) else None
            if value:
                return str(value)
    return None


def model_facts(pipeline: InspectablePipeline) -> list[ModelFacts]:
    """Facts of the pipeline's detector (when it has one) and classifier, from their specs."""
    facts = []
    card_licence: str | None = None
    for role, spec in (("Detector", detector_spec(pipeline)), ("Classifier", classifier_spec(pipeline))):
        if spec is None:
            continue
        licence = _licence(spec)
        if licence is None:
            card_licence = card_licence or _licence_from_card()
            licence = card_licence
        data = spec.provenance.get("data") if isinstance(spec.provenance, Mapping) else None
        if isinstance(data, Mapping):  # a structured record (the detector's): show what it was trained on
            data = data.get("sources")
        height, width = spec.input.size
        facts.append(
            ModelFacts(
                role=role,
                name=spec.name,
                input_size=f"{width}x{height} {spec.input.color_order}",
                metrics=headline_metrics(spec.metrics or {}),
                licence=licence,
                data=str(data) if data else None,
                sha256=spec.sha256,
            )
        )
    return facts


def model_card_text() -> str | None:
    """The shipped ``MODEL_CARD.md`` (Markdown), or None when it is not installed."""
    from edgeskin.models import models_dir

    path = models_dir() / "MODEL_CARD.md"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


# -- analysis ----------------------------------------------------------------------------------------
# What each quality-gate issue means for an uploaded still (the gate's own guidance is for a live camera).
QUALITY_EXPLANATIONS: Mapping[str, str] = {
    "blur": "the image looks blurred",
    "dark": "the image is too dark",
    "bright": "the image is over-exposed",
    "small": "the lesion fills too little of the image",
}


def assess_quality(frame: np.ndarray, result: PipelineResult | None) -> QualityReport:
    """The quality gate's report on a frame (with the main lesion's box when there is one)."""
    box = result.lesions[0].box if result is not None and result.lesions else None
    return assess(frame, box)


def quality_messages(report: QualityReport | None) -> list[str]:
    """One line per quality issue, e.g. "hold still: the image looks blurred"; empty when all passed or when
    there is no report (an upload that could not be read)."""
    if report is None:
        return []
    return [
        f"{guidance}: {QUALITY_EXPLANATIONS.get(issue, issue)}"
        for issue, guidance in zip(report.issues, report.guidance, strict=True)
    ]


@dataclass(frozen=True)
class Analysis:
    """One analysed image: the decoded frame and the pipeline's result, or the one-line reason it failed."""

    source: str
    frame: np.ndarray | None = None
    result: PipelineResult | None = None
    error: str | None = None
    quality: QualityReport | None = None  # None when the upload could not be read


def analyse(pipeline: Callable[[np.ndarray], PipelineResult], data: bytes, source: str) -> Analysis:
    """Decode ``data`` in memory and run ``pipeline`` on it; bad input becomes ``Analysis.error``.

    Nothing is written to disk: the bytes are decoded with :func:`edgeskin.image.decode_image`.
    """
    from edgeskin.image import decode_image

    try:
        frame = decode_image(data)
        result = pipeline(frame, source=source)
    except EdgeskinError as exc:
        return Analysis(source, error=" ".join(str(exc).split()))
    return Analysis(source, frame=frame, result=result, quality=assess_quality(frame, result))


# -- what the page shows -----------------------------------------------------------------------------
def dx_title(label: str) -> str:
    """``"Melanocytic nevus (nv)"`` for ``"nv"``; unknown labels as they are."""
    return f"{DX_NAMES[label]} ({label})" if label in DX_NAMES else label


def _crop(frame: np.ndarray, lesion: Lesion) -> np.ndarray:
    x0, y0, x1, y1 = (int(round(float(v))) for v in lesion.crop_box)
    height, width = frame.shape[:2]
    x0, x1 = max(0, min(x0, width - 1)), max(1, min(x1, width))
    y0, y1 = max(0, min(y0, height - 1)), max(1, min(y1, height))
    return frame[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]


def preprocessing_views(frame: np.ndarray, lesion: Lesion, spec: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """The classifier's input before and after its spec's preprocessing profile, and the profile's name.

    "Before" is the lesion crop resized to the model input as the spec says; "after" is that image
    after the profile (hair removal, colour constancy, ...), i.e. what the classifier sees.
    """
    from edgeskin.core.geometry import resize_to_input

    before, _ = resize_to_input(np.ascontiguousarray(_crop(frame, lesion)), spec.input.size, spec.input.resize)
    profile = spec.preprocessing_profile()
    if profile is None:
        return before, before, "none"
    return before, profile.apply(before.copy()), profile.name


def encode_png(image_rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 image (in memory)."""
    import cv2

    ok, buffer = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise EdgeskinError("could not encode the annotated image as PNG")
    return buffer.tobytes()


def report(analysis: Analysis, pipeline: InspectablePipeline) -> dict[str, Any]:
    """The JSON report of one analysed image: models, result, quality messages and the notice."""
    import edgeskin

    models = {
        fact.role.lower(): {"name": fact.name, "sha256": fact.sha256, "input": fact.input_size}
        for fact in model_facts(pipeline)
    }
    document: dict[str, Any] = {
        "edgeskin_version": edgeskin.__version__,
        "source": analysis.source,
        "notice": NOT_A_DIAGNOSIS,
        "models": models,
    }
    if analysis.error is not None:
        document["error"] = analysis.error
    if analysis.quality is not None:
        document["quality"] = analysis.quality.to_dict()
    if analysis.result is not None:
        result = analysis.result.to_dict()
        result["source"] = analysis.source
        document["result"] = result
    return document
