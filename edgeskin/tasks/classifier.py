"""Image classification with an INT8 TFLite model: edgeskin's own models or any third-party classifier."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeskin.calibration import apply_top_label
from edgeskin.core.geometry import resize_to_input
from edgeskin.core.views import align_features, apply_view, check_views
from edgeskin.errors import ConfigError
from edgeskin.image import require_rgb_uint8
from edgeskin.results import Classification
from edgeskin.runtime.interpreter import DELEGATES, InputEncoder, TFLiteModel
from edgeskin.runtime.spec import (
    THIRD_PARTY_MEAN,
    THIRD_PARTY_STD,
    ModelSpec,
    load_model,
    load_third_party_classifier,
)
from edgeskin.tasks.base import ModelTask

__all__ = ["Classifier", "ClassifierOptions", "softmax"]

logger = logging.getLogger(__name__)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Numerically stable softmax of ``logits / temperature`` over the last axis (float32)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _renormalise(probs: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities that sum to 1; with ``temperature`` T ≠ 1, ``p ∝ exp(log p / T)``.

    A quantized softmax sums to 1 only within a few quantization steps, so it is renormalised too.
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)
    if temperature != 1.0:
        p = np.power(p, 1.0 / temperature)
    total = p.sum()
    if not total > 0 or not np.isfinite(total):
        return np.full(p.shape, 1.0 / p.size, dtype=np.float32)
    return (p / total).astype(np.float32)


@dataclass(frozen=True)
class ClassifierOptions:
    """Options of a :class:`Classifier`.

    Attributes:
        model_path: The ``.tflite`` classification model.
        spec: Its :class:`ModelSpec` or spec path; None: ``<stem>.json`` beside the model. Leave None for
            a third-party model and give ``labels`` instead.
        labels: Third-party models only: a labels file (one label per line, in output order) or a list.
        mean: Third-party models only: per-channel (or one) mean on pixels in [0, 255]; default 127.5.
        std: Third-party models only: per-channel (or one) divisor; default 127.5 (pixels → [-1, 1]).
        num_threads: Interpreter CPU threads (None: the interpreter's default).
        delegate: ``"cpu"``, ``"edgetpu"`` or ``"auto"``.
        apply_preprocessing: Run the spec's preprocessing profile (turn off only when the caller has
            already applied it).
        tta: Test-time augmentation views to average (:data:`edgeskin.core.views.VIEWS`); None: the
            spec's ``tta`` (the shipped classifier's: four flips/rotations); ``()``: one view (fastest).
    """

    model_path: str | Path
    spec: ModelSpec | str | Path | None = None
    labels: str | Path | Sequence[str] | None = None
    mean: float | Sequence[float] | None = None
    std: float | Sequence[float] | None = None
    num_threads: int | None = None
    delegate: str = "cpu"
    apply_preprocessing: bool = True
    tta: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.spec is not None and self.labels is not None:
            raise ConfigError("give either a model spec or a labels file (for a third-party model), not both")
        if self.labels is None and (self.mean is not None or self.std is not None):
            raise ConfigError(
                "mean/std are for third-party models (given with a labels file); an edgeskin model's spec "
                "carries its own normalisation"
            )
        if self.delegate not in DELEGATES:
            raise ConfigError(f"delegate must be one of {', '.join(DELEGATES)}; got {self.delegate!r}")


class Classifier(ModelTask):
    """Classify an RGB image (or a lesion crop) into the model's classes.

    Tensor contract:
        * Input: one ``[1, H, W, 3]`` tensor, int8/uint8 (quantized) or float32. H, W, colour order,
          resize mode and normalisation ``(pixel - mean) / std`` come from the spec; the runtime then
          quantizes with the input tensor's own scale and zero point.
        * Output ``spec.outputs["probabilities"]``: ``[1, C]`` with C == len(labels), either softmax
          probabilities or logits (``spec.outputs_are``). A calibration temperature in the spec is
          applied here.
        * Optional output ``spec.outputs["features"]``: ``[1, h, w, K]`` feature map before global
          average pooling, for class activation maps.

    Use :meth:`create` (or :meth:`from_model`) and close it, or use it as a context manager::

        with Classifier.from_model("mobilenet.tflite", labels="labels.txt") as classifier:
            result = classifier.classify(image_rgb)
            print(result.top_k(3), classifier.last_timings_ms)

    One instance is not thread-safe (it owns one interpreter); make one per thread.
    """

    def __init__(
        self,
        model: TFLiteModel,
        spec: ModelSpec,
        *,
        apply_preprocessing: bool = True,
        tta: Sequence[str] | None = None,
    ) -> None:
        if spec.task != "classification":
            raise ConfigError(f"Classifier needs a classification spec; '{spec.name}' is a {spec.task} spec")
        self.model = model
        self.spec = spec
        self.labels: tuple[str, ...] = spec.labels
        self._profile = spec.preprocessing_profile() if apply_preprocessing else None
        self._probabilities_output = spec.outputs["probabilities"]
        self._features_output = spec.outputs.get("features")
        self._encoder = InputEncoder(model.input, spec.input.mean, spec.input.std, spec.input.color_order)
        views = spec.tta if tta is None else check_views(tta, spec.input.size)
        self.views: tuple[str, ...] = views if views else ("identity",)
        # Looked up once: the per-frame loop below runs once per view.
        self._probabilities_info = model.output(self._probabilities_output)
        self._features_info = model.output(self._features_output) if self._features_output is not None else None
        top_label = spec.calibration.get("top_label")
        self._top_label = None if top_label is None else {k: np.asarray(top_label[k], np.float64) for k in ("x", "y")}
        self.last_timings_ms: dict[str, float] = {}
        self._warned_not_probabilities = False

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def create(cls, options: ClassifierOptions) -> Classifier:
        """Open the model of ``options`` and check it against its spec.

        Raises:
            ModelError: missing/corrupt model, checksum mismatch, a detection model, or tensors that
                disagree with the spec (SpecError). DelegateError: the Edge TPU was asked but is absent.
        """
        if options.labels is not None:
            model, spec = load_third_party_classifier(
                options.model_path,
                options.labels,
                THIRD_PARTY_MEAN if options.mean is None else options.mean,
                THIRD_PARTY_STD if options.std is None else options.std,
                num_threads=options.num_threads,
                delegate=options.delegate,
            )
        else:
            model, spec = load_model(
                options.model_path,
                options.spec,
                expected_task="classification",
                num_threads=options.num_threads,
                delegate=options.delegate,
            )
        try:
            return cls(model, spec, apply_preprocessing=options.apply_preprocessing, tta=options.tta)
        except BaseException:
            model.close()
            raise

    @classmethod
    def from_model(
        cls,
        model_path: str | Path,
        labels: str | Path | Sequence[str] | None = None,
        *,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        threads: int | None = None,
        delegate: str = "cpu",
        tta: Sequence[str] | None = None,
    ) -> Classifier:
        """Shortcut for ``create(ClassifierOptions(...))``: an edgeskin model (spec beside it) when
        ``labels`` is None, else a third-party model with that labels file."""
        return cls.create(
            ClassifierOptions(
                model_path, labels=labels, mean=mean, std=std, num_threads=threads, delegate=delegate, tta=tta
            )
        )

    # -- preprocessing -----------------------------------------------------------------------------
    def preprocess(self, image_rgb: np.ndarray) -> np.ndarray:
        """Frame → the input tensor's values (resize, profile, colour order, normalise, quantize)."""
        require_rgb_uint8(image_rgb)
        resized, _ = resize_to_input(image_rgb, self.spec.input.size, self.spec.input.resize)
        if self._profile is not None:
            resized = self._profile.apply(resized)
        return self._encoder.encode(resized)

    # -- inference ---------------------------------------------------------------------------------
    def classify(self, image_rgb: np.ndarray) -> Classification:
        """Class probabilities of an RGB uint8 (H, W, 3) image; timings in :attr:`last_timings_ms`.

        Raises:
            ImageError: the image is not an RGB uint8 (H, W, 3) array.
        """
        return self._run(image_rgb, want_features=False)[0]

    def classify_with_features(self, image_rgb: np.ndarray) -> tuple[Classification, np.ndarray | None]:
        """Like :meth:`classify`, plus the dequantized (h, w, K) feature map when the spec has a
        ``features`` output (else None)."""
        return self._run(image_rgb, want_features=True)

    def _run(self, image_rgb: np.ndarray, *, want_features: bool) -> tuple[Classification, np.ndarray | None]:
        start = time.perf_counter()
        x = self.preprocess(image_rgb)
        ready = time.perf_counter()
        invoke_ms = 0.0
        score_sum: np.ndarray | None = None
        feature_sum: np.ndarray | None = None
        features_info = self._features_info if want_features else None
        names = [self._probabilities_output] + ([self._features_output] if features_info is not None else [])
        for view in self.views:
            outputs = self.model.run(x if view == "identity" else apply_view(view, x), outputs=names, raw=True)
            invoke_ms += self.model.invoke_ms
            view_scores = self._probabilities_info.dequantize(outputs[names[0]]).reshape(-1).astype(np.float64)
            score_sum = view_scores if score_sum is None else score_sum + view_scores
            if features_info is not None:
                # Summed as stored (exact in int32), dequantized once below: the same mean feature map.
                aligned = align_features(view, outputs[names[1]][0])
                if feature_sum is None:
                    feature_sum = np.zeros(aligned.shape, np.int32 if features_info.is_quantized else np.float32)
                np.add(feature_sum, aligned, out=feature_sum, casting="unsafe")
        # Logits (or probabilities) averaged over the views: with GAP → Dense, the logits of the mean
        # aligned feature map, so the CAM below explains exactly this decision.
        scores = score_sum / len(self.views)
        if self.spec.outputs_are == "logits":
            probabilities = softmax(scores, self.spec.temperature)
        else:
            if not self._warned_not_probabilities and (scores.min() < -0.01 or scores.sum() > 1.5):
                self._warned_not_probabilities = True
                logger.warning(
                    "%s: the output does not look like probabilities (min %.3g, sum %.3g); if the model "
                    "ends without a softmax, its spec needs \"outputs_are\": \"logits\"",
                    self.spec.name, float(scores.min()), float(scores.sum()),
                )  # fmt: skip
            probabilities = _renormalise(scores, self.spec.temperature)
        if self._top_label is not None:
            probabilities = apply_top_label(probabilities, self._top_label).astype(np.float32)
        result = Classification(probabilities, self.labels)
        features = None
        if feature_sum is not None:
            mean = feature_sum.astype(np.float64) / len(self.views)
            features = (features_info.dequantize(mean) if features_info.is_quantized else mean).astype(np.float32)
        end = time.perf_counter()
        self.last_timings_ms = {
            "preprocess_ms": (ready - start) * 1000.0,
            "invoke_ms": invoke_ms,  # all views together
            # Tensor copies and dequantization count as postprocessing, so the three stages add up.
            "postprocess_ms": max(0.0, (end - ready) * 1000.0 - invoke_ms),
        }
        return result, features

    def __repr__(self) -> str:
        views = f", tta {len(self.views)} views" if len(self.views) > 1 else ""
        return f"Classifier({self.spec.name!r}, {len(self.labels)} classes, input {list(self.input_size)}{views}, delegate={self.model.delegate})"
