"""Image classification with an INT8 TFLite model: edgeskin's own models or any third-party classifier."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeskin.calibration import apply_top_label, softmax
from edgeskin.core.geometry import resize_to_input
from edgeskin.core.views import align_stacked, apply_view, check_views, view_into
from edgeskin.errors import ConfigError, ModelError
from edgeskin.image import require_rgb_uint8
from edgeskin.results import Classification
from edgeskin.runtime.interpreter import InputEncoder, TFLiteModel
from edgeskin.runtime.spec import (
    THIRD_PARTY_MEAN,
    THIRD_PARTY_STD,
    ModelSpec,
    load_third_party_classifier,
)
from edgeskin.tasks.base import BaseOptions, ModelTask

__all__ = ["Classifier", "ClassifierOptions", "softmax"]

logger = logging.getLogger(__name__)


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
class ClassifierOptions(BaseOptions):
    """Options of a :class:`Classifier`: the :class:`~edgeskin.tasks.base.BaseOptions` (model path, spec,
    threads, delegate) and the classifier's own. Leave ``spec`` None for a third-party model and give
    ``labels`` instead.

    Attributes:
        labels: Third-party models only: a labels file (one label per line, in output order) or a list.
        mean: Third-party models only: per-channel (or one) mean on pixels in [0, 255]; default 127.5.
        std: Third-party models only: per-channel (or one) divisor; default 127.5 (pixels → [-1, 1]).
        apply_preprocessing: Run the spec's preprocessing profile (turn off only when the caller has
            already applied it).
        tta: Test-time augmentation views to average (:data:`edgeskin.core.views.VIEWS`); None: the
            spec's ``tta`` (the shipped classifier's: four flips/rotations); ``()``: one view (fastest).
        batch: Run the views (and the images of :meth:`Classifier.classify_many`) as one batch per invoke
            when the model's batch dimension can be resized; False: one invoke per view.
    """

    labels: str | Path | Sequence[str] | None = None
    mean: float | Sequence[float] | None = None
    std: float | Sequence[float] | None = None
    apply_preprocessing: bool = True
    tta: Sequence[str] | None = None
    batch: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.spec is not None and self.labels is not None:
            raise ConfigError("give either a model spec or a labels file (for a third-party model), not both")
        if self.labels is None and (self.mean is not None or self.std is not None):
            raise ConfigError(
                "mean/std are for third-party models (given with a labels file); an edgeskin model's spec "
                "carries its own normalisation"
            )


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
        batch: bool = True,
        batch_size: int = 4,
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
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size: expected a positive number of images, got {batch_size!r}")
        self.batch = bool(batch)
        self.batch_size = batch_size  # images per invoke in classify_many (x views = the tensor's batch)
        self.last_invoke_batches: tuple[int, ...] = ()  # the input batch of each invoke of the last call
        self._batch_error: str | None = None

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def _open_model(cls, options: ClassifierOptions) -> tuple[TFLiteModel, ModelSpec]:
        """The model with its spec, or with one built from ``options.labels``, ``mean`` and ``std`` (a third-party
        classifier); :meth:`create` builds the classifier on it."""
        if options.labels is not None:
            return load_third_party_classifier(
                options.model_path,
                options.labels,
                THIRD_PARTY_MEAN if options.mean is None else options.mean,
                THIRD_PARTY_STD if options.std is None else options.std,
                num_threads=options.num_threads,
                delegate=options.delegate,
            )
        return options.load_model("classification")

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

    def preprocess_views(self, image_rgb: np.ndarray) -> np.ndarray:
        """The ``(views, H, W, C)`` input rows of one image, as the batched path feeds them."""
        info = self.model.input
        rows = np.empty((len(self.views), *info.shape[1:]), info.dtype)
        self._encode_views(image_rgb, rows)
        return rows

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

    def classify_many(
        self, images: Sequence[np.ndarray], *, want_features: bool = False, views: Sequence[str] | None = None
    ) -> list[tuple[Classification, np.ndarray | None]]:
        """Classify several images (e.g. the lesion crops of one frame), all their views in one invoke.

        ``views`` replaces the classifier's test-time views for this call (e.g. ``("identity",)``: one view per
        image, as the pipeline's context view runs); None keeps :attr:`views`.

        The views of every image go into one input batch (``batch_size`` images at a time) when the model's
        batch dimension can be resized (:meth:`TFLiteModel.batched`); otherwise, or with ``batch=False``,
        each view is one invoke. Both give the same results: the views' outputs are summed as stored and
        dequantized once. Returns ``(Classification, features or None)`` per image, in order; timings of
        all of them in :attr:`last_timings_ms`, the batch size of each invoke made in
        :attr:`last_invoke_batches`.

        Raises:
            ImageError: an image is not an RGB uint8 (H, W, 3) array.
        """
        start = time.perf_counter()
        views = self.views if views is None else check_views(views, self.spec.input.size) or ("identity",)
        features_info = self._features_info if want_features else None
        names = (self._probabilities_output,) + ((self._features_output,) if features_info is not None else ())
        results: list[tuple[Classification, np.ndarray | None]] = []
        preprocess_ms = invoke_ms = 0.0
        batches: list[int] = []
        for first in range(0, len(images), self.batch_size):
            chunk = images[first : first + self.batch_size]
            raw, chunk_pre_ms, chunk_invoke_ms, chunk_batches = self._invoke(chunk, names, views)
            preprocess_ms += chunk_pre_ms
            invoke_ms += chunk_invoke_ms
            batches += chunk_batches
            results += self._reduce(raw, len(chunk), names, views)
        total_ms = (time.perf_counter() - start) * 1000.0
        self.last_invoke_batches = tuple(batches)
        self.last_timings_ms = {
            "preprocess_ms": preprocess_ms,
            "invoke_ms": invoke_ms,  # all views (and images) together
            # Tensor copies and dequantization count as postprocessing, so the three stages add up.
            "postprocess_ms": max(0.0, total_ms - preprocess_ms - invoke_ms),
        }
        return results

    def _run(self, image_rgb: np.ndarray, *, want_features: bool) -> tuple[Classification, np.ndarray | None]:
        return self.classify_many((image_rgb,), want_features=want_features)[0]

    def _batched_model(self, batch: int) -> TFLiteModel | None:
        """The model taking ``batch`` inputs per invoke, or None when it cannot (logged once).

        A batch of one runs through the per-view path (it is one invoke either way).
        """
        if batch == 1 or not self.batch or self._batch_error is not None or not hasattr(self.model, "batched"):
            return None
        try:
            return self.model.batched(batch)
        except ModelError as exc:
            self._batch_error = str(exc)
            log = logger.info if self.model.delegate == "edgetpu" else logger.warning
            log(
                "%s: its batch dimension cannot be resized, so each of the %d test-time views is one invoke (%s)",
                self.spec.name, len(self.views), exc,
            )  # fmt: skip
            return None

    def _encode_views(self, image_rgb: np.ndarray, slots: np.ndarray, views: tuple[str, ...] | None = None) -> None:
        """Preprocess one image and write its views (default :attr:`views`) into ``slots`` ``(views, H, W, C)``
        of the input batch."""
        views = self.views if views is None else views
        require_rgb_uint8(image_rgb)
        resized, _ = resize_to_input(image_rgb, self.spec.input.size, self.spec.input.resize)
        if self._profile is not None:
            resized = self._profile.apply(resized)
        pairs = zip(slots, views, strict=True)
        if views[0] == "identity":  # encoded straight into its slot; the other views are copied from it
            base = self._encoder.encode(resized, out=slots[0])[0]
            next(pairs)
        else:
            base = self._encoder.encode(resized)[0]
        for slot, view in pairs:
            view_into(view, base, slot)

    def _invoke(
        self, images: Sequence[np.ndarray], names: tuple[str, ...], views: tuple[str, ...]
    ) -> tuple[dict[str, np.ndarray], float, float, list[int]]:
        """Raw outputs ``(images x views, ...)`` (image-major), preprocess ms, invoke ms, invoke batch sizes."""
        n_views = len(views)
        batch = len(images) * n_views
        model = self._batched_model(batch)
        if model is not None:
            preprocess_ms = 0.0

            def fill(buffer: np.ndarray) -> None:
                nonlocal preprocess_ms
                began = time.perf_counter()
                for i, image in enumerate(images):
                    self._encode_views(image, buffer[i * n_views : (i + 1) * n_views], views)
                preprocess_ms = (time.perf_counter() - began) * 1000.0

            raw = model.run_filled(fill, names)
            return raw, preprocess_ms, model.invoke_ms, [batch]
        # One invoke per view (a model whose batch cannot be resized, or batch=False).
        began = time.perf_counter()
        encoded = [self.preprocess(image) for image in images]
        preprocess_ms = (time.perf_counter() - began) * 1000.0
        raw = {
            name: np.empty((batch, *self.model.output(name).shape[1:]), self.model.output(name).dtype) for name in names
        }
        invoke_ms = 0.0
        for i, x in enumerate(encoded):
            for j, view in enumerate(views):
                outputs = self.model.run(x if view == "identity" else apply_view(view, x), outputs=names, raw=True)
                invoke_ms += self.model.invoke_ms
                for name in names:
                    raw[name][i * n_views + j] = outputs[name][0]
        return raw, preprocess_ms, invoke_ms, [1] * batch

    def _reduce(
        self, raw: dict[str, np.ndarray], count: int, names: tuple[str, ...], views: tuple[str, ...]
    ) -> list[tuple[Classification, np.ndarray | None]]:
        """Views averaged per image: logits (or probabilities) and the aligned feature maps."""
        n_views = len(views)
        info = self._probabilities_info
        stored = raw[names[0]].reshape(count, n_views, -1)
        # Summed as stored (exact in int32), dequantized once. With GAP -> Dense the mean logits are the logits of
        # the mean aligned feature map, so the CAM built from it explains exactly this decision.
        scores = info.dequantize_mean(
            np.add.reduce(stored, axis=1, dtype=np.int32 if info.is_quantized else np.float64), n_views
        )
        if self.spec.outputs_are == "logits":  # every image at once
            probabilities = softmax(scores, self.spec.temperature)
        else:
            probabilities = np.stack([self._probabilities(row) for row in scores])
        if self._top_label is not None:
            probabilities = apply_top_label(probabilities, self._top_label).astype(np.float32)
        features: np.ndarray | list[None] = [None] * count
        if len(names) > 1:
            features_info = self._features_info
            maps = raw[names[1]]
            maps = maps.reshape(count, n_views, *maps.shape[1:])
            # 8-bit maps of up to 256 views sum exactly in int16 (half the memory traffic of int32).
            exact = np.int16 if maps.dtype.itemsize == 1 and n_views <= 256 else np.int32
            wide = exact if features_info.is_quantized else np.float64
            total = align_stacked(views[0], maps[:, 0]).astype(wide)
            for j, view in enumerate(views[1:], start=1):
                total += align_stacked(view, maps[:, j]).astype(wide)  # a plain cast, then an unbuffered add
            features = features_info.dequantize_mean(total, n_views, dtype=np.float32)
        return [(Classification(p, self.labels), f) for p, f in zip(probabilities, features, strict=True)]

    def _probabilities(self, scores: np.ndarray) -> np.ndarray:
        """One image's mean scores (logits or probabilities) → calibrated probabilities."""
        if self.spec.outputs_are == "logits":
            return softmax(scores, self.spec.temperature)
        if not self._warned_not_probabilities and (scores.min() < -0.01 or scores.sum() > 1.5):
            self._warned_not_probabilities = True
            logger.warning(
                "%s: the output does not look like probabilities (min %.3g, sum %.3g); if the model "
                "ends without a softmax, its spec needs \"outputs_are\": \"logits\"",
                self.spec.name, float(scores.min()), float(scores.sum()),
            )  # fmt: skip
        return _renormalise(scores, self.spec.temperature)

    def __repr__(self) -> str:
        views = f", tta {len(self.views)} views" if len(self.views) > 1 else ""
        return f"Classifier({self.spec.name!r}, {len(self.labels)} classes, input {list(self.input_size)}{views}, delegate={self.model.delegate})"
