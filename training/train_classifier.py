"""Train the edgeskin skin-lesion classifier (Keras): 8 ISIC 2019 diagnoses from several clinics.

A run is a folder. It checkpoints every epoch and continues where it stopped, on this machine or another
(after the folder was committed)::

    python -m training.train_classifier --config training/configs/classifier.json --out training/runs/NAME \
        --time-budget 9000          # stops at the last epoch boundary inside 2.5 h (exit status 3)
    git add training/runs/NAME && git commit -m "NAME: epoch k"    # the backup outlives the machine
    python -m training.train_classifier --resume training/runs/NAME --time-budget 9000    # next session

Data: HAM10000 (two Vienna/Queensland clinics) and the ISIC 2017/2018 images of other clinics (mostly Memorial
Sloan Kettering), labelled from the ISIC 2019 and 2017 ground truth (``edgeskin.datasets.load_multisource``).
A seeded third of one source (``holdout``; the ISIC 2017 images) is held out whole for a source-held-out score;
the rest is split by lesion, stratified by dx and source. Each epoch draws images with source-balanced
probabilities (``source_shares``; ``epoch_images`` of them, by default as many as the training images: fewer
make shorter epochs, so a run that checkpoints each epoch loses less when a session ends mid-epoch) and weights
the loss so the classes are balanced as drawn. Every sample is
the runtime's lesion crop (``training.classifier_data``), augmented with albumentations, then passed through
the spec's preprocessing profile exactly as on the device (bit-exact resize). Decoded frames are cached in
``.cache/frames`` (``training.frame_cache``; never committed).

The run folder: ``resume/`` (``keras.callbacks.BackupAndRestore``: weights, EMA weights, optimizer state with
the schedule's step, completed epochs; the sampler's state is its seed and the epoch), ``state.json``
(epochs done, training seconds), ``checkpoint.keras`` (raw weights after the latest epoch, for evaluation; not
committed: ``--materialize RUN`` writes it and ``ema.keras`` from ``resume/``), ``split.json`` (train / val /
source_holdout image ids and sources; a resumed run checks that its data still give this split),
``config.json``, ``history.csv``, ``epochs.jsonl`` (validation metrics per epoch, for the record: nothing is
selected on them). After the last epoch: ``model.keras`` (EMA weights when ``ema`` is set, no optimizer
state), ``val_probs.npz`` and ``summary.json``. Augmentation runs in numpy/OpenCV/albumentations, so the
script runs on any Keras 3 backend.

Distillation (issue 30; ``training.distill``): a config section ::

    "distill": {"teachers": ["training/runs/teacher-m1"], "views": ["identity", "hflip", "vflip", "rot180"],
                "temperature": 2.0, "alpha": 0.7}

makes the run a one-view student of an ensemble teacher. Each teacher is a run folder; its float model is
restored in memory from its backup, with the raw weights by default (``distill.teacher_weights``: ``raw`` or
``ema``, as --materialize writes checkpoint.keras and ema.keras), and the SHA-256 of that backup is recorded in
config.json (``distill.sha256``): a resumed student whose teacher changed is refused. Each sample
is made once at the largest input size of student and teachers and resized (bit-exact stretch) to each model,
so the teachers see the student's augmented crop; the soft target is the mean over members and ``views``
(default: the shipped classifier's four test-time views) of softmax(teacher logits / temperature), computed
on the fly in the batch workers. Loss: (1 - alpha) x the usual cross-entropy + alpha x T^2 x KL(teacher ||
student at T), both class-weighted. The student keeps its one ``probs`` output and ``features`` layer; the
saved models (checkpoint.keras, model.keras) are plain classifiers. The first student:
``make train-student-s1`` (training/configs/student-s1.json; the Makefile's train-% starts or resumes it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]

from edgeskin.datasets import LabelledImages, apply_split, grouped_stratified_split, save_split  # noqa: E402
from edgeskin.labels import DX8_CLASSES, DX8_TO_DX7  # noqa: E402

log = logging.getLogger("train_classifier")


def load_config(path: str | None, overrides: dict) -> dict:
    config = json.loads(Path(path).read_text()) if path else {}
    config.update({k: v for k, v in overrides.items() if v is not None})
    return config


def epoch_images(config: dict, n_train: int) -> int:
    """How many images an epoch draws: ``config["epoch_images"]`` (a positive whole number) or ``n_train``."""
    drawn = config.get("epoch_images")
    if drawn is None:
        return n_train
    if isinstance(drawn, bool) or not isinstance(drawn, int) or drawn < 1:
        raise ValueError(f"epoch_images must be a positive whole number of images, got {drawn!r}")
    return drawn


def make_batches(
    sample,
    index: np.ndarray,
    labels: np.ndarray,
    probabilities: np.ndarray,
    class_weights: np.ndarray,
    config: dict,
    workers: int = 1,
    start_epoch: int = 0,
    distillation=None,
):
    """A keras.utils.PyDataset of augmented training batches ``(images, one_hot, weights)``.

    Each epoch draws ``epoch_images(config, len(index))`` images with replacement, with the source-balanced
    ``probabilities``; one
    generator per batch, seeded from (seed, epoch, batch), so a run is reproducible whatever the worker order,
    and a run resumed at ``start_epoch`` draws what an unbroken run draws from that epoch on. With a
    ``distillation`` (``training.distill.Distillation``) the samples are made at its sample size and a batch is
    ``(student images, {"probs": one_hot, "soft": teacher soft targets}, weights)``.
    """
    import keras

    n_classes = len(class_weights)
    batch = config["batch_size"]
    drawn = epoch_images(config, len(index))

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=8)
            self.epoch = start_epoch
            self._draw()

        def _draw(self):
            rng = np.random.default_rng([config["seed"], self.epoch, 1])
            self.order = rng.choice(len(index), size=drawn, replace=True, p=probabilities)

        def __len__(self):
            return int(np.ceil(drawn / batch))

        def __getitem__(self, b):
            rows = self.order[b * batch : (b + 1) * batch]
            rng = np.random.default_rng([config["seed"], self.epoch, b])
            images = np.stack([sample(int(index[r]), rng) for r in rows])
            y = labels[rows]
            if distillation is not None:
                images, soft = distillation(images)
                return images, {"probs": np.eye(n_classes, dtype=np.float32)[y], "soft": soft}, class_weights[y]
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


def model_from_config(config: dict, weights: str | None = None):
    """The classifier that ``config`` describes, over the 8 ISIC 2019 diagnoses."""
    from training.classifier_model import build_classifier

    return build_classifier(
        backbone=config["backbone"],
        alpha=config["alpha"],
        input_size=config["input_size"],
        n_classes=len(DX8_CLASSES),
        weights=weights,
        dropout=config["dropout"],
        bn_momentum=config["bn_momentum"],
    )


def inference_model(model, config: dict):
    """The trained layers as the plain one-output classifier, without optimizer (or distillation) parts."""
    clean = model_from_config(config)
    clean.set_weights(model.get_weights())
    return clean


def save_inference_model(model, config: dict, path: Path) -> None:
    """Save the trained layers without optimizer state (a third of the size), loadable on any backend."""
    inference_model(model, config).save(path)


def load_data(config: dict, limit: int | None = None, pack=None):
    """The multi-source 8-dx table, the source-held-out ids, and the internal lesion-grouped split.

    ``pack`` (a ``training.pack_for_gpu.Pack``) gives the table instead of the config's ``data`` files.
    """
    from edgeskin.datasets import load_multisource, source_holdout

    data_cfg = config["data"]
    data = pack.table() if pack is not None else load_multisource(
        resolve(data_cfg["ham_metadata"]),
        resolve(data_cfg["ham_images"]),
        resolve(data_cfg["isic_images"]),
        resolve(data_cfg["ground_truth"]),
    )  # fmt: skip
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


# Keys that config.json records beside the training config; a resumed run drops them before reusing it.
RECORDED_KEYS = ("resolved_weights", "class_weights", "classes", "backend", "data_report")
RESUME_DIR = "resume"  # keras.callbacks.BackupAndRestore's folder: weights, EMA, optimizer, epoch
SEED_FILE = "seed_state.json"  # the layers' random-number states, which BackupAndRestore does not keep
EXIT_STOPPED = 3  # stopped by the time budget at an epoch boundary; resumable


@dataclass
class TrainingData:
    """Everything a run trains and validates on, derived from its config alone."""

    split: dict
    train: LabelledImages
    val: LabelledImages
    sample: object  # training.classifier_data.SampleMaker
    train_index: np.ndarray
    x_val: np.ndarray
    probabilities: np.ndarray
    class_weights: np.ndarray
    data_report: dict


def prepare_data(config: dict, out: Path, workers: int, cache: str | None, pack=None) -> TrainingData:
    """The split (checked against ``out/split.json`` when it exists), the frames and the validation crops.

    ``pack`` (``training.pack_for_gpu.Pack``): table and frames come from it, and no frame cache is used.
    """
    from training.classifier_data import SampleMaker, balanced_class_weights, sampling_probabilities
    from training.frame_cache import cached_frames

    data, rest, split = load_data(config, config.get("limit"), pack)
    recorded = out / "split.json"
    if recorded.is_file():
        before = json.loads(recorded.read_text())
        if before.get("train") != split["train"] or before.get("val") != split["val"]:
            raise ValueError(f"{recorded} does not match the split this config gives now: the data changed")
    else:
        save_split(split, recorded)
    train, val = apply_split(rest, split, "train"), apply_split(rest, split, "val")
    log.info(
        "split: %d train / %d val (lesion-grouped, stratified by dx and source, seed %d); %d %s images held out",
        len(train), len(val), config["seed"], len(split["source_holdout"]["images"]), config["holdout"]["source"],
    )  # fmt: skip
    if pack is not None:
        frames = pack.frames(rest, workers)
    else:
        masks = [resolve(d) for d in config["data"]["masks"]]
        frames = cached_frames(rest, masks, config["frame_height"], cache, workers)
    position = {image_id: i for i, image_id in enumerate(rest.image_ids)}
    sample = SampleMaker(frames, config)
    val_index = np.array([position[i] for i in val.image_ids])
    probabilities = sampling_probabilities(train.image_sources, train.labels, config["source_shares"])
    return TrainingData(
        split=split,
        train=train,
        val=val,
        sample=sample,
        train_index=np.array([position[i] for i in train.image_ids]),
        x_val=sample.validation(val_index, config["crop"]["val_margin"]).astype(np.float32),
        probabilities=probabilities,
        class_weights=balanced_class_weights(train.labels, probabilities, len(DX8_CLASSES)),
        data_report=data.extras,
    )


def initial_model(config: dict):
    """The model a new run continues from (``init_from``): a saved ``.keras`` file, or a run folder's latest backup
    with its raw weights (the weights its per-epoch record scores). For a run folder the SHA-256 of that backup goes
    into ``config["init_sha256"]`` (recorded in the new run's config.json)."""
    import keras

    from training.distill import backup_sha256

    source = resolve(config["init_from"])
    if source.is_dir():
        try:
            config["init_sha256"] = backup_sha256(source)
        except ValueError as error:
            raise ValueError(f"init_from: {error}") from None
        log.info(
            "continuing from the raw weights of %s (backup SHA-256 %s)", config["init_from"], config["init_sha256"]
        )
        return backup_model(source, "raw")
    log.info("continuing from %s", config["init_from"])
    return keras.models.load_model(source, compile=False)


def compile_model(config: dict, steps: int, resuming: bool):
    """The model with its optimizer; ImageNet (or ``init_from``) weights only for a new run."""
    import keras

    from training.classifier_model import resolve_weights

    weights = None
    if not resuming:
        weights_dir = config.get("weights_dir")
        weights = resolve_weights(
            config["backbone"], config["alpha"], config["weights"], resolve(weights_dir) if weights_dir else None
        )
    model = model_from_config(config, weights)
    if config.get("init_from") and not resuming:
        model.set_weights(initial_model(config).get_weights())
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
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=config["label_smoothing"])
    if config.get("distill"):
        from training.distill import check_distill, distill_losses, distill_model

        section = check_distill(config["distill"])
        model = distill_model(model, section["temperature"])
        model.compile(optimizer=optimizer, **distill_losses(section, loss))
    else:
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return model, weights


