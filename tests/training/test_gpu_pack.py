"""The GPU data pack (``training/pack_for_gpu.py``) and ``training/gpu_run.sh``, on the CPU (no GPU anywhere).

Small and real: 24 images of ../shared (``--limit 24``, decoded without the frame cache) packed once for
``training/configs/classifier.json``. The trainer must read from the pack the table, split, labels and mask boxes
that it reads from ../shared (exactly) and frames within the WebP change that the manifest states; the dry run
must accept the pack and print the trainer command; bad arguments give one line and status 2. The last test
trains a tiny epoch through ``gpu_run.sh`` on Keras' torch backend (as on the GPU machine; stopped there by its
budget), restores the run from the files it writes, and resumes its second epoch here from ../shared on
TensorFlow: the path a GPU run takes back to this machine.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
CONFIG = ROOT / "training" / "configs" / "classifier.json"
SCRIPT = ROOT / "training" / "gpu_run.sh"
LIMIT = "24"

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(not (SHARED / "ham10000").is_dir(), reason="needs ../shared/data (HAM10000, ISIC 2017)"),
]


@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory) -> Path:
    from training import pack_for_gpu

    out = tmp_path_factory.mktemp("gpu") / "pack"
    assert pack_for_gpu.main(["--config", str(CONFIG), "--limit", LIMIT, "--cache", "none", "--out", str(out)]) == 0
    return out


def limited_config() -> dict:
    from training.train_classifier import load_config

    return load_config(str(CONFIG), {"limit": int(LIMIT)})


def test_manifest_states_the_files_sizes_and_counts(pack_dir) -> None:
    from training.train_classifier import resolve

    manifest = json.loads((pack_dir / "manifest.json").read_text())
    frames = sorted((pack_dir / "frames").glob("*.webp"))
    assert manifest["frames"]["count"] == len(frames) == int(LIMIT)
    assert manifest["frames"]["bytes"] == sum(f.stat().st_size for f in frames)
    assert sum(sum(c.values()) for c in manifest["frames"]["per_source"].values()) == len(frames)
    parts = manifest["frames"]["parts"]
    assert parts["train"]["frames"] + parts["val"]["frames"] == len(frames)
    assert (parts["train"]["webp_quality"], parts["val"]["webp_quality"]) == (30, 80)
    on_disk = sum(f.stat().st_size for f in pack_dir.rglob("*") if f.is_file() and f.name != "manifest.json")
    assert manifest["total_bytes"] == on_disk <= 40 * 2**20
    packed_weights = pack_dir / manifest["weights"]
    original = resolve("../shared/weights/keras") / packed_weights.name
    assert packed_weights.read_bytes() == original.read_bytes()
    records = json.loads((pack_dir / "images.json").read_text())
    assert sorted(records["frames"]["image_id"]) == [f.stem for f in frames]


def test_trainer_reads_from_the_pack_what_it_reads_from_shared(pack_dir) -> None:
    from training.classifier_data import SampleMaker, load_frames
    from training.pack_for_gpu import open_pack
    from training.train_classifier import load_data, resolve

    config = limited_config()
    pack = open_pack(pack_dir, config)
    data, rest, split = load_data(config, int(LIMIT))
    p_data, p_rest, p_split = load_data(config, int(LIMIT), pack)
    assert p_rest.image_ids == rest.image_ids and p_rest.groups == rest.groups
    assert p_rest.image_sources == rest.image_sources
    np.testing.assert_array_equal(p_rest.labels, rest.labels)
    assert p_split == split and p_data.extras == data.extras
    assert p_split["train"] == json.loads((pack_dir / "split.json").read_text())["train"]

    original = load_frames(rest, [resolve(d) for d in config["data"]["masks"]], config["frame_height"])
    packed = pack.frames(p_rest)
    np.testing.assert_array_equal(packed.boxes, original.boxes)  # float32 boxes, exact through JSON
    np.testing.assert_array_equal(packed.masked, original.masked)
    change = [np.abs(a.astype(np.int16) - b).mean() for a, b in zip(packed.frames, original.frames, strict=True)]
    val = set(split["val"])
    stated = json.loads((pack_dir / "manifest.json").read_text())["frames"]["parts"]
    for part in ("train", "val"):
        measured = [c for c, i in zip(change, rest.image_ids, strict=True) if (i in val) == (part == "val")]
        assert np.mean(measured) == pytest.approx(stated[part]["mean_abs_change"], abs=1e-3)
    assert 0 < stated["val"]["mean_abs_change"] < stated["train"]["mean_abs_change"] < 4
    everything = np.arange(len(rest))
    crops = SampleMaker(packed, config).validation(everything, config["crop"]["val_margin"])
    reference = SampleMaker(original, config).validation(everything, config["crop"]["val_margin"])
    assert crops.shape == reference.shape
    assert np.abs(crops.astype(np.int16) - reference).mean() < 4  # grey levels, about the frames' own change


def run_check(pack: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training.pack_for_gpu", "--check", str(pack), *extra],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
    )  # fmt: skip


def test_check_refuses_a_changed_pack_and_the_wrong_config(pack_dir, tmp_path) -> None:
    assert run_check(pack_dir, "--config", str(CONFIG), "--limit", LIMIT).returncode == 0
    unlimited = run_check(pack_dir, "--config", str(CONFIG))
    assert unlimited.returncode == 2 and "has no frame for" in unlimited.stderr
    taller = tmp_path / "taller.json"
    taller.write_text(json.dumps({**limited_config(), "frame_height": 256}))
    other = run_check(pack_dir, "--config", str(taller))
    assert other.returncode == 2 and "frames of 240 rows" in other.stderr
    changed = tmp_path / "changed"
    shutil.copytree(pack_dir, changed)
    frame = next((changed / "frames").glob("*.webp"))
    data = bytearray(frame.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte changed, the size kept
    frame.write_bytes(bytes(data))
    broken = run_check(changed, "--config", str(CONFIG), "--limit", LIMIT)
    assert broken.returncode == 2 and "rebuild the pack" in broken.stderr
    assert "Traceback" not in broken.stderr + other.stderr + unlimited.stderr


def gpu_run(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items() if key != "OUT"}  # OUT only where a test sets it
    base.update({"PY": sys.executable, "WHEELS": "", "KERAS_BACKEND": "tensorflow", **env})
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=base, capture_output=True, text=True)


def test_dry_run_accepts_the_pack_and_prints_the_trainer_command(pack_dir, tmp_path) -> None:
    run = tmp_path / "run"
    done = gpu_run("--dry-run", "--pack", str(pack_dir), "--config", str(CONFIG), "--out", str(run), "--limit", LIMIT,
                   "--budget", "300", "--", "--epochs", "2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "pack OK" in done.stdout and "dry run:" in done.stdout
    line = next(x for x in done.stdout.splitlines() if x.startswith("trainer: "))
    assert shlex.split(line.removeprefix("trainer: ")) == [
        sys.executable, "-m", "training.train_classifier", "--data-pack", str(pack_dir), "--workers",
        str(max(1, os.cpu_count() - 2)), "--time-budget", "300", "--config", str(CONFIG), "--out", str(run),
        "--limit", LIMIT, "--epochs", "2",
    ]  # fmt: skip
    assert not run.exists()  # nothing trained, nothing written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "unknown argument '--bogus'"),
        (["--config"], "--config needs a value"),
        (["--config", str(CONFIG)], "give --config FILE and --out RUN"),
        (["--config", "nowhere.json", "--out", "x"], "config 'nowhere.json' not found"),
        (["--resume", "training/configs"], "is not a run with a backup"),
        (["--config", str(CONFIG), "--out", "x", "--resume", "y"], "give neither --config nor --out"),
        (["--config", str(CONFIG), "--out", "x", "--budget", "soon"], "--budget must be a positive number"),
        (["--config", str(CONFIG), "--out", "x", "--budget", "0"], "--budget must be a positive number"),
        (["--config", str(CONFIG), "--out", "x", "--workers", "0"], "--workers must be a positive integer"),
        (["--pack", "nowhere", "--config", str(CONFIG), "--out", "x"], "no data pack at 'nowhere'"),
    ],
)
def test_bad_arguments_give_one_line_and_status_2(pack_dir, args, message) -> None:
    args = args if "--pack" in args else ["--pack", str(pack_dir), *args]
    done = gpu_run("--dry-run", *args)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()] and message in done.stderr
    assert done.stderr.startswith("gpu_run.sh: ") and done.stdout == ""


def test_a_real_run_needs_out(pack_dir, tmp_path) -> None:
    done = gpu_run("--pack", str(pack_dir), "--config", str(CONFIG), "--out", str(tmp_path / "run"))
    assert done.returncode == 2 and "set OUT" in done.stderr


@pytest.mark.train
def test_a_run_trained_from_the_pack_comes_back_and_resumes_from_shared(pack_dir, tmp_path) -> None:
    out, run = tmp_path / "out", tmp_path / "gpu" / "tiny"
    small = ["--alpha", "0.35", "--input-size", "32", "--weights", "none", "--epochs", "2", "--batch-size", "8"]
    # Keras on torch, as on the GPU machine; the resumed half below runs on this machine's default backend.
    done = gpu_run("--pack", str(pack_dir), "--config", str(CONFIG), "--out", str(run), "--limit", LIMIT,
                   "--budget", "1", "--workers", "2", "--", *small, OUT=str(out), KERAS_BACKEND="torch")  # fmt: skip
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]  # stopped by the budget after epoch 1
    assert sorted(p.name for p in out.iterdir()) == ["gpu_run.txt", "run-tiny.tar.00", "train.log"]
    back = tmp_path / "back"
    back.mkdir()
    subprocess.run(["tar", "-xf", str(out / "run-tiny.tar.00"), "-C", str(back)], check=True)
    restored = back / "tiny"
    assert json.loads((restored / "state.json").read_text())["epochs_done"] == 1
    assert json.loads((restored / "config.json").read_text())["backend"] == "torch"
    assert (
        json.loads((restored / "split.json").read_text())["val"]
        == json.loads((pack_dir / "split.json").read_text())["val"]
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    resumed = subprocess.run(
        [sys.executable, "-m", "training.train_classifier", "--resume", str(restored), "--cache", "none"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((restored / "state.json").read_text())["epochs_done"] == 2


def test_build_refuses_a_split_the_config_does_not_give(tmp_path, capsys) -> None:
    from training import pack_for_gpu

    other = ROOT / "training" / "runs" / "classifier" / "split.json"  # the full data's split, not the 24 images'
    out = tmp_path / "pack"
    args = ["--config", str(CONFIG), "--limit", LIMIT, "--cache", "none", "--split", str(other), "--out", str(out)]
    assert pack_for_gpu.main(args) == 2
    assert "is not the split this config gives" in capsys.readouterr().err and not out.exists()
