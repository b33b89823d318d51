"""Conversion scripts end like the CLI: an expected failure is one line on stderr and exit 2, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from convert.script import run_script
from convert.ship import ShipError
from edgeskin.errors import ChecksumMismatchError

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "error",
    [
        FileNotFoundError(2, "No such file or directory", "/nowhere/config.json"),
        json.JSONDecodeError("Expecting value", "{", 1),
        ChecksumMismatchError("model.tflite: SHA-256 abc does not match the spec's def"),
        ShipError("nothing to ship: x.tflite does not exist"),
    ],
)
def test_an_expected_failure_is_one_line_and_exit_2(error, capsys, monkeypatch):
    monkeypatch.delenv("EDGESKIN_TRACEBACK", raising=False)

    def main() -> int:
        raise error

    with pytest.raises(SystemExit) as exc:
        run_script(main, "python -m convert.x")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == f"python -m convert.x: error: {error}\n"


def test_a_bug_keeps_its_traceback_and_success_keeps_its_code():
    def buggy() -> int:
        raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        run_script(buggy, "python -m convert.x")
    with pytest.raises(SystemExit) as exc:
        run_script(lambda: 0, "python -m convert.x")
    assert exc.value.code == 0


def test_a_script_run_on_a_missing_model_says_so_in_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("EDGESKIN_TRACEBACK", None)
    done = subprocess.run(
        [sys.executable, "-m", "convert.refit_head", "--run", str(tmp_path), "--model", str(tmp_path / "absent.tflite"),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip() and "WARNING" not in line]
    assert "Traceback" not in done.stderr
    assert lines[-1].startswith("python -m convert.refit_head: error: ") and "absent.json" in lines[-1]
