"""Train the edgeskin skin-lesion classifier (Keras): 8 ISIC 2019 diagnoses from several clinics.

Example (the shipped model)::

    python -m training.train_classifier --config training/configs/classifier.json --out artifacts/classifier

Data: HAM10000 (two Vienna/Queensland clinics) and the ISIC 2017/2018 images of other clinics (mostly Memorial
Sloan Kettering), labelled from the ISIC 2019 and 2017 ground truth (``edgeskin.datasets.load_multisource``).
A seeded third of one source (``holdout``; the ISIC 2017 images) is held out whole for a source-held-out score;
the rest is split by lesion, stratified by dx and source. Each epoch draws images with source-balanced
probabilities (``source_shares``) and weights the loss so the classes are balanced as drawn. Every sample is
the runtime's lesion crop (``training.classifier_data``), augmented with albumentations, then passed through
the spec's preprocessing profile exactly as on the device (bit-exact resize).

Writes to ``--out``: ``model.keras`` (EMA weights when ``ema`` is set, no optimizer state), ``checkpoint.keras``
(raw weights after the latest epoch), ``split.json`` (train / val / source_holdout image ids and sources),
``config.json``, ``history.csv``, ``epochs.jsonl`` (validation metrics per epoch, for the record: nothing is
selected on them), ``val_probs.npz`` and ``summary.json``. Augmentation runs in numpy/OpenCV/albumentations,
so the script runs on any Keras 3 backend.
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

from edgeskin.datasets import apply_split, grouped_stratified_split, save_split  # noqa: E402
from edgeskin.labels import DX8_CLASSES, DX8_TO_DX7  # noqa: E402

log = logging.getLogger("train_classifier")


def load_config(path: str | None, overrides: dict) -> dict:
    config = json.loads(Path(path).read_text()) if path else {}
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


def make_batches(
    sample,
    index: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_weights: np.ndarray,
    config: dict,
    workers: int = 1,
):
    """A keras.utils.PyDataset of augmented training batches ``(images, one_hot, weights)``.

    Each epoch draws ``len(index)`` images with replacement, with the source-balanced ``probabilities``; one
    generator per batch, seeded from (seed, epoch, batch), so a run is reproducible whatever the worker order.
    """
    import keras

    n_classes = len(class_weights)
    batch = config["batch_size"]

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
            self.epoch = 0
            self._draw()

        def _draw(self):
            rng = np.random.default_rng([config["seed"], self.epoch, 1])
            self.order = rng.choice(len(index), size=len(index), replace=True, p=probabilities)

        def __len__(self):
            return int(np.ceil(len(index) / batch))

        def __getitem__(self, b):
            rows = self.order[b * batch : (b + 1) * batch]
            rng = np.random.default_rng([config["seed"], self.epoch, b])
            images = np.stack([sample(int(index[r]), rng) for r in rows])
            y = labels[rows]
            return images, np.eye(n_classes, dtype=np.float32)[y], class_weights[y]

        def on_epoch_end(self):
            self.epoch += 1
            self._draw()

    return Batches()


def evaluate_probs(y_true: np.ndarray, probs: np.ndarray, classes: tuple[str, ...] = DX8_CLASSES) -> dict:
    """Training-log metrics: the model's own classes and the 7-dx view (ak + scc = akiec), via edgeskin.evaluation."""
    from edgeskin.evaluation import classification_metrics
    from edgeskin.labels import DX_CLASSES, to_dx7

    own = classification_metrics(y_true, probs, classes)
    lookup = np.array([DX_CLASSES.index(DX8_TO_DX7.get(dx, dx)) for dx in classes])
    view = classification_metrics(lookup[y_true], to_dx7(probs, classes), DX_CLASSES)
    return {
        "accuracy": own["accuracy"],
        "balanced_accuracy": own["balanced_accuracy"],
        "auc": own["auc"],
        "balanced_accuracy_7dx": view["balanced_accuracy"],
        "auc_7dx": view["auc"],
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
    target = np.eye(len(DX8_CLASSES), dtype=np.float32)[np.zeros(len(batch), int)]
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
        n_classes=len(DX8_CLASSES),
        weights=None,
        dropout=config["dropout"],
        bn_momentum=config["bn_momentum"],
    )
    clean.set_weights(model.get_weights())
    clean.save(path)


