"""``edgeskin predict``: no default model, JSON and text output, --out (and nothing written without it), bad images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeskin.cli import main
from edgeskin.results import CONTEXT_VIEW


def edgeskin(*args: str, cwd: Path | None = None, models_dir: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m edgeskin ARGS`` in a fresh process, as a user would."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if models_dir is not None:
        env["EDGESKIN_MODELS_DIR"] = str(models_dir)
    return subprocess.run(
        [sys.executable, "-m", "edgeskin", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _write_png(path: Path, frame: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return path


def test_without_a_default_model_it_says_so_in_one_line(tmp_path):
    image = _write_png(tmp_path / "skin.png", np.full((64, 64, 3), 200, np.uint8))
    proc = edgeskin("predict", image, cwd=tmp_path, models_dir=tmp_path / "empty")
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("edgeskin: error: no default model is installed: the classifier edgeskin-mnv2-cls")
    assert _files(tmp_path) == {"skin.png"}


def test_without_a_default_detector_it_says_so_too(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGESKIN_MODELS_DIR", str(tmp_path))
    for name in ("edgeskin-mnv2-cls.tflite", "edgeskin-mnv2-cls.json"):
        (tmp_path / name).write_bytes(b"placeholder")
    assert main(["predict", str(tmp_path / "x.png")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("edgeskin: error: no default model is installed: the detector edgeskin-yolov5n-det")
    assert "--detector" in err and err.count("\n") == 1


# -- with tiny real INT8 models standing in for the shipped ones ----------------------------------------------


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """The tiny classifier and detector under the shipped models' names (EDGESKIN_MODELS_DIR)."""
    pytest.importorskip("tensorflow", reason="needs the [train] extra (TensorFlow) to build the test models")
    from tiny_models import tiny_classifier, tiny_detector

    folder = tmp_path_factory.mktemp("models")
    for source, name in ((tiny_classifier(), "edgeskin-mnv2-cls"), (tiny_detector(), "edgeskin-yolov5n-det")):
        for suffix in (".tflite", ".json"):
            (folder / f"{name}{suffix}").write_bytes(source.with_suffix(suffix).read_bytes())
    return folder


@pytest.fixture
def square_png(tmp_path) -> Path:
    from tiny_models import frame_with_dark_square

    return _write_png(tmp_path / "square.png", frame_with_dark_square(64, 128, square=(64, 32, 96, 64)))


