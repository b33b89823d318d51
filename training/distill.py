"""Distillation of the classifier (issue 30): a one-view student learns an ensemble teacher's soft targets.

A student run's config names its teachers by run folder::

    "distill": {"teachers": ["training/runs/teacher-m1"], "views": ["identity", "hflip", "vflip", "rot180"],
                "temperature": 2.0, "alpha": 0.7, "teacher_weights": "raw"}

Each training sample is made once, at the largest input size of the student and the teachers (the sampler,
crop, augmentation and profile of ``training.classifier_data``, drawn from (seed, epoch, batch) as always),
then resized (bit-exact, the runtime's stretch) to each model's input: every teacher sees the same augmented
crop as the student, at its own input size. The teachers are the float models of their runs' latest
backups, with their raw weights (``teacher_weights: "raw"``, the default: ``checkpoint.keras`` of
``--materialize``) or their EMA weights (``"ema"``: ``ema.keras``). Raw is the default because the EMA model
averages the trainable weights only: its batch-norm statistics are the raw model's, which fit it less the faster
the weights move (teacher-m1 after epoch 5: 7-dx balanced accuracy 0.415 with EMA weights, 0.606 raw,
``training/runs/teacher-m1/compare_epoch5.md``). Each teacher runs the crop in the test-time views (the deployed
classifier's four by default, applied with the runtime's own view functions), and the soft target is the
mean over members and views of ``softmax(logits / temperature)``. The teachers run on the fly, in the batch
workers; nothing is cached (the targets of a crop are used once per run).

Loss: ``(1 - alpha) * cross-entropy(labels)`` (the trainer's usual loss, class-weighted, label smoothing) +
``alpha * T^2 * KL(teacher || student at temperature T)`` (Hinton et al., 2015), also class-weighted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeskin.core.geometry import resize_to_input
from edgeskin.core.views import check_views, view_into
from edgeskin.runtime.spec import sha256_file


def deployed_views() -> tuple[str, ...]:
    """The shipped classifier's test-time views (its spec's ``tta``): the default ``distill.views``."""
    from edgeskin.models import default_classifier_path
    from edgeskin.runtime.spec import load_spec, spec_path_for

    return load_spec(spec_path_for(default_classifier_path())).tta


SOFT_OUTPUT = "soft"
TEACHER_WEIGHTS = ("raw", "ema")


def check_distill(section: dict) -> dict:
    """The ``distill`` config section with its defaults, or a one-line ValueError that says what is wrong."""
    if not isinstance(section, dict):
        raise ValueError(f"distill: expected an object with 'teachers', got {section!r}")
    unknown = set(section) - {"teachers", "views", "temperature", "alpha", "teacher_weights", "sha256", "_comment"}
    if unknown:
        raise ValueError(f"distill: unknown keys {sorted(unknown)}")
    teachers = section.get("teachers")
    if not teachers or not isinstance(teachers, list) or not all(isinstance(t, str) for t in teachers):
        raise ValueError(f"distill.teachers: expected a non-empty list of run folders, got {teachers!r}")
    temperature = section.get("temperature", 1.0)
    if not isinstance(temperature, int | float) or temperature <= 0:
        raise ValueError(f"distill.temperature: expected a number above 0, got {temperature!r}")
    alpha = section.get("alpha", 0.5)
    if not isinstance(alpha, int | float) or not 0 <= alpha <= 1:
        raise ValueError(f"distill.alpha: expected a weight in [0, 1], got {alpha!r}")
    teacher_weights = section.get("teacher_weights", "raw")
    if teacher_weights not in TEACHER_WEIGHTS:
        raise ValueError(f"distill.teacher_weights: expected one of {TEACHER_WEIGHTS}, got {teacher_weights!r}")
    try:
        views = check_views(section["views"] if "views" in section else deployed_views())
    except ValueError as error:  # ConfigError is a ValueError
        raise ValueError(f"distill.views: {error}") from None
    return {
        **section,
        "views": list(views),
        "temperature": float(temperature),
        "alpha": float(alpha),
        "teacher_weights": teacher_weights,
    }


@dataclass(frozen=True)
class Teacher:
    """One ensemble member: a float model ``image -> logits`` at its own input size."""

    run: str
    sha256: str  # of the run's backup (resume/latest.weights.h5) that gave the weights
    input_size: int
    logits: object  # keras.Model


def logits_model(model):
    """``image -> logits`` of a trained classifier (the layer before its softmax)."""
    import keras

    return keras.Model(model.inputs, model.get_layer("logits").output, name=model.name + "_logits")


def teacher_soft_targets(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``(B, members, views, n)`` teacher logits → ``(B, n)`` mean over members and views of the softmax at T."""
    from scipy.special import softmax

    return softmax(np.asarray(logits, np.float64) / temperature, axis=-1).mean(axis=(1, 2)).astype(np.float32)


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """Model inputs ``(B, S, S, 3)`` (uint8 values) resized to ``size`` with the runtime's stretch, as float32."""
    if images.shape[1] == size:
        return images.astype(np.float32)
    pixels = images.astype(np.uint8)  # exact: the samples are uint8 values stored as float32
    return np.stack([resize_to_input(image, (size, size), "stretch")[0] for image in pixels]).astype(np.float32)