def load_data(config: dict, limit: int | None = None):
    """The multi-source 8-dx table, the source-held-out ids, and the internal lesion-grouped split."""
    from edgeskin.datasets import load_multisource, source_holdout

    data_cfg = config["data"]
    data = load_multisource(
        resolve(data_cfg["ham_metadata"]),
        resolve(data_cfg["ham_images"]),
        resolve(data_cfg["isic_images"]),
        resolve(data_cfg["ground_truth"]),
    )
    log.info("multi-source table: %d images %s; %s", len(data), data.counts(), json.dumps(data.extras["per_source"]))
    holdout_cfg = config["holdout"]
    held = set(source_holdout(data, holdout_cfg["source"], holdout_cfg["fraction"], holdout_cfg["seed"]))
    rest = data.subset([i for i, image_id in enumerate(data.image_ids) if image_id not in held])
    if limit:
        rest = rest.subset(np.random.default_rng(0).permutation(len(rest))[:limit])
    split = grouped_stratified_split(rest, config["val_fraction"], config["seed"])
    split["source_holdout"] = {**holdout_cfg, "images": sorted(held)}
    split["sources"] = dict(zip(data.image_ids, data.image_sources, strict=True))
    return data, rest, split


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
    parser.add_argument(
        "--time-budget", type=float, dest="time_budget", help="seconds: fewer epochs if the measured speed needs it"
    )
    parser.add_argument(
        "--init-from", dest="init_from",
        help="a saved .keras model of the same architecture to continue from (fresh schedule; warmup_epochs may be 0)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="augmentation threads")
    parser.add_argument("--limit", type=int, help="use only N random images (smoke tests)")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    local = ("config", "out", "limit", "time_budget", "workers")
    overrides = {k: v for k, v in vars(args).items() if k not in local}
    config = load_config(args.config, overrides)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import keras

    from edgeskin.report.common import keras_device
    from training.classifier_data import (
        SampleMaker,
        balanced_class_weights,
        load_frames,
        sampling_probabilities,
    )
    from training.classifier_model import build_classifier, resolve_weights

    keras.utils.set_random_seed(config["seed"])
    started = time.time()
    classes = DX8_CLASSES
    data, rest, split = load_data(config, args.limit)
    save_split(split, out / "split.json")
    train, val = apply_split(rest, split, "train"), apply_split(rest, split, "val")
    log.info(
        "split: %d train / %d val (lesion-grouped, stratified by dx and source, seed %d); %d %s images held out",
        len(train), len(val), config["seed"], len(split["source_holdout"]["images"]), config["holdout"]["source"],
    )  # fmt: skip
    size = config["input_size"]
    mask_dirs = [resolve(d) for d in config["data"]["masks"]]
    frames = load_frames(rest, mask_dirs, config["frame_height"], workers=args.workers)
    position = {image_id: i for i, image_id in enumerate(rest.image_ids)}
    train_index = np.array([position[i] for i in train.image_ids])
    val_index = np.array([position[i] for i in val.image_ids])
    sample = SampleMaker(frames, config)
    x_val = sample.validation(val_index, config["crop"]["val_margin"]).astype(np.float32)
    log.info("frames decoded at 4:3 (%d rows), %d with a mask box; %.0f s", config["frame_height"],
             int(frames.masked.sum()), time.time() - started)  # fmt: skip

    probabilities = sampling_probabilities(train.image_sources, train.labels, config["source_shares"])
    class_weights = balanced_class_weights(train.labels, probabilities, len(classes))
    weights_dir = config.get("weights_dir")
    weights = resolve_weights(
        config["backbone"], config["alpha"], config["weights"], resolve(weights_dir) if weights_dir else None
    )
    model = build_classifier(
        backbone=config["backbone"],
        alpha=config["alpha"],
        input_size=size,
        n_classes=len(classes),
        weights=weights,
        dropout=config["dropout"],
        bn_momentum=config["bn_momentum"],
    )
    if config.get("init_from"):
        model.set_weights(keras.models.load_model(resolve(config["init_from"]), compile=False).get_weights())
        log.info("continuing from %s", config["init_from"])
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=config["label_smoothing"])
    steps = int(np.ceil(len(train) / config["batch_size"]))
    if args.time_budget:
        config["epochs_configured"] = config["epochs"]
        config["epochs"] = plan_epochs(model, x_val, config, steps, args.time_budget, loss)
    warmup = config["warmup_epochs"] * steps
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config["learning_rate"] / 20 if warmup else config["learning_rate"],
        decay_steps=max(1, config["epochs"] * steps - warmup),
        warmup_target=config["learning_rate"] if warmup else None,
        warmup_steps=warmup,
    )
    ema = config.get("ema")
    optimizer = keras.optimizers.AdamW(
        schedule, weight_decay=config["weight_decay"], use_ema=bool(ema), ema_momentum=ema or 0.99
    )
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    log.info(
        "class weights (balanced as drawn): %s",
        {c: round(float(w), 2) for c, w in zip(classes, class_weights, strict=True)},
    )
    (out / "config.json").write_text(
        json.dumps(
            {
                **config,
                "resolved_weights": weights,
                "class_weights": dict(zip(classes, map(float, class_weights), strict=True)),
                "classes": list(classes),
                "backend": keras.backend.backend(),
                "data_report": data.extras,
            },
            indent=1,
        )
    )
    val_sources = np.array(val.image_sources)

    def val_metrics(probs: np.ndarray) -> dict:
        metrics = evaluate_probs(val.labels, probs, classes)
        for source in sorted(set(val_sources.tolist())):
            part = val_sources == source
            metrics[f"balanced_accuracy_7dx_{source}"] = evaluate_probs(val.labels[part], probs[part], classes)[
                "balanced_accuracy_7dx"
            ]
        return metrics

    class EpochReport(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            probs = self.model.predict(x_val, batch_size=64, verbose=0)
            metrics = val_metrics(probs)
            metrics.update(epoch=epoch + 1, loss=float(logs["loss"]), elapsed_s=round(time.time() - started, 1))
            with (out / "epochs.jsonl").open("a") as handle:
                handle.write(json.dumps(metrics) + "\n")
            log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
            # A checkpoint of the raw (non-EMA) weights, for a run that must be cut short; not a selection.
            save_inference_model(self.model, config, out / "checkpoint.keras")

    (out / "epochs.jsonl").unlink(missing_ok=True)
    model.fit(
        make_batches(sample, train_index, train.labels, probabilities, class_weights, config, workers=args.workers),
        epochs=config["epochs"],
        callbacks=[EpochReport(), keras.callbacks.CSVLogger(str(out / "history.csv"))],
        verbose=1 if sys.stdout.isatty() else 2,
    )
    train_seconds = time.time() - started
    # fit() ends by writing the EMA weights into the model (when EMA is on): that is the model saved.
    save_inference_model(model, config, out / "model.keras")
    probs = model.predict(x_val, batch_size=64, verbose=0)
    np.savez_compressed(
        out / "val_probs.npz", image_ids=np.array(val.image_ids), labels=val.labels, probs=probs, sources=val_sources
    )
    summary = {
        "val": val_metrics(probs),
        "weights": "EMA" if ema else "last epoch",
        "classes": list(classes),
        "n_train": len(train),
        "n_val": len(val),
        "n_source_holdout": len(split["source_holdout"]["images"]),
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