@pytest.mark.train
def test_json_for_one_image_is_an_object_with_the_lesion(models_dir, square_png):
    proc = edgeskin("predict", square_png, "--json", models_dir=models_dir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    document = json.loads(proc.stdout)
    assert set(document) >= {"image", "lesions", "messages", "timings_ms"} and document["image"] == str(square_png)
    (lesion,) = document["lesions"]
    np.testing.assert_allclose(lesion["box"], [56, 24, 104, 64], atol=1.0)
    assert set(lesion["dx"]) == {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    assert set(lesion["group"]) == {"Melanoma", "BCC", "SCC", "Benign"}
    assert lesion["label"] in lesion["dx"] and 0 < lesion["score"] <= 1 and isinstance(lesion["refer"], bool)
    assert set(document["timings_ms"]) == {"preprocess", "detect", "crop", "classify", "cam", "total"}


@pytest.mark.train
def test_out_writes_the_annotated_image_and_json_and_nothing_is_written_without_it(models_dir, square_png, tmp_path):
    before = _files(tmp_path)
    proc = edgeskin("predict", square_png, "--json", cwd=tmp_path, models_dir=models_dir)
    assert proc.returncode == 0, proc.stderr
    assert _files(tmp_path) == before  # privacy: no output file, no cache, nothing
    proc = edgeskin("predict", square_png, "--out", "results", cwd=tmp_path, models_dir=models_dir)
    assert proc.returncode == 0, proc.stderr
    assert _files(tmp_path) - before == {"results", "results/square_annotated.png", "results/square.json"}
    annotated = cv2.imread(str(tmp_path / "results" / "square_annotated.png"))
    assert annotated.shape == (64, 128, 3)
    assert json.loads((tmp_path / "results" / "square.json").read_text())["lesions"][0]["label"]


@pytest.mark.train
def test_text_output_is_a_short_table_with_the_notice(models_dir, square_png, capsys, monkeypatch):
    monkeypatch.setenv("EDGESKIN_MODELS_DIR", str(models_dir))
    assert main(["predict", str(square_png), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 lesion" in out and "#1 box [56, 24, 104, 64]" in out and "malignant" in out
    assert "not a diagnosis" in out.splitlines()[-1]


@pytest.mark.train
def test_detector_none_classifies_the_whole_image(models_dir, square_png, capsys, monkeypatch):
    monkeypatch.setenv("EDGESKIN_MODELS_DIR", str(models_dir))
    assert main(["predict", str(square_png), "--detector", "none", "--json", "--no-cam"]) == 0
    (lesion,) = json.loads(capsys.readouterr().out)["lesions"]
    assert lesion["box"] == [0, 0, 128, 64] and lesion["score"] == 1.0


def _bad_images(folder: Path) -> list[Path]:
    ok, encoded = cv2.imencode(".jpg", np.full((64, 64, 3), 120, np.uint8))
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    text = folder / "notes.jpg"
    text.write_text("this is not an image\n")
    truncated = folder / "cut.jpg"
    truncated.write_bytes(encoded.tobytes()[: len(encoded) // 2])
    return [empty, text, truncated]


@pytest.mark.train
def test_bad_images_give_one_line_each_and_the_good_one_is_still_analysed(models_dir, square_png, tmp_path):
    bad = _bad_images(tmp_path)
    proc = edgeskin("predict", bad[0], square_png, bad[1], bad[2], "--json", models_dir=models_dir)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 3 and all(line.startswith("edgeskin: error: ") for line in lines)
    for line, path in zip(lines, bad, strict=True):
        assert str(path) in line
    assert "0 bytes" in lines[0] and "not an image" in lines[1] and "truncated JPEG" in lines[2]
    documents = json.loads(proc.stdout)
    assert isinstance(documents, list) and len(documents) == 4
    assert documents[1]["image"] == str(square_png) and len(documents[1]["lesions"]) == 1
    assert [sorted(d) for d in (documents[0], documents[2], documents[3])] == [["error", "image"]] * 3


@pytest.mark.parametrize("kind", [0, 1, 2], ids=["0-byte", "text", "truncated"])
@pytest.mark.train
def test_a_single_bad_image_exits_non_zero_with_one_line(models_dir, tmp_path, kind):
    bad = _bad_images(tmp_path)[kind]
    proc = edgeskin("predict", bad, models_dir=models_dir)
    assert proc.returncode != 0
    assert (
        proc.stderr.count("\n") == 1 and proc.stderr.startswith("edgeskin: error: ") and "Traceback" not in proc.stderr
    )


# -- the shipped models (skip until they are installed) ---------------------------------------------------------


@pytest.mark.shared
def test_the_shipped_models_find_the_ph2_lesion(shared_file):
    from tiny_models import shipped_model_paths

    from edgeskin.core.boxes import box_iou, mask_to_box
    from edgeskin.image import read_image

    shipped_model_paths()
    image = shared_file("data/ph2/images/IMD002.jpg")
    proc = edgeskin("predict", image, "--json")
    assert proc.returncode == 0, proc.stderr
    lesions = json.loads(proc.stdout)["lesions"]
    assert lesions, "no lesion found in a PH2 image"
    truth = mask_to_box(read_image(shared_file("data/ph2/masks/IMD002_segmentation.png"))[..., 0] > 127)
    assert box_iou(np.array([lesions[0]["box"]]), truth[np.newaxis])[0, 0] > 0.5


@pytest.mark.shared
def test_the_shipped_models_find_no_lesion_in_the_panda(shared_file):
    from tiny_models import shipped_model_paths

    shipped_model_paths()
    proc = edgeskin("predict", shared_file("data/non_lesion/panda.jpg"), "--json")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    # No lesion, no diagnosis: the shipped detector's scores on the panda are all 0.00 (no box even at a confidence
    # of 0.01), below its unsure band (from 0.13).
    assert document["lesions"] == [] and document["messages"] == ["no lesion found"]


@pytest.mark.shared
def test_the_context_view_is_shown_and_can_be_turned_off(shared_file, capsys):
    from tiny_models import shipped_model_paths

    shipped_model_paths()
    image = str(shared_file("data/ph2/images/IMD030.jpg"))  # the detector's box covers about 3/4 of the frame
    assert main(["predict", image, "--json", "--no-cam", "--threads", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["lesions"][0]["context_view"] is True
    assert main(["predict", image, "--json", "--no-cam", "--threads", "1", "--no-context"]) == 0
    assert json.loads(capsys.readouterr().out)["lesions"][0]["context_view"] is False
    assert main(["predict", image, "--no-cam", "--threads", "1"]) == 0
    assert f"({CONTEXT_VIEW})" in capsys.readouterr().out