class Distillation:
    """Turns a batch of augmented samples at ``sample_size`` into the student's inputs and soft targets.

    Thread-safe: the batch workers share it; the teachers run one batch at a time (each uses every core).
    """

    def __init__(self, teachers: list[Teacher], views: tuple[str, ...], temperature: float, student_size: int):
        self.teachers = teachers
        self.views = tuple(views)
        self.temperature = temperature
        self.student_size = student_size
        self.sample_size = max([student_size, *(t.input_size for t in teachers)])
        self._lock = threading.Lock()

    def teacher_logits(self, samples: np.ndarray) -> np.ndarray:
        """``(B, members, views, n)`` logits of every teacher on every view of each sample."""
        n_classes = self.teachers[0].logits.output_shape[-1]
        out = np.empty((len(samples), len(self.teachers), len(self.views), n_classes), np.float32)
        for m, teacher in enumerate(self.teachers):
            images = resize_batch(samples, teacher.input_size)
            view = np.empty_like(images)
            for v, name in enumerate(self.views):
                for b, image in enumerate(images):
                    view_into(name, image, view[b])
                # One view per call: one call on all views at once was slower here (MobileNetV2 1.0, 224 px,
                # 32 crops x 4 views on the shared 2-core CPU: median 44 s against 28 s for four calls).
                with self._lock:
                    logits = np.asarray(teacher.logits([view], training=False))
                out[:, m, v] = logits
        return out

    def __call__(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        soft = teacher_soft_targets(self.teacher_logits(samples), self.temperature)
        return resize_batch(samples, self.student_size), soft


def backup_sha256(run: Path) -> str:
    """The SHA-256 of a training run folder's latest backup (``resume/latest.weights.h5``); ValueError without one."""
    backup = run / "resume" / "latest.weights.h5"
    if not backup.is_file():
        raise ValueError(f"{run} has no backup ({backup.name}); is it a training run folder?")
    return sha256_file(backup)


def load_teachers(section: dict, restore: Callable[[Path], object], resolve: Callable[[str], Path]) -> list[Teacher]:
    """The float model of each teacher run (``restore(run)``), checked against the SHA-256s the run recorded.

    A student resumed after a teacher trained on would learn from another teacher than its first epochs did:
    that is refused.
    """
    recorded = section.get("sha256")
    teachers = []
    for i, name in enumerate(section["teachers"]):
        run = resolve(name)
        try:
            sha = backup_sha256(run)
        except ValueError as error:
            raise ValueError(f"distill.teachers: {error}") from None
        if recorded is not None and (len(recorded) != len(section["teachers"]) or recorded[i] != sha):
            raise ValueError(
                f"distill: teacher {name} changed since this student started (SHA-256 {sha[:12]}, "
                f"recorded {str(recorded[i] if i < len(recorded) else None)[:12]}); start a new student run"
            )
        model = restore(run)
        teachers.append(Teacher(name, sha, int(model.inputs[0].shape[1]), logits_model(model)))
    return teachers


def distill_model(model, temperature: float):
    """The student's training graph: ``probs`` (the usual output) and ``soft`` (softmax of logits / T).

    The added layers hold no weights, so the student's weights (and the backup's) keep the single-output order.
    """
    import keras
    from keras import layers

    logits = model.get_layer("logits").output
    scaled = layers.Rescaling(1.0 / temperature, name="soft_logits")(logits)
    soft = layers.Activation("softmax", name=SOFT_OUTPUT, dtype="float32")(scaled)
    return keras.Model(model.inputs, {"probs": model.output, SOFT_OUTPUT: soft}, name=model.name)


def distill_losses(section: dict, hard_loss) -> dict:
    """``compile`` arguments of the distilled student: the two losses and their weights."""
    import keras

    alpha, temperature = section["alpha"], section["temperature"]
    return {
        "loss": {"probs": hard_loss, SOFT_OUTPUT: keras.losses.KLDivergence()},
        "loss_weights": {"probs": 1.0 - alpha, SOFT_OUTPUT: alpha * temperature**2},
        "metrics": {"probs": ["accuracy"]},
    }
