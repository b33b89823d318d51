"""Train the edgeskin skin-lesion classifier (Keras) on the HAM10000 layout.

Example (the shipped model)::

    python -m training.train_classifier --config training/configs/classifier.json --out artifacts/classifier

Writes to ``--out``: ``model.keras`` (last epoch), ``best.keras`` (best validation balanced accuracy),
``split.json`` (the lesion-grouped split), ``config.json``, ``history.csv``, ``epochs.jsonl`` (validation
metrics per epoch) and ``summary.json``. Every image passes through the same edgeskin preprocessing
profile the runtime applies (``edgeskin.core.preprocess``), resized the same way (``resize_to_input``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeskin.core.geometry import resize_to_input  # noqa: E402
from edgeskin.core.preprocess import get_profile  # noqa: E402
from edgeskin.datasets import apply_split, grouped_stratified_split, load_ham10000, save_split  # noqa: E402
from edgeskin.image import read_image  # noqa: E402
from edgeskin.labels import DX_CLASSES  # noqa: E402

log = logging.getLogger("train_classifier")


def load_config(path: str | None, overrides: dict) -> dict:
    config = json.loads(Path(path).read_text()) if path else {}
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


def load_pixels(paths, size: int, profile_name: str, desc: str) -> np.ndarray:
    """Decode, resize (stretch, as the runtime) and apply the preprocessing profile: uint8 (N, S, S, 3)."""
    from tqdm import tqdm

    profile = get_profile(profile_name)
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, path in enumerate(tqdm(paths, desc=desc, mininterval=5)):
        resized, _ = resize_to_input(read_image(path), (size, size), "stretch")
        out[i] = profile.apply(resized)
    return out


def make_dataset(x, y, config, training: bool):
    import tensorflow as tf

    aug = config["augment"]
    size = config["input_size"]
    n_classes = len(DX_CLASSES)

    def augment(image, label):
        image = tf.cast(image, tf.float32)
        if aug.get("flip"):
            image = tf.image.random_flip_left_right(image)
            image = tf.image.random_flip_up_down(image)
        if aug.get("rot90"):
            image = tf.image.rot90(image, tf.random.uniform([], 0, 4, dtype=tf.int32))
        lo, hi = aug.get("zoom", [1.0, 1.0])
        if lo < 1.0:
            frac = tf.random.uniform([], lo, hi)
            crop = tf.cast(frac * size, tf.int32)
            image = tf.image.random_crop(image, [crop, crop, 3])
            image = tf.image.resize(image, [size, size])
        if aug.get("brightness"):
            image = image * tf.random.uniform([], 1 - aug["brightness"], 1 + aug["brightness"])
        if aug.get("contrast"):
            image = tf.image.random_contrast(image, 1 - aug["contrast"], 1 + aug["contrast"])
        if aug.get("saturation"):
            image = tf.image.random_saturation(image, 1 - aug["saturation"], 1 + aug["saturation"])
        if aug.get("hue"):
            image = tf.image.random_hue(image / 255.0, aug["hue"]) * 255.0
        return tf.clip_by_value(image, 0.0, 255.0), label

    ds = tf.data.Dataset.from_tensor_slices((x, tf.one_hot(y, n_classes)))
    if training:
        ds = ds.shuffle(len(x), seed=config["seed"], reshuffle_each_iteration=True).map(
            augment, num_parallel_calls=tf.data.AUTOTUNE
        )
    else:
        ds = ds.map(lambda a, b: (tf.cast(a, tf.float32), b))
    return ds.batch(config["batch_size"]).prefetch(tf.data.AUTOTUNE)


def evaluate_probs(y_true: np.ndarray, probs: np.ndarray) -> dict:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    pred = probs.argmax(1)
    return {
        "accuracy": float((pred == y_true).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, pred)),
        "auc": float(roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=range(probs.shape[1]))),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(REPO / "training/configs/classifier.json"), help="JSON config")
    parser.add_argument("--out", default=str(REPO / "artifacts/classifier"), help="output directory")
    parser.add_argument("--backbone", choices=("mobilenetv2", "resnet50", "efficientnetb0"))
    parser.add_argument("--alpha", type=float)
    parser.add_argument("--input-size", type=int, dest="input_size")
    parser.add_argument("--weights", help="imagenet (local files only), none, or a path to an .h5")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument("--learning-rate", type=float, dest="learning_rate")
    parser.add_argument("--limit", type=int, help="use only the first N images (smoke tests)")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("config", "out", "limit")}
    config = load_config(args.config, overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import keras
    import tensorflow as tf
    from sklearn.utils.class_weight import compute_class_weight

    from training.classifier_model import build_classifier, resolve_weights

    keras.utils.set_random_seed(config["seed"])
    started = time.time()
    data = (
        load_ham10000(REPO / config["metadata"], REPO / config["images"])
        if not Path(config["metadata"]).is_absolute()
        else load_ham10000(config["metadata"], config["images"])
    )
    log.info(
        "HAM10000: %d images, %d metadata rows without an image skipped; %s", len(data), data.missing, data.counts()
    )
    if args.limit:
        data = data.subset(range(min(args.limit, len(data))))
    split = grouped_stratified_split(data, config["val_fraction"], config["seed"])
    save_split(split, out / "split.json")
    train, val = apply_split(data, split, "train"), apply_split(data, split, "val")
    log.info("split: %d train / %d val (lesion-grouped, stratified, seed %d)", len(train), len(val), config["seed"])
    size = config["input_size"]
    x_train = load_pixels(train.paths, size, config["profile"], "train images")
    x_val = load_pixels(val.paths, size, config["profile"], "val images")

    weights_dir = config.get("weights_dir")
    if weights_dir and not Path(weights_dir).is_absolute():
        weights_dir = REPO / weights_dir
    weights = resolve_weights(config["backbone"], config["alpha"], config["weights"], weights_dir)
    model = build_classifier(
        backbone=config["backbone"],
        alpha=config["alpha"],
        input_size=size,
        n_classes=len(DX_CLASSES),
        weights=weights,
        dropout=config["dropout"],
        bn_momentum=config["bn_momentum"],
    )
    steps = int(np.ceil(len(x_train) / config["batch_size"]))
    warmup = config["warmup_epochs"] * steps
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config["learning_rate"] / 20,
        decay_steps=max(1, config["epochs"] * steps - warmup),
        warmup_target=config["learning_rate"],
        warmup_steps=warmup,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=config["weight_decay"]),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config["label_smoothing"]),
        metrics=["accuracy"],
    )
    class_weight = None
    if config.get("class_weight") == "balanced":
        present = np.unique(train.labels)
        values = compute_class_weight("balanced", classes=present, y=train.labels)
        class_weight = {int(c): float(w) for c, w in zip(present, values, strict=True)}
        log.info("class weights: %s", {DX_CLASSES[c]: round(w, 2) for c, w in class_weight.items()})
    (out / "config.json").write_text(
        json.dumps({**config, "resolved_weights": weights, "class_weights": class_weight}, indent=1)
    )

    val_ds = make_dataset(x_val, val.labels, config, training=False)

    class EpochReport(keras.callbacks.Callback):
        best = -1.0

        def on_epoch_end(self, epoch, logs=None):
            probs = self.model.predict(val_ds, verbose=0)
            metrics = evaluate_probs(val.labels, probs)
            metrics.update(epoch=epoch + 1, loss=float(logs["loss"]), elapsed_s=round(time.time() - started, 1))
            with (out / "epochs.jsonl").open("a") as handle:
                handle.write(json.dumps(metrics) + "\n")
            log.info(
                "epoch %d: val balanced acc %.4f auc %.4f acc %.4f",
                epoch + 1,
                metrics["balanced_accuracy"],
                metrics["auc"],
                metrics["accuracy"],
            )
            if metrics["balanced_accuracy"] > self.best:
                self.best = metrics["balanced_accuracy"]
                self.model.save(out / "best.keras")

    (out / "epochs.jsonl").unlink(missing_ok=True)
    model.fit(
        make_dataset(x_train, train.labels, config, training=True),
        epochs=config["epochs"],
        class_weight=class_weight,
        callbacks=[
            EpochReport(),
            keras.callbacks.CSVLogger(str(out / "history.csv")),
            keras.callbacks.ModelCheckpoint(str(out / "model.keras")),
        ],
        verbose=1 if sys.stdout.isatty() else 2,
    )
    model.save(out / "model.keras")
    probs = model.predict(val_ds, verbose=0)
    summary = {
        "val": evaluate_probs(val.labels, probs),
        "n_train": len(train),
        "n_val": len(val),
        "train_seconds": round(time.time() - started, 1),
        "tf": tf.__version__,
        "keras": keras.__version__,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log.info("done in %.0f s: %s", summary["train_seconds"], summary["val"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
