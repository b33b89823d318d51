"""CamExplainer: where in a crop the classifier saw its answer, from the feature map it already computed."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from edgeskin.core.cam import class_activation_map, upsample_cam
from edgeskin.errors import ConfigError
from edgeskin.runtime.spec import ModelSpec

__all__ = ["CamExplainer"]


class CamExplainer:
    """Class activation maps from the classifier's last feature map and its Dense head.

    Contract: the classifier ends ``features (1, h, w, C) → global average pooling → Dense(C → K)``;
    its spec carries the Dense kernel and bias (``"cam": {"weights": (C, K), "bias": (K,)}``) and names
    the feature map as the ``"features"`` output. With that head CAM equals Grad-CAM (see
    :mod:`edgeskin.core.cam`) and costs one ``(h*w, C) @ (C,)`` product: no second inference, no gradient.

    Example:
        >>> explainer = CamExplainer.from_spec(classifier.spec)
        >>> result, features = classifier.classify_with_features(crop)
        >>> heat = explainer.explain_to_size(features, int(result.probabilities.argmax()), crop.shape[:2])

    Args:
        weights: (C, K) Dense kernel.
        bias: Optional (K,) Dense bias.
        include_bias: Add the class bias before the ReLU. Off by default, as in CAM and Grad-CAM: the
            bias is the same at every position, so it only changes which weak activations are clipped.
    """

    def __init__(self, weights: ArrayLike, bias: ArrayLike | None = None, *, include_bias: bool = False) -> None:
        kernel = np.ascontiguousarray(np.asarray(weights, dtype=np.float32))
        if kernel.ndim != 2 or 0 in kernel.shape:
            raise ConfigError(f"CAM weights: expected a (C_features, n_classes) matrix, got shape {kernel.shape}")
        self.weights = kernel
        self.bias = None if bias is None else np.asarray(bias, dtype=np.float32).reshape(-1)
        if self.bias is not None and self.bias.shape != (kernel.shape[1],):
            raise ConfigError(f"CAM bias: expected {kernel.shape[1]} values (one per class), got {self.bias.shape[0]}")
        self.include_bias = include_bias
        self.weights.setflags(write=False)

    @classmethod
    def from_spec(cls, spec: ModelSpec, *, include_bias: bool = False) -> CamExplainer:
        """The explainer of a classification spec with ``"cam"`` weights.

        Raises:
            ConfigError: the spec carries no CAM weights or names no ``"features"`` output.
        """
        arrays = spec.cam_arrays()
        if arrays is None or "features" not in spec.outputs:
            raise ConfigError(
                f"model '{spec.name}' cannot explain its answers: its spec needs \"cam\" weights and a "
                f'"features" output (got cam={"yes" if arrays is not None else "no"}, outputs {sorted(spec.outputs)})'
            )
        return cls(*arrays, include_bias=include_bias)

    @classmethod
    def from_classifier(cls, classifier: Any, *, include_bias: bool = False) -> CamExplainer:
        """The explainer of a :class:`~edgeskin.tasks.classifier.Classifier` (from its spec)."""
        return cls.from_spec(classifier.spec, include_bias=include_bias)

    @property
    def num_classes(self) -> int:
        return int(self.weights.shape[1])

    @property
    def num_channels(self) -> int:
        return int(self.weights.shape[0])

    def explain(self, features: ArrayLike, class_index: int) -> np.ndarray:
        """The (h, w) float32 map in [0, 1] of ``class_index`` over the feature map's grid.

        Args:
            features: (h, w, C) or (1, h, w, C) dequantized feature map.
            class_index: The class to explain (usually the predicted one).

        Raises:
            ValueError: the feature map does not have C channels or the class index is out of range.
        """
        return class_activation_map(
            features, self.weights, class_index, self.bias if self.include_bias else None, normalize=True
        )

    def explain_to_size(
        self, features: ArrayLike, class_index: int, size: tuple[int, int], interpolation: str = "linear"
    ) -> np.ndarray:
        """:meth:`explain` resized to ``size`` = ``(height, width)`` (e.g. the crop's), in [0, 1]."""
        return upsample_cam(self.explain(features, class_index), size, interpolation)

    def __repr__(self) -> str:
        return (
            f"CamExplainer({self.num_channels} channels, {self.num_classes} classes, include_bias={self.include_bias})"
        )
