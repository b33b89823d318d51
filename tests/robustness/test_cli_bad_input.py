"""``edgeskin predict`` and ``edgeskin classify`` on bad image files: one line each on stderr, no traceback,
non-zero exit, and the good files of the same run are still analysed. Odd but legitimate images are
analysed. Each runs with the tiny test models and with the shipped ones (failing when they are missing), in a fresh
process with the network blocked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from robustness_cases import (
    BAD_MODEL_CASES,
    BLOCKED_MARK,
    bad_file_cases,
    bad_image_files,
    bad_model_cases,
    good_image,
    legit_file_cases,
    write_cases,
)

from edgeskin.models import CLASSIFIER_NAME

COMMANDS = ("predict", "classify")


def command_args(command: str, models_dir: Path) -> list[str]:
    if command == "predict":
        return ["predict"]
    return ["classify", "--model", str(models_dir / f"{CLASSIFIER_NAME}.tflite")]


def assert_one_line_errors(stderr: str, count: int) -> list[str]:
    assert "Traceback" not in stderr and BLOCKED_MARK not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == count, stderr
    assert all(line.startswith("edgeskin: error: ") for line in lines), stderr
    return lines


@pytest.mark.parametrize("kind", ["0-byte", "text", "truncated"])
@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_file_exits_non_zero_with_one_line_and_no_traceback(edgeskin_cli, models_dir, tmp_path, command, kind):
    bad = bad_image_files(tmp_path)[kind]
    proc = edgeskin_cli(*command_args(command, models_dir), bad, models_dir=models_dir, cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = assert_one_line_errors(proc.stderr, 1)
    assert str(bad) in line
    expected = {
        "0-byte": "empty file",
        "text": "not an image",
        "truncated": "truncated JPEG: the file ends before its end-of-image marker",
    }[kind]
    assert expected in line
    assert proc.stdout == ""  # nothing was analysed: no result and no notice


@pytest.mark.parametrize("command", COMMANDS)
def test_good_and_bad_files_mixed_the_good_ones_are_analysed(edgeskin_cli, models_dir, tmp_path, command):
    bad = list(bad_image_files(tmp_path).values())
    good = [good_image(tmp_path, "a.png"), good_image(tmp_path, "b.png")]
    order = [bad[0], good[0], bad[1], bad[2], good[1]]
    proc = edgeskin_cli(*command_args(command, models_dir), *order, "--json", models_dir=models_dir, cwd=tmp_path)
    assert proc.returncode == 2
    lines = assert_one_line_errors(proc.stderr, 3)
    for line, path in zip(lines, bad, strict=True):
        assert str(path) in line
    document = json.loads(proc.stdout)
    entries = document if command == "predict" else document["results"]
    key = "image" if command == "predict" else "source"
    assert [entry[key] for entry in entries] == [str(p) for p in order]
    for entry, path in zip(entries, order, strict=True):
        if path in bad:
            assert set(entry) == {key, "error"}
        elif command == "predict":
            assert entry["lesions"] or entry["messages"][0].startswith("no lesion found")
        else:
            assert entry["label"] and len(entry["top_k"]) == 5


def test_every_bad_file_case_gets_its_own_line(edgeskin_cli, models_dir, tmp_path):
    cases = bad_file_cases()
    paths = write_cases(tmp_path, cases)
    good = good_image(tmp_path)
    proc = edgeskin_cli("predict", good, *paths.values(), models_dir=models_dir, cwd=tmp_path)
    assert proc.returncode == 2
    lines = assert_one_line_errors(proc.stderr, len(cases))
    for line, (case, path) in zip(lines, paths.items(), strict=True):
        assert line.startswith(f"edgeskin: error: {path}: "), (case, line)
        assert cases[case][2] in line, (case, line)
    assert proc.stdout.startswith(f"{good} (128x64): ")


def test_odd_but_legitimate_images_are_analysed(edgeskin_cli, models_dir, tmp_path):
    cases = legit_file_cases()
    paths = write_cases(tmp_path, cases)
    proc = edgeskin_cli("predict", *paths.values(), "--json", "--no-cam", models_dir=models_dir, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    documents = json.loads(proc.stdout)
    sizes = {case: tuple(doc["image_size"]) for case, doc in zip(paths, documents, strict=True)}
    for case, size in sizes.items():
        assert size == ((96, 128) if case == "EXIF-rotated JPEG" else (128, 96)), (case, size)
    assert all("error" not in doc for doc in documents)


def test_bad_models_exit_non_zero_with_one_line_and_no_traceback(edgeskin_cli, models_dir, tmp_path):
    image = good_image(tmp_path)
    for case, (args, message) in bad_model_cases(tmp_path, models_dir).items():
        proc = edgeskin_cli(*args, image, models_dir=models_dir, cwd=tmp_path)
        assert proc.returncode == 2, (case, proc.stderr)
        (line,) = assert_one_line_errors(proc.stderr, 1)
        assert message in line, (case, line)
        assert proc.stdout == "", case


def test_the_robustness_doc_lists_every_case():
    """docs/robustness.md is the closing list of bad inputs: each case tested here is in it, with its message."""
    from test_bad_arrays import LEGITIMATE, REFUSED, TASK_REFUSED

    doc = (Path(__file__).resolve().parents[2] / "docs" / "robustness.md").read_text(encoding="utf-8")
    for case, (_, _, message) in bad_file_cases().items():
        assert f"| {case} |" in doc and message in doc, case
    for case in [*legit_file_cases(), *REFUSED, *LEGITIMATE, *TASK_REFUSED, *BAD_MODEL_CASES]:
        assert f"| {case} |" in doc, case
