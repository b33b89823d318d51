"""Train the edgeskin skin-lesion classifier (Keras) on the HAM10000 layout.

Example (the shipped model)::

    python -m training.train_classifier --config training/configs/classifier.json --out artifacts/classifier

Writes to ``--out``: ``model.keras`` (last epoch, no optimizer state), ``split.json`` (the lesion-grouped
split), ``config.json``, ``history.csv``, ``epochs.jsonl`` (validation metrics per epoch, for the record:
nothing is selected on them), ``val_probs.npz`` and ``summary.json``. Every image passes through the same
edgeskin preprocessing profile the runtime applies (``edgeskin.core.preprocess``), resized the same way
(``resize_to_input``). Augmentation is numpy/OpenCV, so the script runs on any Keras 3 backend: TensorFlow
here, ``KERAS_BACKEND=torch`` on a GPU machine that has PyTorch but no TensorFlow (the ``.keras`` file is
the same; ``convert/`` reads it with TensorFlow).
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


class ClassifierAugment:
    """Dermoscopy augmentation in numpy/OpenCV, so that training runs on any Keras backend.

    Flips, 90° rotations, a random zoom crop and small brightness, contrast, saturation and hue
    changes; the input and output are float32 RGB in [0, 255]. One generator per batch, seeded from
    (seed, epoch, batch), so a run is reproducible whatever the worker order.
    """

    def __init__(self, config: dict):
        self.aug = config["augment"]
        self.size = config["input_size"]

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        import cv2

        aug, size = self.aug, self.size
        if aug.get("flip"):
            if rng.random() < 0.5:
                image = image[:, ::-1]
            if rng.random() < 0.5:
                image = image[::-1]
        if aug.get("rot90"):
            image = np.rot90(image, int(rng.integers(4)))
        lo, hi = aug.get("zoom", [1.0, 1.0])
        if lo < 1.0:
            crop = int(rng.uniform(lo, hi) * size)
            y0, x0 = rng.integers(0, size - crop + 1, size=2)
            image = cv2.resize(
                np.ascontiguousarray(image[y0 : y0 + crop, x0 : x0 + crop]),
                (size, size),
                interpolation=cv2.INTER_LINEAR_EXACT,
            )
        image = np.ascontiguousarray(image, dtype=np.float32)
        if aug.get("brightness"):
            image *= rng.uniform(1 - aug["brightness"], 1 + aug["brightness"])
        if aug.get("contrast"):
            mean = image.mean(axis=(0, 1), keepdims=True)
            image = (image - mean) * rng.uniform(1 - aug["contrast"], 1 + aug["contrast"]) + mean
        if aug.get("saturation") or aug.get("hue"):
            hsv = cv2.cvtColor(np.clip(image, 0, 255) / 255.0, cv2.COLOR_RGB2HSV)  # H in degrees
            if aug.get("hue"):
                hsv[..., 0] = (hsv[..., 0] + 360.0 * rng.uniform(-aug["hue"], aug["hue"])) % 360.0
            if aug.get("saturation"):
                hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(1 - aug["saturation"], 1 + aug["saturation"]), 0, 1)
            image = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
        return np.clip(image, 0.0, 255.0)


def make_batches(x, y, config: dict, class_weight: dict | None = None, workers: int = 1):
    """A keras.utils.PyDataset of augmented, shuffled training batches ``(images, one_hot, weights)``."""
    import keras

    n_classes = len(DX_CLASSES)
    augment = ClassifierAugment(config)
    batch = config["batch_size"]
    weights = np.ones(n_classes, np.float32)
    for c, w in (class_weight or {}).items():
        weights[c] = w

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
            self.epoch = 0
            self.order = np.random.default_rng([config["seed"], 0]).permutation(len(x))

        def __len__(self):
            return int(np.ceil(len(x) / batch))

        def __getitem__(self, index):
            idx = self.order[index * batch : (index + 1) * batch]
            rng = np.random.default_rng([config["seed"], self.epoch, index])
            images = np.stack([augment(x[i], rng) for i in idx])
            return images, np.eye(n_classes, dtype=np.float32)[y[idx]], weights[y[idx]]

        def on_epoch_end(self):
            self.epoch += 1
            self.order = np.random.default_rng([config["seed"], self.epoch]).permutation(len(x))

    return Batches()


def evaluate_probs(y_true: np.ndarray, probs: np.ndarray) -> dict:
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    pred = probs.argmax(1)
    return {
        "accuracy": float((pred == y_true).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, pred)),
        "auc": float(roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=range(probs.shape[1]))),
    }


def resolve(path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else REPO / path


def plan_epochs(model, x, config: dict, steps: int, budget_s: float, loss) -> int:
    """Epochs that fit ``budget_s`` at the measured step time (never more than the config's).

    Times a few real training steps on this machine (after warm-up), then restores the initial weights,
    so the run itself starts from the same point as one without a budget.
    """
    import keras

    initial = model.get_weights()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss)
    batch = x[: config["batch_size"]].astype(np.float32)
    target = np.eye(len(DX_CLASSES), dtype=np.float32)[np.zeros(len(batch), int)]
    for _ in range(3):
        model.train_on_batch(batch, target)
    t0 = time.perf_counter()
    probe = 10
    for _ in range(probe):
        model.train_on_batch(batch, target)
    step_s = (time.perf_counter() - t0) / probe
    model.set_weights(initial)
    epoch_s = 1.25 * step_s * steps  # margin for validation, data and saving
    epochs = int(max(1, min(config["epochs"], budget_s // epoch_s)))
    log.info("measured %.1f ms/step: %.0f s/epoch; %d epochs fit %.0f s", 1000 * step_s, epoch_s, epochs, budget_s)
    return epochs


def save_inference_model(model, config: dict, path: Path) -> None:
    """Save the trained layers without optimizer state (a third of the size), loadable on any backend."""
    from training.classifier_model import build_classifier

    clean = build_classifier(
        backbone=config["backbone"],
        alpha=config["alpha"],
        input_size=config["input_size"],
        n_classes=len(DX_CLASSES),
        weights=None,
        dropout=config["dropout"],
        bn_momentum=config["bn_momentum"],
    )
    clean.set_weights(model.get_weights())
    clean.save(path)


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
    parser.add_argument("--images", help="image folder (overrides the config's)")
    parser.add_argument("--metadata", help="HAM10000 metadata CSV (overrides the config's)")
    parser.add_argument("--split", help="reuse a saved split.json instead of making one")
    parser.add_argument(
        "--time-budget", type=float, dest="time_budget", help="seconds: fewer epochs if the measured speed needs it"
    )
    parser.add_argument("--workers", type=int, default=2, help="augmentation threads")
    parser.add_argument("--limit", type=int, help="use only the first N images (smoke tests)")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    local = ("config", "out", "limit", "split", "time_budget", "workers")
    overrides = {k: v for k, v in vars(args).items() if k not in local}
    config = load_config(args.config, overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import keras
    from sklearn.utils.class_weight import compute_class_weight

    from edgeskin.report.common import keras_device
    from training.classifier_model import build_classifier, resolve_weights

    keras.utils.set_random_seed(config["seed"])
    started = time.time()
    data = load_ham10000(resolve(config["metadata"]), resolve(config["images"]))
    log.info(
        "HAM10000: %d images, %d metadata rows without an image skipped; %s", len(data), data.missing, data.counts()
    )
    if args.limit:
        data = data.subset(range(min(args.limit, len(data))))
    if args.split:
        split = json.loads(Path(args.split).read_text())
        unknown = (set(split["train"]) | set(split["val"])) - set(data.image_ids)
        if unknown and not args.limit:
            raise SystemExit(f"--split names {len(unknown)} images that are not in {config['images']}")
    else:
        split = grouped_stratified_split(data, config["val_fraction"], config["seed"])
    save_split(split, out / "split.json")
    train, val = apply_split(data, split, "train"), apply_split(data, split, "val")
    log.info("split: %d train / %d val (lesion-grouped, stratified, seed %d)", len(train), len(val), config["seed"])
    size = config["input_size"]
    x_train = load_pixels(train.paths, size, config["profile"], "train images")
    x_val = load_pixels(val.paths, size, config["profile"], "val images")

    weights_dir = config.get("weights_dir")
    weights = resolve_weights(
        config["backbone"], config["alpha"], config["weights"], resolve(weights_dir) if weights_dir else None
    )
    model = build_classifier(
        backbone=config["backbone"],
        alpha=config["alpha"],
        input_size=size,
        n_classes=len(DX_CLASSES),
        weights=weights,
        dropout=config["dropout"],
        bn_momentum=config["bn_momentum"],
    )
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=config["label_smoothing"])
    steps = int(np.ceil(len(x_train) / config["batch_size"]))
    if args.time_budget:
        config["epochs_configured"] = config["epochs"]
        config["epochs"] = plan_epochs(model, x_train, config, steps, args.time_budget, loss)
    warmup = config["warmup_epochs"] * steps
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config["learning_rate"] / 20,
        decay_steps=max(1, config["epochs"] * steps - warmup),
        warmup_target=config["learning_rate"],
        warmup_steps=warmup,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=config["weight_decay"]), loss=loss, metrics=["accuracy"]
    )
    class_weight = None
    if config.get("class_weight") == "balanced":
        present = np.unique(train.labels)
        values = compute_class_weight("balanced", classes=present, y=train.labels)
        class_weight = {int(c): float(w) for c, w in zip(present, values, strict=True)}
        log.info("class weights: %s", {DX_CLASSES[c]: round(w, 2) for c, w in class_weight.items()})
    (out / "config.json").write_text(
        json.dumps(
            {**config, "resolved_weights": weights, "class_weights": class_weight, "backend": keras.backend.backend()},
            indent=1,
        )
    )
    x_val_float = x_val.astype(np.float32)

    class EpochReport(keras.callbacks.Callback):
        best = -1.0

        def on_epoch_end(self, epoch, logs=None):
            probs = self.model.predict(x_val_float, batch_size=64, verbose=0)
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

    (out / "epochs.jsonl").unlink(missing_ok=True)
    model.fit(
        make_batches(x_train, train.labels, config, class_weight, workers=args.workers),
        epochs=config["epochs"],
        callbacks=[EpochReport(), keras.callbacks.CSVLogger(str(out / "history.csv"))],
        verbose=1 if sys.stdout.isatty() else 2,
    )
    train_seconds = time.time() - started
    save_inference_model(model, config, out / "model.keras")
    probs = model.predict(x_val_float, batch_size=64, verbose=0)
    np.savez_compressed(out / "val_probs.npz", image_ids=np.array(val.image_ids), labels=val.labels, probs=probs)
    summary = {
        "val": evaluate_probs(val.labels, probs),
        "n_train": len(train),
        "n_val": len(val),
        "epochs": config["epochs"],
        "train_seconds": round(train_seconds, 1),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "device": keras_device(keras.backend.backend()),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log.info("done in %.0f s: %s", summary["train_seconds"], summary["val"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
