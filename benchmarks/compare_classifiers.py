"""Compare classifiers under the issue-30 ship rule (docs/ship-rule.md) and say which, if any, ships.

``python -m benchmarks.compare_classifiers --model SPEC [--model SPEC ...] --json FILE --markdown FILE``

Each ``--model`` is ``key=value`` pairs joined by commas::

    role=predecessor,name=A,path=edgeskin/models/edgeskin-mnv2-cls.tflite,trained_on=training/runs/classifier/split.json
    role=candidate,name=student,path=artifacts/export/student/edgeskin-mnv2-cls.tflite,trained_on=...
    role=reference,name=teacher-m1,path=artifacts/teacher-m1-copy,weights=raw,trained_on=...

Keys: ``role`` (candidate, predecessor, reference: scored and compared, decides nothing; dry-run: the rule
applied to a model that is not a candidate, to show the output), ``name``, ``path`` (an INT8 ``.tflite`` with
its spec beside it, or a Keras run folder of ``training.train_classifier``), ``trained_on`` (a ``split.json``
whose ``train`` images the model trained on: they are left out of its figures and of every comparison with it).
INT8 only: ``views`` (``spec``: the views its spec names, as deployed; ``1``: one view) and ``scores``
(``calibrated``: the spec's calibration, as deployed; ``logits``: softmax of the raw outputs, for a model whose
calibration today's runtime refuses). Keras only: ``weights`` (``ema``: ema.keras, ``raw``: checkpoint.keras;
``--materialize`` of the trainer writes both), scored in float, one view, without calibration.

Data: the internal validation of ``--split`` (per source: HAM10000, ISIC 2017) decides; the held-out ISIC 2017
third and PH2 are reported and decide nothing. Every image is classified on its expert-mask crop made as the
trainer's validation and the export make it (``training.classifier_data.load_frames``,
:func:`edgeskin.core.crop.crop_with_margin` with the config's ``val_margin``; PH2 and the held-out third through
``convert.export_classifier.external_sets``); the model then resizes and preprocesses as on the device.

Per set, source and model: melanoma AUC, 7-dx balanced accuracy (ak + scc = akiec), malignant sensitivity and
specificity at the model's triage threshold, specificity at 85 % and 90 % malignant sensitivity, referral and
benign-referral rates, ECE; per candidate and predecessor the paired bootstrap interval of each rule metric's
difference, and the rule's decision with every figure. Writes ``--json`` and ``--markdown``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("compare_classifiers")

ROLES = ("candidate", "predecessor", "reference", "dry-run")
DECIDING = ("candidate", "dry-run")  # roles the rule decides on
RULE_METRICS = ("melanoma_auc", "balanced_accuracy_7dx")
DECIDING_SET = "internal_validation"
SOURCES = ("ham10000", "isic2017")
RESAMPLES = 2000
SEED = 0
TIE = 0.005  # rule 3: mean melanoma AUCs within this are a tie, broken by the mean balanced accuracy
SENSITIVITIES = (0.85, 0.90)
# What a split's run and a spec's training config must share (a continued run changes epochs and learning rate).
PROVENANCE_KEYS = ("backbone", "alpha", "input_size", "profile", "seed", "val_fraction")
MODEL_KEYS = {"role", "name", "path", "trained_on", "views", "scores", "weights"}


class CompareError(Exception):
    """Bad input to the comparison: the message says what was expected and what came."""


# -- stage 1: what is compared --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelEntry:
    """One ``--model``: what to load, how to score it, and which images it trained on."""

    name: str
    role: str
    path: Path
    trained_on: Path | None = None
    views: str = "spec"
    scores: str = "calibrated"
    weights: str = "ema"

    @property
    def is_tflite(self) -> bool:
        return self.path.suffix == ".tflite"


def parse_model(text: str) -> ModelEntry:
    """``key=value,...`` → :class:`ModelEntry`; a one-line :class:`CompareError` for anything malformed."""
    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise CompareError(f"--model {text!r}: expected key=value pairs joined by commas")
    values = {key.strip(): value.strip() for key, value in pairs}
    unknown = set(values) - MODEL_KEYS
    if unknown:
        raise CompareError(f"--model {text!r}: unknown key(s) {sorted(unknown)}; expected some of {sorted(MODEL_KEYS)}")
    for key in ("role", "name", "path"):
        if not values.get(key):
            raise CompareError(f"--model {text!r}: {key}= is required")
    choices = {"role": ROLES, "views": ("spec", "1"), "scores": ("calibrated", "logits"), "weights": ("ema", "raw")}
    for key, allowed in choices.items():
        if key in values and values[key] not in allowed:
            raise CompareError(f"--model {text!r}: {key} must be one of {list(allowed)}, got {values[key]!r}")
    path = Path(values.pop("path"))
    trained = values.pop("trained_on", "")
    entry = ModelEntry(path=path, trained_on=Path(trained) if trained else None, **values)
    if entry.is_tflite and not path.is_file():
        raise CompareError(f"{entry.name}: no model file at {path}")
    if not entry.is_tflite and not path.is_dir():
        raise CompareError(f"{entry.name}: {path} is neither a .tflite file nor a Keras run folder")
    if entry.trained_on is not None and not entry.trained_on.is_file():
        raise CompareError(f"{entry.name}: trained_on split {entry.trained_on} does not exist")
    return entry


def check_entries(entries: Sequence[ModelEntry]) -> None:
    """Unique names; at least one predecessor when anything is to be decided."""
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise CompareError(f"model names must be unique, got {names}")
    if any(e.role in DECIDING for e in entries) and not any(e.role == "predecessor" for e in entries):
        raise CompareError("a candidate (or dry run) needs at least one role=predecessor model to be compared with")


# -- stage 2: the images ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvalSet:
    """The crops of one evaluation set, with their truth (8-dx indices) and sources."""

    name: str
    image_ids: tuple[str, ...]
    sources: np.ndarray
    labels: np.ndarray
    crops: list[np.ndarray] = field(repr=False)
    decides: bool = False


def mask_crops(subset: Any, config: dict) -> list[np.ndarray]:
    """The pipeline's crop of each image's expert-mask box (the trainer's validation crop before its resize)."""
    from edgeskin.core.crop import crop_with_margin
    from training.classifier_data import load_frames

    masks = [REPO / d for d in config["data"]["masks"]]
    frames = load_frames(subset, masks, config["frame_height"])
    margin = config["crop"]["val_margin"]
    return [crop_with_margin(f, b, margin)[0] for f, b in zip(frames.frames, frames.boxes, strict=True)]


def load_sets(split_path: Path, config_path: Path, ph2_dir: Path | None) -> tuple[list[EvalSet], dict[str, str]]:
    """The internal validation of ``split_path`` (deciding) and, with ``ph2_dir``, the held-out third and PH2;
    with the lesion id of every image of the multi-source table."""
    from edgeskin.datasets import apply_split
    from training.train_classifier import load_data

    config = json.loads(config_path.read_text())
    split = json.loads(split_path.read_text())
    data, rest, _ = load_data(config)
    val = apply_split(rest, split, "val")
    if sorted(val.image_ids) != sorted(split["val"]):
        raise CompareError(f"{split_path}: {len(split['val']) - len(val)} validation images are not in the data set")
    sets = [
        EvalSet(DECIDING_SET, val.image_ids, np.array(val.image_sources), val.labels, mask_crops(val, config), True)
    ]
    if ph2_dir is not None:
        sets += external(config, split, data, ph2_dir)
    for item in sets:
        names, numbers = np.unique(item.sources, return_counts=True)
        counts = dict(zip(names.tolist(), numbers.tolist(), strict=True))
        log.info("%s: %d images %s", item.name, len(item.image_ids), counts)
    return sets, dict(zip(data.image_ids, data.groups, strict=True))


def external(config: dict, split: dict, data: Any, ph2_dir: Path) -> list[EvalSet]:
    """The held-out third and PH2 as the export's external checks crop them (reported, never deciding)."""
    import csv

    from convert.export_classifier import external_sets

    crops = external_sets(config, split, data, ph2_dir, config["crop"]["val_margin"])
    held = set(split["source_holdout"]["images"])
    holdout = [i for i, image_id in enumerate(data.image_ids) if image_id in held]  # external_sets' order
    ph2_ids = tuple(row["image_id"] for row in csv.DictReader((ph2_dir / "labels.csv").open()))
    source = split["source_holdout"]["source"]
    out = []
    for name, ids in ((f"{source}_heldout", tuple(data.image_ids[i] for i in holdout)), ("ph2", ph2_ids)):
        images, labels = crops[name]
        if len(images) != len(ids):
            raise CompareError(f"{name}: {len(images)} crops for {len(ids)} image ids")
        out.append(EvalSet(name, ids, np.full(len(ids), name.removesuffix("_heldout")), np.asarray(labels), images))
    return out


# -- stage 3: scoring ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scored:
    """A model's probabilities on every set, in its own label order, and what it was scored with."""

    entry: ModelEntry
    labels: tuple[str, ...]
    threshold: float | None
    probabilities: dict[str, np.ndarray]
    trained: frozenset[str]
    record: dict


def trained_ids(entry: ModelEntry) -> frozenset[str]:
    return frozenset(json.loads(entry.trained_on.read_text())["train"]) if entry.trained_on else frozenset()


def shown_path(path: Path) -> str:
    """A path for the report: relative to the checkout when inside it, else the file or folder name alone."""
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


def provenance_check(spec: dict, entry: ModelEntry) -> dict:
    """Whether the spec's record agrees with ``trained_on``: its validation image count, and the training config
    it names against the ``config.json`` beside the split (the run the split belongs to)."""
    if entry.trained_on is None:
        return {"checked": False, "why": "no trained_on split given"}
    split = json.loads(entry.trained_on.read_text())
    recorded = (spec.get("metrics") or {}).get("validation_images")
    trained = (spec.get("provenance") or {}).get("training_config") or {}
    run_config = entry.trained_on.with_name("config.json")
    config = json.loads(run_config.read_text()) if run_config.is_file() else {}
    differ = sorted(k for k in PROVENANCE_KEYS if trained.get(k) != config.get(k))
    agrees = recorded == len(split.get("val", ())) and not differ
    if not agrees:
        log.warning(
            "%s: its spec records %s validation images, %s has %d",
            entry.name,
            recorded,
            entry.trained_on,
            len(split["val"]),
        )
    return {
        "spec_split_file": (spec.get("provenance") or {}).get("split_file"),
        "spec_validation_images": recorded,
        "trained_on_validation_images": len(split.get("val", ())),
        "trained_on_training_images": len(split.get("train", ())),
        "training_config_keys_compared": list(PROVENANCE_KEYS),
        "training_config_differs_in": differ,
        "agrees": agrees,
    }


def open_tflite(entry: ModelEntry) -> tuple[Any, dict]:
    """The runtime's Classifier for ``entry`` (its calibration dropped for ``scores=logits``) and its spec dict."""
    from edgeskin.errors import SpecError
    from edgeskin.runtime.spec import ModelSpec, spec_path_for
    from edgeskin.tasks.classifier import Classifier, ClassifierOptions

    spec = json.loads(spec_path_for(entry.path).read_text())
    if entry.scores == "logits":
        spec = {k: v for k, v in spec.items() if k != "calibration"}
    try:
        options = ClassifierOptions(
            entry.path, spec=ModelSpec.from_dict(spec), num_threads=2, tta=() if entry.views == "1" else None
        )
        return Classifier.create(options), spec
    except SpecError as error:
        hint = "; score its raw outputs with scores=logits" if "calibration" in str(error) else ""
        raise CompareError(f"{entry.name}: {error}{hint}") from error


def score_tflite(entry: ModelEntry, sets: Sequence[EvalSet]) -> Scored:
    """INT8 through the edgeskin runtime: the spec's views (or one), its calibration (or raw softmax)."""
    from edgeskin.progress import progress
    from edgeskin.runtime.spec import sha256_file

    classifier, spec = open_tflite(entry)
    probabilities = {}
    with classifier:
        for item in sets:
            rows = []
            for first in progress(range(0, len(item.crops), 16), f"{entry.name} {item.name}", unit="x16"):
                rows += [c.probabilities for c, _ in classifier.classify_many(item.crops[first : first + 16])]
            probabilities[item.name] = np.asarray(rows, np.float64)
        record = {
            "file": shown_path(entry.path),
            "sha256": sha256_file(entry.path),
            "kind": "INT8 TFLite through the edgeskin runtime",
            "views": list(classifier.views),
            "scores": "spec calibration (as deployed)"
            if entry.scores == "calibrated"
            else "softmax of the raw outputs (calibration not applied)",
            "provenance": provenance_check(spec, entry),
        }
        return Scored(
            entry, classifier.labels, classifier.spec.malignant_threshold, probabilities, trained_ids(entry), record
        )


def score_keras(entry: ModelEntry, sets: Sequence[EvalSet]) -> Scored:
    """A float Keras run (``ema.keras`` or ``checkpoint.keras``), one view, on the runtime's resize and profile."""
    import keras

    from edgeskin.core.geometry import resize_to_input
    from edgeskin.core.preprocess import get_profile
    from edgeskin.labels import DX8_CLASSES
    from edgeskin.runtime.spec import sha256_file
    from training.classifier_model import register_custom_layers

    register_custom_layers()
    config = json.loads((entry.path / "config.json").read_text())
    file = entry.path / ("ema.keras" if entry.weights == "ema" else "checkpoint.keras")
    if not file.is_file():
        raise CompareError(
            f"{entry.name}: no {file.name} in {entry.path} (python -m training.train_classifier --materialize RUN writes it)"
        )
    model = keras.models.load_model(file, compile=False)
    size, profile = config["input_size"], get_profile(config["profile"])
    probabilities = {}
    for item in sets:
        pixels = np.stack([profile.apply(resize_to_input(c, (size, size), "stretch")[0]) for c in item.crops])
        probabilities[item.name] = np.asarray(
            model.predict(pixels.astype(np.float32), batch_size=32, verbose=0), np.float64
        )
    state = entry.path / "state.json"
    record = {
        "file": f"{shown_path(entry.path)}/{file.name}",
        "sha256": sha256_file(file),
        "kind": f"float Keras ({keras.backend.backend()}), {entry.weights} weights, one view, no calibration",
        "views": ["identity"],
        "scores": "softmax output of the float model",
        "epochs_done": json.loads(state.read_text()).get("epochs_done") if state.is_file() else None,
        "config": {k: config.get(k) for k in ("backbone", "alpha", "input_size", "profile", "seed")},
    }
    return Scored(entry, tuple(config.get("classes", DX8_CLASSES)), None, probabilities, trained_ids(entry), record)


def cache_file(entry: ModelEntry, cache: Path) -> Path:
    """Where ``entry``'s scores are kept: named by the model file's SHA-256 and how it is scored."""
    from edgeskin.runtime.spec import sha256_file

    weights = entry.path / ("ema.keras" if entry.weights == "ema" else "checkpoint.keras")
    digest = sha256_file(entry.path if entry.is_tflite else weights)[:16]
    how = f"views-{entry.views}_{entry.scores}" if entry.is_tflite else f"keras-{entry.weights}"
    return cache / f"{digest}_{how}.npz"


def load_cached(entry: ModelEntry, path: Path, sets: Sequence[EvalSet]) -> Scored | None:
    """The cached scores of ``entry`` when they cover exactly these sets' images, else None."""
    if not path.is_file():
        return None
    stored = np.load(path)
    meta = json.loads(str(stored["meta"]))
    if any(meta["image_ids"].get(s.name) != list(s.image_ids) for s in sets):
        return None
    probabilities = {s.name: stored[s.name] for s in sets}
    return Scored(entry, tuple(meta["labels"]), meta["threshold"], probabilities, trained_ids(entry), meta["record"])


def save_cached(scored: Scored, path: Path, sets: Sequence[EvalSet]) -> None:
    meta = {
        "labels": list(scored.labels), "threshold": scored.threshold, "record": scored.record,
        "image_ids": {s.name: list(s.image_ids) for s in sets},
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, meta=json.dumps(meta), **scored.probabilities)


def score(entry: ModelEntry, sets: Sequence[EvalSet], cache: Path | None = None) -> Scored:
    """``entry``'s probabilities on ``sets``; from ``cache`` when it holds this model's scores of these images."""
    path = cache_file(entry, cache) if cache else None
    cached = load_cached(entry, path, sets) if path else None
    if cached is not None:
        log.info("%s: scores from %s", entry.name, path)
        return cached
    started = time.perf_counter()
    scored = score_tflite(entry, sets) if entry.is_tflite else score_keras(entry, sets)
    log.info("%s scored in %.0f s", entry.name, time.perf_counter() - started)
    if path:
        save_cached(scored, path, sets)
    return scored


# -- stage 4: metrics --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RuleScores:
    """What the rule's two metrics need, per image: melanoma truth and P(mel); 7-dx truth and prediction."""

    is_melanoma: np.ndarray
    p_melanoma: np.ndarray
    y7: np.ndarray
    predicted7: np.ndarray

    def take(self, index: np.ndarray) -> RuleScores:
        return RuleScores(self.is_melanoma[index], self.p_melanoma[index], self.y7[index], self.predicted7[index])


def rule_scores(labels8: np.ndarray, probabilities: np.ndarray, model_labels: Sequence[str]) -> RuleScores:
    from edgeskin.labels import DX8_CLASSES, DX_CLASSES, dx7_matrix, to_dx7

    p7 = to_dx7(probabilities, model_labels)
    y7 = dx7_matrix(DX8_CLASSES)[labels8].argmax(axis=1)
    mel = DX_CLASSES.index("mel")
    return RuleScores(y7 == mel, p7[:, mel].astype(np.float64), y7, p7.argmax(axis=1))


def rule_metric(name: str, scores: RuleScores) -> float:
    """The rule's metrics: melanoma-vs-all ROC AUC of P(mel); 7-dx balanced accuracy over the classes present."""
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    if name == "melanoma_auc":
        return float(roc_auc_score(scores.is_melanoma, scores.p_melanoma))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true": expected on a resample
        return float(balanced_accuracy_score(scores.y7, scores.predicted7))


def specificity_at_sensitivity(truth: np.ndarray, scores: np.ndarray, sensitivity: float) -> float | None:
    """The highest specificity of a threshold on ``scores`` whose sensitivity is at least ``sensitivity``."""
    from sklearn.metrics import roc_curve

    truth = np.asarray(truth, bool)
    if truth.all() or not truth.any():
        return None
    fpr, tpr, _ = roc_curve(truth, scores)
    return round(float(1.0 - fpr[tpr >= sensitivity - 1e-12].min()), 6)


def model_truth(labels8: np.ndarray, model_labels: Sequence[str]) -> np.ndarray:
    """8-dx truth as indices into the model's labels (ak and scc become akiec for a 7-dx model)."""
    from edgeskin.labels import DX8_CLASSES, DX8_TO_DX7

    names = [DX8_CLASSES[i] for i in labels8]
    labels = list(model_labels)
    return np.array([labels.index(n if n in labels else DX8_TO_DX7[n]) for n in names], np.int64)


def source_metrics(
    labels8: np.ndarray, probabilities: np.ndarray, model_labels: Sequence[str], threshold: float | None
) -> dict:
    """Every reported figure of one model on one source's images."""
    from edgeskin.calibration import expected_calibration_error
    from edgeskin.evaluation import malignant_metrics, melanoma_metrics
    from edgeskin.labels import malignant_index, malignant_probability, refer_decision

    y = model_truth(labels8, model_labels)
    scores = rule_scores(labels8, probabilities, model_labels)
    malignant = malignant_metrics(y, probabilities, threshold, model_labels)
    melanoma = melanoma_metrics(y, probabilities, model_labels, threshold)
    is_malignant = np.isin(y, malignant_index(model_labels))
    p_malignant = malignant_probability(probabilities, model_labels)
    both = scores.is_melanoma.any() and not scores.is_melanoma.all()
    out = {
        "n": int(len(y)),
        "n_melanoma": int(scores.is_melanoma.sum()),
        "n_malignant": int(is_malignant.sum()),
        "melanoma_auc": round(rule_metric("melanoma_auc", scores), 6) if both else None,
        "balanced_accuracy_7dx": round(rule_metric("balanced_accuracy_7dx", scores), 6),
        "malignant_sensitivity": malignant["sensitivity"],
        "malignant_specificity": malignant["specificity"],
        "triage": malignant["rule"],
    }
    for s in SENSITIVITIES:
        out[f"specificity_at_{round(s * 100)}_sensitivity"] = specificity_at_sensitivity(is_malignant, p_malignant, s)
    out["referral_rate"] = round(float(refer_decision(probabilities, model_labels, threshold).mean()), 6)
    out["melanomas_referred"] = melanoma["melanomas_referred"]
    out["benign_referred"] = melanoma["benign_referred"]
    out["ece"] = round(expected_calibration_error(probabilities, y), 6)
    return out


def unseen(item: EvalSet, *models: Scored) -> np.ndarray:
    """Rows of ``item`` that none of ``models`` trained on."""
    trained = frozenset().union(*(m.trained for m in models))
    return np.array([image_id not in trained for image_id in item.image_ids], bool)


def model_metrics(scored: Scored, sets: Sequence[EvalSet], lesion_of: dict[str, str]) -> dict:
    """Per set and source, on the images the model did not train on; with the counts left out."""
    trained_lesions = frozenset(lesion_of[i] for i in scored.trained if i in lesion_of)
    out: dict[str, dict] = {}
    for item in sets:
        keep = unseen(item, scored)
        probabilities = scored.probabilities[item.name]
        per_source = {}
        for source in sorted(set(item.sources.tolist())):
            rows = keep & (item.sources == source)
            per_source[source] = source_metrics(item.labels[rows], probabilities[rows], scored.labels, scored.threshold)
            per_source[source]["trained_on_left_out"] = int(((item.sources == source) & ~keep).sum())
            per_source[source]["same_lesion_trained"] = same_lesion_count(item, rows, trained_lesions, lesion_of)
        out[item.name] = per_source
    return out


def widen_to_lesions(scored: Scored, lesion_of: dict[str, str]) -> Scored:
    """``scored`` with every image of a lesion it trained on counted as trained on (``--exclude lesions``)."""
    lesions = frozenset(lesion_of[i] for i in scored.trained if i in lesion_of)
    widened = scored.trained | {image_id for image_id, lesion in lesion_of.items() if lesion in lesions}
    return dataclasses.replace(scored, trained=frozenset(widened))


def same_lesion_count(item: EvalSet, rows: np.ndarray, trained_lesions: frozenset[str], lesion_of: dict) -> int:
    """Images kept whose lesion the model trained on through another image (reported; the rule counts images)."""
    return int(sum(lesion_of.get(item.image_ids[i]) in trained_lesions for i in np.flatnonzero(rows)))


# -- stage 5: the paired bootstrap and the rule -----------------------------------------------------------------
def resample_indices(is_melanoma: np.ndarray, n_resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``(n_resamples, n)`` image indices drawn with replacement; a draw without a melanoma or without a
    non-melanoma (the AUC's two classes) is drawn again. One set of draws serves every model of a comparison."""
    is_melanoma = np.asarray(is_melanoma, bool)
    n = len(is_melanoma)
    if n == 0 or is_melanoma.all() or not is_melanoma.any():
        raise CompareError(f"a paired bootstrap needs melanomas and other lesions, got {int(is_melanoma.sum())} of {n}")
    rng = np.random.default_rng(seed)
    out = np.empty((n_resamples, n), np.int64)
    done = 0
    while done < n_resamples:
        draw = rng.integers(0, n, n)
        if is_melanoma[draw].any() and not is_melanoma[draw].all():
            out[done] = draw
            done += 1
    return out


def paired_difference(metric: str, candidate: RuleScores, predecessor: RuleScores, indices: np.ndarray) -> dict:
    """Point estimates, their difference and the percentile 95 % interval of candidate − predecessor."""
    diffs = np.array(
        [rule_metric(metric, candidate.take(i)) - rule_metric(metric, predecessor.take(i)) for i in indices]
    )
    low, high = np.percentile(diffs, [2.5, 97.5])
    ours, theirs = rule_metric(metric, candidate), rule_metric(metric, predecessor)
    return {
        "candidate": round(ours, 6),
        "predecessor": round(theirs, 6),
        "difference": round(ours - theirs, 6),
        "ci95": [round(float(low), 6), round(float(high), 6)],
    }


def compare(model: Scored, predecessor: Scored, item: EvalSet, n_resamples: int = RESAMPLES) -> dict:
    """Per source: both rule metrics on the images neither model trained on, with paired intervals."""
    keep = unseen(item, model, predecessor)
    out = {}
    for source in SOURCES:
        rows = keep & (item.sources == source)
        if not rows.any():
            raise CompareError(
                f"{model.entry.name} vs {predecessor.entry.name}: no {source} image that neither trained on"
            )
        ours = rule_scores(item.labels[rows], model.probabilities[item.name][rows], model.labels)
        theirs = rule_scores(item.labels[rows], predecessor.probabilities[item.name][rows], predecessor.labels)
        indices = resample_indices(ours.is_melanoma, n_resamples)
        out[source] = {"n": int(rows.sum()), "n_melanoma": int(ours.is_melanoma.sum())}
        out[source].update({metric: paired_difference(metric, ours, theirs, indices) for metric in RULE_METRICS})
    return out


def decide(comparisons: dict[str, dict]) -> dict:
    """The rule's items 1 and 2 over ``{predecessor: compare(...)}``; every check with its figures."""
    checks = []
    for predecessor, per_source in comparisons.items():
        for metric in RULE_METRICS:
            for source in SOURCES:
                high = per_source[source][metric]["ci95"][1]
                checks.append({
                    "rule": 1, "predecessor": predecessor, "metric": metric, "source": source,
                    "test": "upper end of the 95% interval of (candidate - predecessor) >= 0",
                    "value": high, "passed": bool(high >= 0),
                })  # fmt: skip
            ours = float(np.mean([per_source[s][metric]["candidate"] for s in SOURCES]))
            theirs = float(np.mean([per_source[s][metric]["predecessor"] for s in SOURCES]))
            checks.append({
                "rule": 2, "predecessor": predecessor, "metric": metric, "source": "mean of " + ", ".join(SOURCES),
                "test": "candidate's mean over the sources > predecessor's", "value": [round(ours, 6), round(theirs, 6)],
                "passed": bool(ours > theirs),
            })  # fmt: skip
    return {
        "passes": all(c["passed"] for c in checks),
        "failed": [c for c in checks if not c["passed"]],
        "checks": checks,
    }


def choose(decisions: dict[str, dict], means: dict[str, dict[str, float]]) -> str | None:
    """Rule 3: of the passing candidates, the highest mean melanoma AUC; within ``TIE``, the higher mean
    balanced accuracy. ``means`` holds each candidate's means against the first predecessor."""
    passing = [name for name, d in decisions.items() if d["passes"]]
    if not passing:
        return None
    best_auc = max(means[n]["melanoma_auc"] for n in passing)
    tied = [n for n in passing if best_auc - means[n]["melanoma_auc"] <= TIE]
    return max(tied, key=lambda n: means[n]["balanced_accuracy_7dx"])


# -- stage 6: the report ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """Everything measured: per-model figures, paired comparisons and the rule's decisions."""

    models: list[dict]
    comparisons: dict[str, dict[str, dict]]
    decisions: dict[str, dict]
    ships: str | None


def run_comparison(
    scored: Sequence[Scored], sets: Sequence[EvalSet], lesion_of: dict[str, str], n_resamples: int = RESAMPLES
) -> Comparison:
    """Per-model figures for every set; every non-predecessor against every predecessor; the rule's decision."""
    from edgeskin.progress import progress

    deciding = next(s for s in sets if s.decides)
    predecessors = [m for m in scored if m.entry.role == "predecessor"]
    models = [
        {"name": m.entry.name, "role": m.entry.role, **m.record, "threshold": m.threshold,
         "trained_on": shown_path(m.entry.trained_on) if m.entry.trained_on else None,
         "metrics": model_metrics(m, sets, lesion_of)}
        for m in scored
    ]  # fmt: skip
    comparisons: dict[str, dict[str, dict]] = {}
    for model in progress([m for m in scored if m.entry.role != "predecessor"], "paired bootstrap", unit="model"):
        comparisons[model.entry.name] = {p.entry.name: compare(model, p, deciding, n_resamples) for p in predecessors}
    decisions = {m.entry.name: decide(comparisons[m.entry.name]) for m in scored if m.entry.role in DECIDING}
    candidates = [m.entry.name for m in scored if m.entry.role == "candidate"]
    means = {
        name: {metric: float(np.mean([c[s][metric]["candidate"] for s in SOURCES])) for metric in RULE_METRICS}
        for name in candidates
        for c in [comparisons[name][predecessors[0].entry.name]]
    }
    ships = choose({n: decisions[n] for n in candidates}, means)
    return Comparison(models, comparisons, decisions, ships)


EXCLUDE = {
    "images": "the images each model trained on (the rule's reading)",
    "lesions": "every image of a lesion each model trained on (stricter than the rule: a sensitivity check)",
}
RULE_READINGS = [
    "A resample 'lacks a benign image' when it has no non-melanoma image: the melanoma AUC's negative class is "
    "everything but melanoma.",
    "Each comparison uses the images that neither of its two models trained on (image ids of their trained_on "
    "splits); rule 2's means are over the point estimates on those images, so a candidate's means against "
    "predecessor B are on fewer HAM10000 images than against A.",
    "Rule 3 ranks passing candidates by their means against the first predecessor given (predecessor A in the "
    "default inputs).",
    "7-dx balanced accuracy: the argmax of the 7-dx view of each model's probabilities (ak + scc summed into "
    "akiec for an 8-dx model), over the classes present in the source (and in each resample).",
    "A model whose spec calibration today's runtime refuses is scored with scores=logits (softmax of its raw "
    "outputs); its triage threshold, fitted on calibrated probabilities, is then applied to uncalibrated ones, "
    "so its sensitivity, specificity and referral figures at that threshold are not the deployed ones.",
]


def build_report(args: argparse.Namespace, sets: Sequence[EvalSet], result: Comparison, seconds: float) -> dict:
    return {
        "rule": "docs/ship-rule.md",
        "rule_readings": RULE_READINGS,
        "notes": args.note,
        "deciding_set": DECIDING_SET,
        "sets": {
            s.name: {
                "images": len(s.image_ids),
                "decides": s.decides,
                "per_source": {k: int(v) for k, v in zip(*np.unique(s.sources, return_counts=True), strict=True)},
            }
            for s in sets
        },  # fmt: skip
        "split": shown_path(Path(args.split)),
        "exclude": EXCLUDE[args.exclude],
        "crop": "expert-mask box grown by the config's val_margin (crop_with_margin), then the model's resize and profile",
        "bootstrap": {
            "resamples": RESAMPLES,
            "seed": SEED,
            "interval": "percentile 95%",
            "paired": "same resampled images for both models",
            "redraw": "a resample without a melanoma or without a non-melanoma is drawn again",
        },  # fmt: skip
        "models": result.models,
        "comparisons": result.comparisons,
        "decisions": result.decisions,
        "ships": result.ships,
        "seconds": round(seconds, 1),
    }


def _f(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


METRIC_COLUMNS = (
    ("n", "n"), ("melanoma_auc", "mel AUC"), ("balanced_accuracy_7dx", "7-dx BA"),
    ("malignant_sensitivity", "sens @thr"), ("malignant_specificity", "spec @thr"),
    ("specificity_at_85_sensitivity", "spec @85% sens"), ("specificity_at_90_sensitivity", "spec @90% sens"),
    ("referral_rate", "referred"), ("melanomas_referred", "mel referred"), ("benign_referred", "benign referred"),
    ("ece", "ECE"), ("trained_on_left_out", "left out (trained on)"),
)  # fmt: skip


def markdown_models(report: dict) -> list[str]:
    lines = []
    for set_name, info in report["sets"].items():
        role = "decides" if info["decides"] else "reported, decides nothing"
        lines += [f"### {set_name} ({info['images']} images; {role})", ""]
        lines += ["| model | role | source | " + " | ".join(t for _, t in METRIC_COLUMNS) + " |"]
        lines += ["|" + "---|" * (3 + len(METRIC_COLUMNS))]
        for model in report["models"]:
            for source, m in model["metrics"][set_name].items():
                cells = [str(m[k]) if k in ("n", "trained_on_left_out") else _f(m[k]) for k, _ in METRIC_COLUMNS]
                lines.append(f"| {model['name']} | {model['role']} | {source} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def markdown_comparisons(report: dict) -> list[str]:
    lines = ["## Paired differences on the internal validation (model − predecessor, 95% interval)", ""]
    lines += ["| model | predecessor | source | n | mel AUC | Δ mel AUC [95%] | 7-dx BA | Δ 7-dx BA [95%] |"]
    lines += ["|---|---|---|---|---|---|---|---|"]
    for name, per_predecessor in report["comparisons"].items():
        for predecessor, per_source in per_predecessor.items():
            for source in SOURCES:
                c = per_source[source]
                cells = []
                for metric in RULE_METRICS:
                    d = c[metric]
                    cells += [f"{_f(d['candidate'])} vs {_f(d['predecessor'])}",
                              f"{d['difference']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"]  # fmt: skip
                lines.append(f"| {name} | {predecessor} | {source} | {c['n']} | " + " | ".join(cells) + " |")
    return lines + [""]


def markdown_decisions(report: dict) -> list[str]:
    lines = ["## The rule's decision", ""]
    roles = {m["name"]: m["role"] for m in report["models"]}
    for name, decision in report["decisions"].items():
        label = "DRY RUN, not a candidate" if roles[name] == "dry-run" else "candidate"
        verdict = "passes" if decision["passes"] else "fails"
        lines.append(f"- **{name}** ({label}): {verdict} the rule ({len(decision['checks']) - len(decision['failed'])} "
                     f"of {len(decision['checks'])} checks hold).")  # fmt: skip
        for check in decision["failed"]:
            lines.append(f"  - fails rule {check['rule']}: {check['metric']}, {check['source']}, against "
                         f"{check['predecessor']}: {check['test']} (value {check['value']})")  # fmt: skip
    ships = report["ships"]
    lines += ["", f"Ships: **{ships}**." if ships else "Ships: no candidate (none was given, or none passes).", ""]
    return lines


def markdown(report: dict) -> str:
    lines = ["# Classifier comparison under the ship rule (docs/ship-rule.md)", ""]
    lines += [f"Split: `{report['split']}`. Crop: {report['crop']}. Bootstrap: {report['bootstrap']['resamples']} "
              f"paired resamples, seed {report['bootstrap']['seed']}, {report['bootstrap']['interval']}; "
              f"{report['bootstrap']['redraw']}.", ""]  # fmt: skip
    lines += ["## Models", ""]
    for m in report["models"]:
        lines.append(f"- **{m['name']}** ({m['role']}): `{m['file']}` (sha256 {m['sha256'][:12]}…), {m['kind']}; "
                     f"views {m['views']}; {m['scores']}; threshold {m['threshold']}; trained on `{m['trained_on']}`"
                     + (f"; epochs done {m['epochs_done']}." if m.get("epochs_done") else "."))  # fmt: skip
    lines += ["", f"Left out of each model's figures and of each comparison: {report['exclude']} ('left out' counts "
              "them; 'same_lesion_trained' in the JSON counts kept images of lesions the model trained on).", ""]  # fmt: skip
    lines += markdown_models(report) + markdown_comparisons(report) + markdown_decisions(report)
    lines += ["## Readings of the rule", ""] + [f"- {r}" for r in report["rule_readings"]] + [""]
    if report["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    return "\n".join(lines)


# -- the script ---------------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from benchmarks.checkout import DATA, RUNS

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--model", action="append", required=True, help="key=value,... (repeatable; see below)")
    parser.add_argument("--split", default=str(RUNS / "classifier" / "split.json"), help="split.json (its val decides)")
    parser.add_argument("--config", help="the run config that made the split (default: config.json beside it)")
    parser.add_argument("--ph2", default=str(DATA / "ph2"), help="PH2 folder (images/, masks/, labels.csv)")
    parser.add_argument("--no-external", action="store_true", help="leave out PH2 and the held-out third")
    parser.add_argument("--cache", help="keep each model's scores here (keyed by its SHA-256) and reuse them")
    parser.add_argument(
        "--exclude", choices=("images", "lesions"), default="images",
        help="leave out the images a model trained on (the rule), or every image of a lesion it trained on",
    )  # fmt: skip
    parser.add_argument("--note", action="append", default=[], help="a sentence for the report (repeatable)")
    parser.add_argument("--json", required=True, help="write the JSON summary here")
    parser.add_argument("--markdown", required=True, help="write the Markdown summary here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    started = time.perf_counter()
    try:
        entries = [parse_model(text) for text in args.model]
        check_entries(entries)
        split = Path(args.split)
        config = Path(args.config) if args.config else split.with_name("config.json")
        for path in (split, config):
            if not path.is_file():
                raise CompareError(f"no such file: {path}")
        sets, lesion_of = load_sets(split, config, None if args.no_external else Path(args.ph2))
        cache = Path(args.cache) if args.cache else None
        scored = [score(entry, sets, cache) for entry in entries]
        if args.exclude == "lesions":
            scored = [widen_to_lesions(m, lesion_of) for m in scored]
        result = run_comparison(scored, sets, lesion_of)
    except (CompareError, FileNotFoundError) as error:
        print(f"compare_classifiers: {error}", file=sys.stderr)
        return 2
    report = build_report(args, sets, result, time.perf_counter() - started)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    Path(args.markdown).write_text(markdown(report))
    print(
        markdown_decisions(report)[-2] if report["decisions"] else "no candidate given: figures only", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
