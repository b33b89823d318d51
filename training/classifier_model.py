"""Keras classifier builders: backbone → GAP → Dropout → Dense(softmax), so that the CAM is exact.

Every model takes raw RGB pixels in [0, 255] (float) and does its own input scaling in the graph, so
the model spec's normalisation is mean 0, std 1 and the INT8 model's input is simply ``pixel - 128``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

BACKBONES = ("mobilenetv2", "resnet50", "efficientnetb0")
FEATURES_LAYER = "features"
PROBS_LAYER = "probs"

# Files in ../shared/weights/keras (official Keras ImageNet weights, and a derived alpha=1.0 file).
MOBILENETV2_WEIGHTS = {
    0.35: "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5",
    0.5: "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_224_no_top.h5",
    1.0: "mobilenet_v2_1.0_224_no_top.derived.h5",
}


def resolve_weights(backbone: str, alpha: float, weights: str, weights_dir: str | Path | None) -> str | None:
    """Map a ``--weights`` option to what keras.applications takes, never downloading anything.

    ``none`` → random init; ``imagenet`` → a local file from ``weights_dir`` (or the Keras cache when a
    user has one there); any other value is a path to an .h5 file.
    """
    if weights in ("none", "", None):
        return None
    if weights != "imagenet":
        if not Path(weights).is_file():
            raise FileNotFoundError(f"weights file not found: {weights}")
        return str(weights)
    if backbone == "mobilenetv2":
        name = MOBILENETV2_WEIGHTS.get(float(alpha))
        candidates = []
        if weights_dir and name:
            candidates.append(Path(weights_dir) / name)
        keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
        if name:
            candidates.append(keras_home / "models" / name)
        for path in candidates:
            if path.is_file():
                return str(path)
        raise FileNotFoundError(
            f"no local ImageNet weights for MobileNetV2 alpha={alpha}; looked in {[str(c) for c in candidates]}. "
            "Use --weights none to train from scratch."
        )
    # ResNet50 / EfficientNetB0: only when the user already has the file in the Keras cache.
    cache = {
        "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "efficientnetb0": "efficientnetb0_notop.h5",
    }[backbone]
    path = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / cache
    if not path.is_file():
        raise FileNotFoundError(f"no cached ImageNet weights for {backbone} at {path}; use --weights none")
    return str(path)


@functools.cache
def register_custom_layers():
    import keras

    @keras.saving.register_keras_serializable(package="edgeskin")
    class ChannelFlip(keras.layers.Layer):
        """RGB → BGR (the caffe-style ResNet50 input) with a backend op that every backend has."""

        def call(self, inputs):
            return keras.ops.flip(inputs, axis=-1)

    return ChannelFlip


def build_classifier(
    *,
    backbone: str = "mobilenetv2",
    alpha: float = 0.5,
    input_size: int = 192,
    n_classes: int = 7,
    weights: str | None = None,
    dropout: float = 0.2,
    bn_momentum: float | None = 0.9,
):
    """Build the training model (one output: class probabilities).

    Args:
        bn_momentum: Override of every BatchNormalization momentum. keras.applications builds them with
            0.999, which makes the moving statistics lag far behind the weights in a short fine-tune, so
            inference then differs from training; 0.9 follows them within a few dozen steps.
    """
    import keras
    from keras import layers

    ChannelFlip = register_custom_layers()
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {BACKBONES}")
    inputs = keras.Input((input_size, input_size, 3), name="image")
    if backbone == "mobilenetv2":
        x = layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(inputs)
        base = keras.applications.MobileNetV2(input_tensor=x, alpha=alpha, include_top=False, weights=weights)
    elif backbone == "resnet50":
        # caffe-style: BGR, ImageNet mean subtracted
        x = ChannelFlip(name="rgb_to_bgr")(inputs)
        x = layers.Normalization(mean=[103.939, 116.779, 123.68], variance=[1.0, 1.0, 1.0], name="scale")(x)
        base = keras.applications.ResNet50(input_tensor=x, include_top=False, weights=weights)
    else:
        base = keras.applications.EfficientNetB0(input_tensor=inputs, include_top=False, weights=weights)
    features = layers.Activation("linear", name=FEATURES_LAYER)(base.output)
    x = layers.GlobalAveragePooling2D(name="gap")(features)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(n_classes, name="logits")(x)
    probs = layers.Activation("softmax", name=PROBS_LAYER, dtype="float32")(x)
    model = keras.Model(inputs, probs, name=f"edgeskin_{backbone}")
    if bn_momentum is not None:
        for layer in model.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = bn_momentum
    return model


def two_output_model(model):
    """The deployable graph: {"probs": (1, n), "features": (1, h, w, C)} from the same layers."""
    import keras

    return keras.Model(
        model.inputs,
        {PROBS_LAYER: model.get_layer(PROBS_LAYER).output, FEATURES_LAYER: model.get_layer(FEATURES_LAYER).output},
        name=model.name + "_deploy",
    )


def head_weights(model):
    """(C, n) kernel and (n,) bias of the final Dense layer, for the CAM."""
    kernel, bias = model.get_layer("logits").get_weights()
    return kernel, bias
