"""``edgeskin classify``: the panda through the real command, text and JSON output, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeskin.cli import main

GOOGLE_MODELS = ("mobilenet_v2_1.0_224_quant.tflite", "tf2_mobilenet_v2_1.0_224_ptq.tflite")


@pytest.fixture(params=GOOGLE_MODELS)
def google_model(request, shared_file) -> Path:
    return shared_file(f"weights/tflite/{request.param}")


@pytest.fixture
def quant_model(shared_file) -> Path:
    return shared_file(f"weights/tflite/{GOOGLE_MODELS[0]}")


@pytest.fixture
def labels(shared_file) -> Path:
    return shared_file("weights/tflite/imagenet_labels.txt")


@pytest.fixture
def panda(shared_file) -> Path:
    return shared_file("data/non_lesion/panda.jpg")


def edgeskin(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m edgeskin ARGS`` in a fresh process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "edgeskin", *map(str, args)],
        capture_output=True, text=True, timeout=120, cwd=cwd, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip


@pytest.mark.shared
def test_panda_json_top1_is_giant_panda_on_both_models(google_model, labels, panda):
    proc = edgeskin("classify", panda, "--model", google_model, "--labels", labels, "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no native-runtime chatter either
    document = json.loads(proc.stdout)
    (result,) = document["results"]
    assert result["source"] == str(panda)
    assert result["label"].split(",")[0] == "giant panda"
    assert result["top_k"][0]["label"] == result["label"] and result["top_k"][0]["probability"] > 0.5
    assert len(result["top_k"]) == 5
    assert set(result["timings_ms"]) == {"preprocess_ms", "invoke_ms", "postprocess_ms"}
    assert document["model"] == google_model.stem and document["delegate"] == "cpu"


@pytest.mark.shared
def test_text_output_lists_top_k_per_image(quant_model, labels, panda, shared_file, capsys):
    cat = shared_file("data/non_lesion/cat.bmp")
    assert (
        main(
            [
                "classify",
                str(panda),
                str(cat),
                "-m",
                str(quant_model),
                "--labels",
                str(labels),
                "-k",
                "3",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(panda) and "giant panda" in out[1]
    assert out[5] == str(cat) and "cat" in out[6]
    assert len(out) == 10 and "ms invoke" in out[4]


@pytest.mark.shared
def test_a_bad_image_among_good_ones_is_reported_and_skipped(tmp_path, quant_model, labels, panda, capsys):
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture")
    code = main(["classify", str(text), str(panda), "-m", str(quant_model), "--labels", str(labels), "--json"])
    assert code == 2
    captured = capsys.readouterr()
    results = json.loads(captured.out)["results"]
    assert results[0]["source"] == str(text) and "error" in results[0]
    assert results[1]["label"].startswith("giant panda")
    assert captured.err.count("\n") == 1 and captured.err.startswith(f"edgeskin: error: {text}")


@pytest.mark.shared
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--mean", "1", "2"], "--mean: expected 1 or 3 values, got 2"),
        (["--top-k", "0"], "--top-k: expected a positive number"),
        (["--delegate", "edgetpu"], "Edge TPU delegate was requested but libedgetpu"),
    ],
)
def test_option_errors_are_one_line(quant_model, labels, panda, capsys, extra, message):
    if extra[0] == "--delegate":
        from edgeskin.runtime.interpreter import _library_loadable, edgetpu_library_name

        if _library_loadable(edgetpu_library_name()):
            pytest.skip("the Edge TPU runtime is installed here")
    assert main(["classify", str(panda), "-m", str(quant_model), "--labels", str(labels), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeskin: error: ") and message in err and err.count("\n") == 1


@pytest.mark.shared
def test_mean_without_labels_is_refused(quant_model, panda, capsys):
    assert main(["classify", str(panda), "-m", str(quant_model), "--mean", "0"]) == 2
    assert "--mean/--std apply to third-party models" in capsys.readouterr().err


@pytest.mark.shared
@pytest.mark.parametrize("case", ["jpeg-as-model", "truncated-model", "missing-model", "no-spec", "labels-mismatch"])
def test_bad_models_exit_non_zero_with_one_line_and_no_traceback(tmp_path, quant_model, labels, panda, case):
    model = tmp_path / "model.tflite"
    args = ["--labels", labels]
    if case == "jpeg-as-model":
        shutil.copy(panda, model)
        expected = "not a TFLite flatbuffer"
    elif case == "truncated-model":
        model.write_bytes(quant_model.read_bytes()[:1_800_000])
        expected = "truncated or corrupt"
    elif case == "missing-model":
        expected = "model file not found"
    elif case == "no-spec":
        shutil.copy(quant_model, model)
        args, expected = [], "no model spec beside"
    else:
        shutil.copy(quant_model, model)
        short = tmp_path / "labels.txt"
        short.write_text("\n".join(labels.read_text().splitlines()[1:]))
        args, expected = ["--labels", short], "1000 labels but the model's output"
    proc = edgeskin("classify", panda, "--model", model, *args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("edgeskin: error: ") and expected in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.shared
def test_debug_shows_the_traceback(tmp_path, panda):
    proc = edgeskin("--debug", "classify", panda, "--model", tmp_path / "missing.tflite", "--labels", panda)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ModelError" in proc.stderr
