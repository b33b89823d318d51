"""A classifier run stopped at an epoch boundary and resumed in a second process equals an unbroken run.

Small and real: 64 images of ../shared, MobileNetV2 0.35 at 32 px, two epochs of four steps. The tolerance is
measured, not assumed: the resumed chain gives the unbroken run's weights and optimizer state bit for bit (737 arrays,
max difference 0.0 on this CPU), so the test asks for equality.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"

pytestmark = [
    pytest.mark.train,
    pytest.mark.shared,
    pytest.mark.skipif(not (SHARED / "ham10000").is_dir(), reason="needs ../shared/data (HAM10000, ISIC 2017)"),
]

SMALL = ["--limit", "64", "--alpha", "0.35", "--input-size", "32", "--weights", "none", "--epochs", "2",
         "--batch-size", "16", "--workers", "2"]  # fmt: skip


def train(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "training.train_classifier", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


def weights(run: Path) -> list[np.ndarray]:
    import h5py

    arrays = []
    with h5py.File(run / "resume" / "latest.weights.h5") as handle:
        handle.visititems(lambda name, item: arrays.append((name, item[()])) if hasattr(item, "shape") else None)
    return [array for _, array in sorted(arrays, key=lambda pair: pair[0])]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("resume")
    cache = str(base / "cache")
    unbroken, chained = base / "unbroken", base / "chained"
    first = train(*SMALL, "--out", str(unbroken), "--cache", cache)
    assert first.returncode == 0, first.stderr[-3000:]
    # A budget of one second stops after the first epoch, at its boundary.
    stopped = train(*SMALL, "--out", str(chained), "--cache", cache, "--time-budget", "1")
    assert stopped.returncode == 3, stopped.stderr[-3000:]
    resumed = train("--resume", str(chained), "--cache", cache)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return unbroken, chained


def test_stopped_run_records_where_it_stopped(runs) -> None:
    _, chained = runs
    state = json.loads((chained / "state.json").read_text())
    assert state["epochs_done"] == 2 and state["complete"]
    rows = [json.loads(line) for line in (chained / "epochs.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert (chained / "model.keras").is_file() and (chained / "summary.json").is_file()


def test_resumed_run_matches_unbroken_run(runs) -> None:
    unbroken, chained = runs
    a = [json.loads(line) for line in (unbroken / "epochs.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (chained / "epochs.jsonl").read_text().splitlines()]
    for key in ("loss", "auc", "balanced_accuracy"):
        assert b[1][key] == a[1][key], key
    for x, y in zip(weights(unbroken), weights(chained), strict=True):
        np.testing.assert_array_equal(y, x)  # weights and optimizer state, bit for bit


def test_resume_refuses_a_finished_run_folder_as_new(runs, tmp_path) -> None:
    unbroken, _ = runs
    again = train(*SMALL, "--out", str(unbroken))
    assert again.returncode == 2
    assert "--resume" in again.stderr and "Traceback" not in again.stderr


def test_a_new_run_continues_from_a_run_folders_raw_weights(runs) -> None:
    from training.train_classifier import RECORDED_KEYS, backup_model, compile_model, initial_model

    unbroken, _ = runs
    recorded = json.loads((unbroken / "config.json").read_text())
    config = {k: v for k, v in recorded.items() if k not in RECORDED_KEYS}
    config["init_from"] = str(unbroken)
    model, _ = compile_model(config, steps=1, resuming=False)
    raw = backup_model(unbroken, "raw")
    for got, want in zip(model.get_weights(), raw.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    assert config["init_sha256"] == hashlib.sha256((unbroken / "resume" / "latest.weights.h5").read_bytes()).hexdigest()
    # The EMA weights differ from the raw ones after two epochs: the start really is the raw weights.
    ema = backup_model(unbroken, "ema")
    assert any(not np.array_equal(a, b) for a, b in zip(ema.get_weights(), raw.get_weights(), strict=True))
    with pytest.raises(ValueError, match="init_from: .* has no backup"):
        initial_model({**config, "init_from": str(unbroken / "resume")})