def predict_probs(model, x: np.ndarray) -> np.ndarray:
    """Class probabilities of ``x`` (the ``probs`` output of a distilled student's two)."""
    out = model.predict(x, batch_size=64, verbose=0)
    return out["probs"] if isinstance(out, dict) else out


def epochs_done(out: Path) -> int:
    """Epochs that the run in ``out`` has completed and backed up (0 for a new run)."""
    metadata = out / RESUME_DIR / "training_metadata.json"
    return int(json.loads(metadata.read_text())["epoch"]) if metadata.is_file() else 0


def val_metrics(data: TrainingData, probs: np.ndarray) -> dict:
    """The validation figures of the record: overall, and the 7-dx balanced accuracy per source."""
    metrics = evaluate_probs(data.val.labels, probs, DX8_CLASSES)
    sources = np.array(data.val.image_sources)
    for source in sorted(set(sources.tolist())):
        part = sources == source
        key = f"balanced_accuracy_7dx_{source}"
        metrics[key] = evaluate_probs(data.val.labels[part], probs[part], DX8_CLASSES)["balanced_accuracy_7dx"]
    return metrics


def make_callbacks(config: dict, data: TrainingData, out: Path, budget_s: float | None, seconds_before: float):
    """Backup (every epoch), the validation record, the CSV log and the time budget, in that order."""
    import keras

    started = time.time()

    class EpochReport(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            metrics = val_metrics(data, predict_probs(self.model, data.x_val))
            elapsed = round(seconds_before + time.time() - started, 1)
            metrics.update(epoch=epoch + 1, loss=float(logs["loss"]), elapsed_s=elapsed)
            with (out / "epochs.jsonl").open("a") as handle:
                handle.write(json.dumps(metrics) + "\n")
            log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
            # The raw (non-EMA) weights as a loadable model, for evaluation and export; not a selection.
            save_inference_model(self.model, config, out / "checkpoint.keras")
            write_state(out, epoch + 1, config["epochs"], elapsed)

    class TimeBudget(keras.callbacks.Callback):
        """Stop at an epoch boundary when the next epoch would not end inside the budget."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_started = time.time()

        def on_epoch_end(self, epoch, logs=None):
            if budget_s is None:
                return
            longest = time.time() - self.epoch_started
            left = budget_s - (time.time() - started)
            if left < 1.1 * longest:
                log.info(
                    "time budget: %.0f s left, an epoch takes %.0f s: stopping after epoch %d", left, longest, epoch + 1
                )
                self.model.stop_training = True

    class SeedState(keras.callbacks.Callback):
        """The random-number states of the model's layers (dropout), which ``save_weights`` leaves out.

        Without them a resumed run draws other dropout masks than an unbroken one from its first step on.
        Runs after BackupAndRestore: it restores them once the weights are back, and saves them beside them.
        """

        path = out / RESUME_DIR / SEED_FILE

        def states(self) -> dict:
            return {v.path: v for v in self.model.non_trainable_variables if v.path.endswith("seed_generator_state")}

        def on_train_begin(self, logs=None):
            if self.path.is_file():
                saved = json.loads(self.path.read_text())
                for path, variable in self.states().items():
                    variable.assign(np.array(saved[path], dtype=variable.dtype))

        def on_epoch_end(self, epoch, logs=None):
            saved = {path: np.asarray(v.numpy()).tolist() for path, v in self.states().items()}
            self.path.write_text(json.dumps(saved) + "\n")

    backup = keras.callbacks.BackupAndRestore(str(out / RESUME_DIR), save_freq="epoch", delete_checkpoint=False)
    csv = keras.callbacks.CSVLogger(str(out / "history.csv"), append=True)
    return [backup, SeedState(), EpochReport(), csv, TimeBudget()]


def write_state(out: Path, done: int, total: int, train_seconds: float) -> None:
    """``state.json``: how far the run is, for people and for the next session."""
    state = {"epochs_done": done, "epochs": total, "complete": done >= total, "train_seconds": train_seconds}
    (out / "state.json").write_text(json.dumps(state, indent=1) + "\n")


def trim_records(out: Path, done: int) -> None:
    """Drop the records of epochs after the last backup (a run killed mid-epoch, or after its backup)."""
    path = out / "epochs.jsonl"
    if path.is_file():
        rows = [line for line in path.read_text().splitlines() if line and json.loads(line)["epoch"] <= done]
        path.write_text("".join(row + "\n" for row in rows))
    history = out / "history.csv"
    if history.is_file():
        with history.open(newline="") as handle:  # keep the CSV writer's own line ends
            lines = handle.read().splitlines(keepends=True)
        with history.open("w", newline="") as handle:
            handle.write("".join(lines[: 1 + done]))


def record_config(config: dict, out: Path, data: TrainingData, weights: str | None) -> None:
    import keras

    (out / "config.json").write_text(
        json.dumps(
            {
                **config,
                "resolved_weights": Path(weights).name if weights else None,
                "class_weights": dict(zip(DX8_CLASSES, map(float, data.class_weights), strict=True)),
                "classes": list(DX8_CLASSES),
                "backend": keras.backend.backend(),
                "data_report": data.data_report,
            },
            indent=1,
        )
    )


def finish(model, config: dict, data: TrainingData, out: Path, train_seconds: float) -> dict:
    """After the last epoch: the EMA (or last) weights as ``model.keras``, their validation scores, the summary."""
    import keras

    from edgeskin.report.common import keras_device

    # fit() ends by writing the EMA weights into the model (when EMA is on): that is the model saved.
    save_inference_model(model, config, out / "model.keras")
    probs = predict_probs(model, data.x_val)
    np.savez_compressed(
        out / "val_probs.npz",
        image_ids=np.array(data.val.image_ids),
        labels=data.val.labels,
        probs=probs,
        sources=np.array(data.val.image_sources),
    )
    summary = {
        "val": val_metrics(data, probs),
        "weights": "EMA" if config.get("ema") else "last epoch",
        "classes": list(DX8_CLASSES),
        "n_train": len(data.train),
        "n_val": len(data.val),
        "n_source_holdout": len(data.split["source_holdout"]["images"]),
        "epochs": config["epochs"],
        "train_seconds": round(train_seconds, 1),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "device": keras_device(keras.backend.backend()),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def run(config: dict, out: Path, *, workers: int, budget_s: float | None, cache: str | None, pack=None) -> int:
    """Train (or continue) the run in ``out`` until its last epoch or the time budget (``pack``: see prepare_data)."""
    import keras

    keras.utils.set_random_seed(config["seed"])
    started = time.time()
    done = epochs_done(out)
    resuming = done > 0
    if done >= config["epochs"]:
        log.info("%s has completed its %d epochs: nothing to do", out, config["epochs"])
        return 0
    data = prepare_data(config, out, workers, cache, pack)
    log.info("data ready in %.0f s", time.time() - started)
    steps = int(np.ceil(epoch_images(config, len(data.train)) / config["batch_size"]))
    model, weights = compile_model(pack.with_weights(config) if pack else config, steps, resuming)
    distillation, sample = prepare_distillation(config, data) if config.get("distill") else (None, data.sample)
    if resuming:
        trim_records(out, done)
        log.info("resuming %s after epoch %d of %d", out, done, config["epochs"])
    else:
        for name in ("epochs.jsonl", "history.csv"):
            (out / name).unlink(missing_ok=True)
        record_config(config, out, data, weights)
    log.info(
        "class weights (balanced as drawn): %s",
        {c: round(float(w), 2) for c, w in zip(DX8_CLASSES, data.class_weights, strict=True)},
    )
    before = json.loads((out / "state.json").read_text())["train_seconds"] if resuming else 0.0
    if resuming and budget_s is not None and budget_s < before / done:
        # A process always finishes the epoch it starts: do not start one that cannot end inside the budget.
        log.info("time budget %.0f s is shorter than one epoch so far (%.0f s): nothing to do", budget_s, before / done)
        return EXIT_STOPPED
    batches = make_batches(
        sample, data.train_index, data.train.labels, data.probabilities, data.class_weights, config,
        workers=workers, start_epoch=done, distillation=distillation,
    )  # fmt: skip
    model.fit(
        batches,
        epochs=config["epochs"],
        # The sampler draws each epoch's order from (seed, epoch); Keras' own batch shuffle would draw from the
        # process's global random state, which a resumed process does not share with an unbroken one.
        shuffle=False,
        callbacks=make_callbacks(config, data, out, budget_s, before),
        verbose=1 if sys.stdout.isatty() else 2,
    )
    done = epochs_done(out)
    if done < config["epochs"]:
        log.info("stopped after epoch %d of %d; continue with: python -m training.train_classifier --resume %s",
                 done, config["epochs"], out)  # fmt: skip
        return EXIT_STOPPED
    train_seconds = json.loads((out / "state.json").read_text())["train_seconds"]
    summary = finish(model, config, data, out, train_seconds)
    log.info("done: %d epochs, %.0f s of training: %s", done, train_seconds, summary["val"])
    return 0


def load_backup(config: dict, out: Path):
    """The compiled model of the run in ``out`` with its latest backup loaded: weights and optimizer (EMA) state."""
    model, _ = compile_model(config, steps=1, resuming=True)
    model.optimizer.build(model.trainable_variables)
    model.load_weights(out / RESUME_DIR / "latest.weights.h5")
    return model


def backup_model(run: Path, weights: str):
    """The float model of a run's latest backup, in memory, with its ``weights``: ``"ema"`` (raw weights when the
    run has no EMA) or ``"raw"``: the models ``--materialize`` writes as ``ema.keras`` and
    ``checkpoint.keras``. A distilled student's teachers are loaded so; nothing is written into their run folders.
    """
    recorded = json.loads((run / "config.json").read_text())
    config = {k: v for k, v in recorded.items() if k not in RECORDED_KEYS}
    model = load_backup(config, run)
    if weights == "ema" and config.get("ema"):
        model.optimizer.finalize_variable_values(model.trainable_variables)
    return inference_model(model, config)


def prepare_distillation(config: dict, data: TrainingData):
    """The teachers of ``config["distill"]`` and a sample maker at the largest input size of student and teachers.

    Records the teachers' SHA-256s in ``config["distill"]["sha256"]`` (a new run writes them into config.json;
    a resumed run checks its teachers against them).
    """
    from training.classifier_data import SampleMaker
    from training.distill import Distillation, check_distill, load_teachers

    section = check_distill(config["distill"])
    weights = section["teacher_weights"]
    teachers = load_teachers(section, lambda run: backup_model(run, weights), resolve)
    config["distill"] = {**section, "sha256": [teacher.sha256 for teacher in teachers]}
    for teacher in teachers:
        log.info(
            "teacher %s: %d px, %s weights, backup SHA-256 %s", teacher.run, teacher.input_size, weights, teacher.sha256
        )
    distillation = Distillation(teachers, tuple(section["views"]), section["temperature"], config["input_size"])
    log.info(
        "distilling at T=%g, alpha %g, from %d teacher(s) x %d views; samples made at %d px",
        section["temperature"], section["alpha"], len(teachers), len(distillation.views), distillation.sample_size,
    )  # fmt: skip
    return distillation, SampleMaker(data.sample.images, {**config, "input_size": distillation.sample_size})


def materialize(config: dict, out: Path) -> None:
    """Write the backed-up weights as loadable models: raw (``checkpoint.keras``) and EMA (``ema.keras``).

    A committed run holds only its backup (``resume/``); this recreates the models from it on a new machine.
    """
    model = load_backup(config, out)
    save_inference_model(model, config, out / "checkpoint.keras")
    if config.get("ema"):
        model.optimizer.finalize_variable_values(model.trainable_variables)
        save_inference_model(model, config, out / "ema.keras")
    log.info("%s: models of epoch %d written", out, epochs_done(out))


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--config", default=str(REPO / "training/configs/classifier.json"), help="JSON config")
    parser.add_argument("--out", help="run folder (new runs); default artifacts/classifier")
    parser.add_argument(
        "--resume", metavar="RUN",
        help="continue the run in this folder from its last completed epoch, with the config it recorded",
    )  # fmt: skip
    parser.add_argument(
        "--materialize", metavar="RUN",
        help="write RUN's backed-up weights as checkpoint.keras (raw) and ema.keras, then exit (no training)",
    )  # fmt: skip
    parser.add_argument(
        "--time-budget", type=float, dest="time_budget",
        help=f"seconds for this process: stop at the last epoch boundary that fits (exit status {EXIT_STOPPED})",
    )  # fmt: skip
    parser.add_argument("--backbone", choices=("mobilenetv2", "resnet50", "efficientnetb0"))
    parser.add_argument("--alpha", type=float)
    parser.add_argument("--input-size", type=int, dest="input_size")
    parser.add_argument("--weights", help="imagenet (local files only), none, or a path to an .h5")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument("--learning-rate", type=float, dest="learning_rate")
    parser.add_argument(
        "--init-from", dest="init_from",
        help="a saved .keras model of the same architecture, or a run folder (its latest backup, raw weights), to "
        "continue from (fresh schedule; warmup_epochs may be 0)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=2, help="augmentation threads")
    parser.add_argument("--cache", default=None, help="frame cache folder (default: .cache/frames); 'none' to decode")
    parser.add_argument("--limit", type=int, help="use only N random images (smoke tests)")
    parser.add_argument(
        "--data-pack", dest="data_pack", metavar="DIR",
        help="read the table, frames, boxes and ImageNet weights from a training.pack_for_gpu pack (a GPU machine) "
        "instead of the config's data; no frame cache",
    )  # fmt: skip
    parser.add_argument("--seed", type=int)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    from training.frame_cache import DEFAULT_CACHE

    cache = None if args.cache == "none" else (args.cache or str(DEFAULT_CACHE))
    try:
        existing = args.resume or args.materialize
        if existing:
            out = Path(existing)
            recorded = json.loads((out / "config.json").read_text())
            config = {k: v for k, v in recorded.items() if k not in RECORDED_KEYS}
            if args.materialize:
                materialize(config, out)
                return 0
        else:
            local = ("config", "out", "resume", "materialize", "time_budget", "workers", "cache", "data_pack")
            config = load_config(args.config, {k: v for k, v in vars(args).items() if k not in local})
            out = Path(args.out or REPO / "artifacts/classifier")
            if epochs_done(out):
                raise ValueError(f"{out} holds a run already: continue it with --resume {out}, or name a new --out")
        pack = None
        if args.data_pack:
            from training.pack_for_gpu import open_pack

            pack = open_pack(args.data_pack, config)
        out.mkdir(parents=True, exist_ok=True)
        return run(config, out, workers=args.workers, budget_s=args.time_budget, cache=cache, pack=pack)
    except (OSError, ValueError) as error:
        print(f"train_classifier: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
