"""Quantization-aware training (tensorflow-model-optimization) of the edgeskin classifier.

tfmot needs tf_keras (Keras 2) functional models, and importing it switches TF_USE_LEGACY_KERAS, so
this runs in its own process, called by ``convert/export_classifier.py --qat-epochs N``:

    python -m convert.qat_classifier --weights W.npz --data D.npz --config config.json --epochs 1 --out qat.tflite

``W.npz`` maps Keras weight paths (``layer/variable``) of the trained Keras 3 model to arrays; ``D.npz``
holds preprocessed uint8 training pixels and labels. The same MobileNetV2 graph is rebuilt in tf_keras
(identical layer names), the weights are copied by name, every supported layer is wrapped with fake
quantization, the model is fine-tuned, and converted to full-INT8 TFLite with the same signature names
(``image`` → ``logits``, ``features``) as the PTQ model.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def build_legacy(size: int, alpha: float, n_classes: int):
    import tf_keras

    inputs = tf_keras.Input((size, size, 3), name="image")
    x = tf_keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(inputs)
    base = tf_keras.applications.MobileNetV2(input_tensor=x, alpha=alpha, include_top=False, weights=None)
    features = tf_keras.layers.Activation("linear", name="features")(base.output)
    pooled = tf_keras.layers.GlobalAveragePooling2D(name="gap")(features)
    logits = tf_keras.layers.Dense(n_classes, name="logits")(pooled)
    return tf_keras.Model(inputs, {"logits": logits, "features": features})


def copy_weights(model, weights: dict[str, np.ndarray]) -> int:
    copied = 0
    for variable in model.weights:
        layer, name = variable.name.split("/")[-2], variable.name.split("/")[-1].split(":")[0]
        # Keras 3 names a DepthwiseConv2D kernel "kernel"; tf_keras names it "depthwise_kernel".
        value = weights.get(f"{layer}/{name}")
        if value is None and name == "depthwise_kernel":
            value = weights.get(f"{layer}/kernel")
        if value is not None and tuple(value.shape) == tuple(variable.shape):
            variable.assign(value)
            copied += 1
    return copied


def initialise_ranges(q_model, x: np.ndarray, batches: int = 40, batch_size: int = 16, seed: int = 0) -> None:
    """Set every fake-quant activation range from real data before fine-tuning.

    tfmot's MovingAverageQuantizer starts each activation range at [-6, 6] and moves it with an EMA of
    decay 0.999 per training step, so after one epoch (~160 steps) a range is still 85 % its initial
    value: tensors whose real range is ±25 (MobileNetV2's linear bottlenecks) are clipped hard, which is
    what made the earlier 1-epoch QAT collapse to chance level. Here the decay is 0 on the first batch
    (range = that batch's min/max) and 0.9 after it, over ``batches`` forward passes in training mode
    (eager, so the patched op is the one traced); BatchNormalization layers are frozen (inference
    statistics), so only the ranges move.
    """
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops, quantizers

    original = quant_ops.MovingAvgQuantize
    decay = {"value": 0.0}

    def patched(*args, **kwargs):
        kwargs["ema_decay"] = decay["value"]
        return original(*args, **kwargs)

    rng = np.random.default_rng(seed)
    quantizers.quant_ops.MovingAvgQuantize = patched
    try:
        for i in range(batches):
            idx = rng.choice(len(x), size=batch_size, replace=False)
            q_model(x[idx].astype(np.float32), training=True)
            decay["value"] = 0.9
            if i % 10 == 0:
                print(f"QAT: range initialisation {i + 1}/{batches}", flush=True)
    finally:
        quantizers.quant_ops.MovingAvgQuantize = original


def freeze_batch_norm(model) -> int:
    """Run every BatchNormalization with its moving statistics (tf_keras: trainable=False)."""
    import tf_keras

    frozen = 0
    for layer in model.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            layer.trainable = False
            frozen += 1
    return frozen


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument(
        "--epochs", type=int, default=1, help="fine-tune epochs (>= 1: the fake-quant ranges are learned there)"
    )
    parser.add_argument("--out", required=True)
    parser.add_argument("--learning-rate", type=float, default=1e-5, help="Adam learning rate of the fine-tune")
    parser.add_argument("--steps", type=int, help="fine-tune steps per epoch (default: one pass over the data)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1: untrained fake-quant ranges give a chance-level model")

    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras
    from sklearn.utils.class_weight import compute_class_weight

    config = json.loads(Path(args.config).read_text())
    data = np.load(args.data)
    x, y = data["x"], data["y"]
    n_classes = int(data["n_classes"])
    weights = dict(np.load(args.weights))
    model = build_legacy(config["input_size"], config["alpha"], n_classes)
    copied = copy_weights(model, weights)
    print(f"QAT: copied {copied}/{len(model.weights)} weights", flush=True)
    if copied != len(model.weights):
        raise SystemExit(
            f"QAT: only {copied} of {len(model.weights)} weights matched by name; refusing to fine-tune a partly random model"
        )

    def annotate(layer):
        # Rescaling has no quantize config in tfmot's registry; it is folded into the input scale.
        if isinstance(layer, tf_keras.layers.Rescaling):
            return layer
        return tfmot.quantization.keras.quantize_annotate_layer(layer)

    print(f"QAT: froze {freeze_batch_norm(model)} BatchNormalization layers", flush=True)
    annotated = tf_keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    q_model = tfmot.quantization.keras.quantize_apply(annotated)
    initialise_ranges(q_model, x)
    present = np.unique(y)
    class_weight = np.ones(n_classes)
    class_weight[present] = compute_class_weight("balanced", classes=present, y=y)
    ds = (
        tf.data.Dataset.from_tensor_slices((x, tf.one_hot(y, n_classes), class_weight[y].astype(np.float32)))
        .shuffle(len(x), seed=0)
        .map(lambda a, b, w: (tf.cast(a, tf.float32), {"logits": b}, {"logits": w}))
        .batch(32)
        .repeat()
        .prefetch(2)
    )
    q_model.compile(
        optimizer=tf_keras.optimizers.Adam(args.learning_rate),
        loss={
            "logits": tf_keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=config.get("label_smoothing", 0.0)
            )
        },
    )
    steps = args.steps or int(np.ceil(len(x) / 32))
    q_model.fit(ds, epochs=args.epochs, steps_per_epoch=steps, verbose=2)

    @tf.function(
        input_signature=[tf.TensorSpec([1, config["input_size"], config["input_size"], 3], tf.float32, name="image")]
    )
    def serve(image):
        out = q_model(image, training=False)
        return {"logits": out["logits"], "features": out["features"]}

    from convert.int8 import full_integer

    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], q_model)
    # The input Rescaling carries no fake-quant node; a representative set calibrates it (and only it),
    # so the model is integer end to end like the PTQ one.
    rng = np.random.default_rng(0)
    sample = x[rng.choice(len(x), size=min(100, len(x)), replace=False)]
    Path(args.out).write_bytes(full_integer(converter, sample))
    # The fine-tuned Dense head, for the CAM weights of the spec (QAT changed them).
    head = {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in q_model.get_layer("quant_logits").weights}
    np.savez(Path(args.out).with_suffix(".head.npz"), kernel=head["kernel"], bias=head["bias"])
    print(f"QAT: wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    from convert.script import run_script

    run_script(main, "python -m convert.qat_classifier")
