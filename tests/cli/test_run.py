"""``edgeskin run``: a real video of real dermoscopy images through the command, its JSON, its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from capture_fakes import FakePipeline, pan_and_zoom, write_video  # tests/capture is on pytest's pythonpath

from edgeskin.cli import main
from edgeskin.image import read_image

REPO_ROOT = Path(__file__).resolve().parents[2]
PH2 = ("IMD002.jpg", "IMD003.jpg", "IMD006.jpg")


@pytest.fixture(scope="module")
def video(shared_file, tmp_path_factory) -> Path:
    """330 frames (320x240 MJPG) panning and zooming over three real PH2 images."""
    frames = []
    for name in PH2:
        frames.extend(pan_and_zoom(read_image(shared_file(f"data/ph2/images/{name}")), 110, (320, 240)))
    return write_video(tmp_path_factory.mktemp("run") / "ph2.avi", frames)


@pytest.fixture
def fake_pipeline(monkeypatch) -> FakePipeline:
    pipeline = FakePipeline()
    monkeypatch.setattr("edgeskin.cli.run.make_pipeline", lambda profile, args: pipeline)
    return pipeline


def test_run_writes_one_entry_per_frame_and_the_fps(video, fake_pipeline, tmp_path, capsys):
    out = tmp_path / "run.json"
    code = main(["run", "--source", str(video), "--profile", "x86", "--max-frames", "300", "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["fps"] > 0 and data["source"] == str(video) and data["profile"] == "x86"
    assert data["processed"] == len(data["frames"]) == 300 and data["errors"] == 0
    assert data["stopped_because"] == "max_frames"
    assert [f["index"] for f in data["frames"]] == list(range(300))
    assert all({"index", "timestamp", "lesions", "messages", "timings_ms"} <= set(f) for f in data["frames"])
    assert {"read", "process"} <= set(data["mean_timings_ms"])
    assert fake_pipeline.calls > 250  # a few frames may be withheld by the quality gate
    printed = capsys.readouterr().out
    assert "300 frames from" in printed and "FPS" in printed
    assert not list(tmp_path.glob(".run.json.*"))  # the temporary file was renamed


def test_run_to_the_end_of_a_video_and_json_on_stdout(video, fake_pipeline, capsys):
    assert main(["run", "-s", str(video), "-p", "rpi4", "--json", "-"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["processed"] == 330 and data["stopped_because"] == "end of source"
    assert data["profile"] == "rpi4" and data["latency_budget_ms"] == 350
    assert "330 frames from" in captured.err  # the summary goes to stderr when the JSON takes stdout


def test_an_interrupted_run_still_writes_valid_json(video, monkeypatch, tmp_path):
    class Interrupting(FakePipeline):
        def __call__(self, frame):
            if self.calls == 10:
                raise KeyboardInterrupt
            return super().__call__(frame)

    monkeypatch.setattr("edgeskin.cli.run.make_pipeline", lambda profile, args: Interrupting())
    out = tmp_path / "run.json"
    assert main(["run", "-s", str(video), "-p", "x86", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["stopped_because"] == "interrupted" and len(data["frames"]) == 10


def test_run_on_a_folder_of_images(shared_dir, fake_pipeline, tmp_path):
    out = tmp_path / "folder.json"
    folder = shared_dir / "data" / "ph2" / "images"
    assert main(["run", "-s", str(folder), "-p", "x86", "-n", "5", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data["frames"]) == 5 and all(f["lesions"] for f in data["frames"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--profile", "pi9"],
            "unknown device profile 'pi9'; known profiles: coral-devboard, rpi4, rpi5, rpi5-coral-usb, x86",
        ),
        (["--source", "no/such/file.mp4"], "no/such/file.mp4: no such file or folder"),
        (["--max-frames", "0"], "--max-frames: expected a positive number"),
        (["--smoothing", "1.5"], "--smoothing: expected a value in [0, 1)"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, message, fake_pipeline, capsys):
    base = {"--profile": "x86", "--source": "."}
    args = ["run"]
    for flag, value in base.items():
        if flag not in argv:
            args += [flag, value]
    assert main(args + argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgeskin: error: ") and message in err and "\n" not in err


def test_display_without_highgui_says_so(video, fake_pipeline, capsys):
    import cv2

    try:
        cv2.namedWindow("probe")
        cv2.destroyWindow("probe")
        pytest.skip("this OpenCV has a GUI and a display; the headless message cannot be shown")
    except cv2.error:
        pass
    assert main(["run", "-s", str(video), "-p", "x86", "--display"]) == 2
    err = capsys.readouterr().err
    assert "opencv-python-headless" in err and "edgeskin kiosk" in err


def test_run_without_the_shipped_models_is_a_one_line_error(video, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESKIN_MODELS_DIR", str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "edgeskin", "run", "-s", str(video), "-p", "x86", "-n", "3"],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("edgeskin: error: no default model is installed")
    assert "Traceback" not in result.stderr


def _run_real(video: Path, out: Path, env: dict[str, str]) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "edgeskin", "run", "--source", str(video), "--profile", "x86", "--threads", "2",
         "--max-frames", "300", "--json", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "300 frames from" in result.stdout and "FPS" in result.stdout
    return json.loads(out.read_text())


@pytest.mark.train
def test_run_300_frames_with_the_real_pipeline_on_tiny_models(video, tmp_path):
    """The acceptance command, as a user types it, on real int8 models (tiny ones until the shipped land)."""
    from tiny_models import tiny_classifier, tiny_detector

    from edgeskin.models import CLASSIFIER_NAME, DETECTOR_NAME

    models = tmp_path / "models"
    models.mkdir()
    for source, name in ((tiny_classifier(), CLASSIFIER_NAME), (tiny_detector(), DETECTOR_NAME)):
        for suffix in (".tflite", ".json"):
            (models / f"{name}{suffix}").write_bytes(source.with_suffix(suffix).read_bytes())
    data = _run_real(video, tmp_path / "run.json", {**os.environ, "EDGESKIN_MODELS_DIR": str(models)})
    assert data["processed"] == len(data["frames"]) == 300 and data["errors"] == 0
    assert data["fps"] > 0
    assert any(f["lesions"] for f in data["frames"])


@pytest.mark.shared
def test_run_300_frames_with_the_shipped_models(video, tmp_path):
    from tiny_models import shipped_model_paths

    shipped_model_paths()
    env = {k: v for k, v in os.environ.items() if k != "EDGESKIN_MODELS_DIR"}
    data = _run_real(video, tmp_path / "run.json", env)
    assert data["processed"] == len(data["frames"]) == 300 and data["errors"] == 0
    assert sum(1 for f in data["frames"] if f["lesions"]) > 150
