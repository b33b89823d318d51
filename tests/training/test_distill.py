"""Distillation (issue 30): the soft targets are what they claim, and a distilled run resumes bit for bit.

The resume check is small and real, like test_resume: a teacher trained one epoch by a tiny run (64 images of
../shared, MobileNetV2 0.35 at 48 px), then a student at 32 px distilled from it for two epochs of four steps,
once unbroken and once stopped after its first epoch and resumed in a third process.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tests.training.test_resume import SHARED, train, weights

pytestmark = [pytest.mark.train]

TEACHER = ["--limit", "64", "--alpha", "0.35", "--input-size", "48", "--weights", "none", "--epochs", "1",
           "--batch-size", "16", "--workers", "2"]  # fmt: skip
STUDENT = ["--limit", "64", "--alpha", "0.35", "--input-size", "32", "--weights", "none", "--epochs", "2",
           "--batch-size", "16", "--workers", "2"]  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]


def tiny_member(seed: int, size: int):
    import keras

    from training.classifier_model import build_classifier

    keras.utils.set_random_seed(seed)
    model = build_classifier(alpha=0.35, input_size=size, n_classes=8, weights=None, bn_momentum=None)
    # Freshly built, its batch norms (moving mean 0, variance 1) leave outputs near uniform: random statistics
    # and weights make members that disagree with each other and across the views.
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        value = rng.normal(0.0, 0.5, variable.shape)
        if "moving_variance" in variable.path:
            value = 0.5 + np.abs(value)
        variable.assign(value.astype(variable.dtype))
    return model


def test_soft_target_is_the_mean_over_members_and_views_of_the_softmax() -> None:
    import keras
    from scipy.special import softmax

    from training.distill import Distillation, Teacher, logits_model

    members = [tiny_member(1, 32), tiny_member(2, 32)]
    teachers = [Teacher(f"m{i}", "", 32, logits_model(m)) for i, m in enumerate(members)]
    samples = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3)).astype(np.float32)
    flips = {"identity": lambda x: x, "hflip": lambda x: x[:, :, ::-1], "vflip": lambda x: x[:, ::-1],
             "rot180": lambda x: x[:, ::-1, ::-1]}  # fmt: skip
    heads = [keras.Model(m.inputs, m.get_layer("logits").output) for m in members]
    for temperature in (1.0, 2.5):
        # Independently: each member's logits on each flipped batch (numpy flips), softmax at T, then the mean.
        expected = np.zeros((5, 8))
        for head in heads:
            for flip in flips.values():
                logits = head.predict(np.ascontiguousarray(flip(samples)), verbose=0).astype(np.float64)
                expected += softmax(logits / temperature, axis=1)
        expected /= len(members) * len(flips)
        student_images, soft = Distillation(teachers, tuple(flips), temperature, student_size=24)(samples)
        np.testing.assert_allclose(soft, expected, rtol=1e-5, atol=1e-6)
        assert student_images.shape == (5, 24, 24, 3) and student_images.dtype == np.float32
    # The targets are not trivially uniform or equal to one member's: the check above can fail.
    one = Distillation(teachers[:1], ("identity",), temperature, 32)(samples)[1]
    assert np.abs(one - soft).max() > 1e-3 and np.abs(soft - 1 / 8).max() > 1e-3


def test_a_changed_teacher_is_refused(tmp_path) -> None:
    from training.distill import load_teachers

    run = tmp_path / "teacher"
    (run / "resume").mkdir(parents=True)
    (run / "resume" / "latest.weights.h5").write_bytes(b"weights")
    section = {"teachers": [str(run)], "sha256": ["0" * 64]}
    with pytest.raises(ValueError, match="changed since this student started"):
        load_teachers(section, restore=lambda path: pytest.fail("restored a changed teacher"), resolve=Path)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"teachers": []}, "non-empty list"),
        ({"teachers": ["a"], "temperature": 0}, "above 0"),
        ({"teachers": ["a"], "alpha": 1.5}, r"\[0, 1\]"),
        ({"teachers": ["a"], "views": ["identity", "spin"]}, "unknown test-time"),
        ({"teachers": ["a"], "teacher": "b"}, "unknown keys"),
        ({"teachers": ["a"], "teacher_weights": "best"}, "teacher_weights"),
    ],
)
def test_bad_distill_sections_say_what_is_wrong(section, message) -> None:
    from training.distill import check_distill

    with pytest.raises(ValueError, match=message):
        check_distill(section)


def test_teachers_use_their_raw_weights_unless_asked_for_ema() -> None:
    from training.distill import check_distill

    section = {"teachers": ["a"], "views": ["identity"]}
    assert check_distill(section)["teacher_weights"] == "raw"
    assert check_distill({**section, "teacher_weights": "ema"})["teacher_weights"] == "ema"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path, Path]:
    if not (SHARED / "ham10000").is_dir():
        pytest.skip("needs ../shared/data (HAM10000, ISIC 2017)")
    base = tmp_path_factory.mktemp("distill")
    cache = str(base / "cache")
    teacher = base / "teacher"
    made = train(*TEACHER, "--out", str(teacher), "--cache", cache)
    assert made.returncode == 0, made.stderr[-3000:]
    config = json.loads((ROOT / "training/configs/classifier.json").read_text())
    config.pop("init_from", None)
    config["distill"] = {"teachers": [str(teacher)], "temperature": 2.0, "alpha": 0.7}
    path = base / "student.json"
    path.write_text(json.dumps(config))
    unbroken, chained = base / "unbroken", base / "chained"
    first = train("--config", str(path), *STUDENT, "--out", str(unbroken), "--cache", cache)
    assert first.returncode == 0, first.stderr[-3000:]
    stopped = train("--config", str(path), *STUDENT, "--out", str(chained), "--cache", cache, "--time-budget", "1")
    assert stopped.returncode == 3, stopped.stderr[-3000:]
    resumed = train("--resume", str(chained), "--cache", cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return teacher, unbroken, chained


@pytest.mark.shared
def test_distilled_run_resumes_bit_for_bit(runs) -> None:
    _, unbroken, chained = runs
    a = [json.loads(line) for line in (unbroken / "epochs.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (chained / "epochs.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in b] == [1, 2]
    for key in ("loss", "auc", "balanced_accuracy"):
        assert b[1][key] == a[1][key], key
    for x, y in zip(weights(unbroken), weights(chained), strict=True):
        np.testing.assert_array_equal(y, x)  # weights and optimizer state, bit for bit


@pytest.mark.shared
def test_distilled_run_records_its_teacher_and_saves_a_plain_classifier(runs) -> None:
    import keras

    teacher, unbroken, _ = runs
    recorded = json.loads((unbroken / "config.json").read_text())["distill"]
    backup = (teacher / "resume" / "latest.weights.h5").read_bytes()
    assert recorded["sha256"] == [hashlib.sha256(backup).hexdigest()]
    header = (unbroken / "history.csv").read_text().splitlines()[0].split(",")
    assert "soft_loss" in header and "probs_loss" in header  # both losses were trained on
    model = keras.models.load_model(unbroken / "model.keras", compile=False)
    assert model.output_shape == (None, 8) and model.input_shape == (None, 32, 32, 3)
    assert model.get_layer("features") is not None


@pytest.mark.shared
def test_a_teacher_loads_with_its_raw_or_its_ema_weights(runs) -> None:
    from training.train_classifier import backup_model

    teacher, _, _ = runs
    raw, ema = backup_model(teacher, "raw"), backup_model(teacher, "ema")
    trainable = [
        not np.array_equal(a.numpy(), b.numpy())
        for a, b in zip(raw.trainable_variables, ema.trainable_variables, strict=True)
    ]
    assert any(trainable)  # the EMA differs from the raw weights...
    statistics = [(a, b) for a, b in zip(raw.non_trainable_variables, ema.non_trainable_variables, strict=True)
                  if "moving_" in a.path]  # fmt: skip
    assert statistics
    for a, b in statistics:
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # ...but keeps the raw batch-norm statistics
