"""No network at run time: the CLI (predict, classify, info, evaluate) in fresh processes whose sockets are
blocked from start-up, and the Python API in this process with sockets blocked."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from robustness_cases import BLOCKED_MARK, NetworkBlocked, good_image, labelled_folder

from edgeskin.models import CLASSIFIER_NAME, DETECTOR_NAME


def assert_ran_offline(proc: subprocess.CompletedProcess) -> None:
    assert BLOCKED_MARK not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_subprocess_blocker_really_blocks(network_blocker):
    """Self-check: with the test's sitecustomize, a connection attempt fails and is reported."""
    code = (
        "import socket\n"
        "for call in (lambda: socket.create_connection(('127.0.0.1', 9)), lambda: socket.getaddrinfo('localhost', 80),\n"
        "             lambda: socket.socket().connect(('127.0.0.1', 9))):\n"
        "    try:\n"
        "        call()\n"
        "    except OSError:\n"
        "        pass\n"
    )
    env = {**os.environ, "PYTHONPATH": str(network_blocker)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0 and proc.stderr.count(BLOCKED_MARK) == 3, proc.stderr


@pytest.mark.train
def test_the_cli_runs_offline_on_the_tiny_models(edgeskin_cli, tiny_models_dir, tmp_path):
    classifier = tiny_models_dir / f"{CLASSIFIER_NAME}.tflite"
    detector = tiny_models_dir / f"{DETECTOR_NAME}.tflite"
    image = good_image(tmp_path)
    images, labels, masks = labelled_folder(tmp_path)
    runs = {
        "predict": ("predict", image, "--json"),
        "predict --out": ("predict", image, "--out", tmp_path / "out"),
        "predict classical": ("predict", image, "--detector", "classical"),
        "classify": ("classify", image, "--model", classifier),
        "info": ("info", classifier, "--json"),
        "info detector": ("info", detector),
        "evaluate classify": ("evaluate", "classify", "--images", images, "--labels", labels, "--json", "-"),
        "evaluate classify --detect": ("evaluate", "classify", "--images", images, "--labels", labels, "--detect"),
        "evaluate detect": ("evaluate", "detect", "--images", images, "--masks", masks, "--model", detector),
    }
    for name, args in runs.items():
        proc = edgeskin_cli(*args, models_dir=tiny_models_dir, cwd=tmp_path)
        assert_ran_offline(proc)
        assert proc.stdout, name
    assert json.loads(edgeskin_cli(*runs["predict"], models_dir=tiny_models_dir).stdout)["lesions"]


@pytest.mark.shared
def test_the_cli_runs_offline_on_the_shipped_models(edgeskin_cli, shipped_models_dir, shared_file, tmp_path):
    ph2 = shared_file("data/ph2")
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    with (tmp_path / "labels.csv").open("w", newline="") as handle:
        handle.write("image_id,dx\n")
        for image_id, dx in (("IMD002", "nv"), ("IMD006", "nv"), ("IMD021", "mel")):
            (images / f"{image_id}.jpg").symlink_to(ph2 / "images" / f"{image_id}.jpg")
            (masks / f"{image_id}_segmentation.png").symlink_to(ph2 / "masks" / f"{image_id}_segmentation.png")
            handle.write(f"{image_id},{dx}\n")
    labels = tmp_path / "labels.csv"
    panda = shared_file("data/non_lesion/panda.jpg")
    classifier = shipped_models_dir / f"{CLASSIFIER_NAME}.tflite"
    for args in (
        ("predict", images / "IMD002.jpg", panda),
        ("classify", images / "IMD002.jpg", "--model", classifier),
        ("info", classifier),
        ("info", shipped_models_dir / f"{DETECTOR_NAME}.tflite"),
        ("evaluate", "classify", "--images", images, "--labels", labels, "--detect"),
        ("evaluate", "detect", "--images", images, "--masks", masks),
    ):
        proc = edgeskin_cli(*args, cwd=tmp_path)
        assert_ran_offline(proc)
        assert proc.stdout


# -- in this process ------------------------------------------------------------------------------------------


def test_the_in_process_blocker_really_blocks(no_network):
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    with pytest.raises(NetworkBlocked):
        socket.socket().connect(("127.0.0.1", 9))
    assert len(no_network) == 2
    no_network.clear()  # the fixture asserts at teardown that nothing was attempted


@pytest.mark.train
def test_the_pipeline_runs_offline(no_network, tiny_models_dir, monkeypatch):
    from tiny_models import frame_with_dark_square

    from edgeskin.tasks.pipeline import LesionPipeline

    monkeypatch.setenv("EDGESKIN_MODELS_DIR", str(tiny_models_dir))
    frame = frame_with_dark_square(64, 128, square=(64, 32, 96, 64))
    with LesionPipeline.from_defaults(threads=1) as pipeline:
        result = pipeline(frame)
    assert len(result.lesions) == 1 and result.lesions[0].cam is not None
    with LesionPipeline.from_defaults(detector="classical", threads=1) as pipeline:
        assert pipeline(frame).lesions


@pytest.mark.train
def test_the_cli_main_runs_offline_in_process(no_network, tiny_models_dir, tmp_path, monkeypatch, capsys):
    from edgeskin.cli import main

    monkeypatch.setenv("EDGESKIN_MODELS_DIR", str(tiny_models_dir))
    image = good_image(tmp_path)
    assert main(["predict", str(image), "--json"]) == 0
    assert main(["classify", str(image), "--model", str(tiny_models_dir / f"{CLASSIFIER_NAME}.tflite")]) == 0
    assert main(["info", str(tiny_models_dir / f"{DETECTOR_NAME}.tflite")]) == 0
    assert capsys.readouterr().out


@pytest.mark.shared
def test_the_shipped_pipeline_runs_offline(no_network, shipped_models_dir, shared_file):
    from edgeskin.image import read_image
    from edgeskin.tasks.pipeline import LesionPipeline

    with LesionPipeline.from_defaults(threads=1) as pipeline:
        result = pipeline(read_image(shared_file("data/ph2/images/IMD002.jpg")))
    assert result.lesions
