"""scripts/parity_run.py (the cross-machine bit-for-bit diff of scripts/check-aarch64.sh) and the script itself."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import parity_run  # scripts/ is on pytest's pythonpath (pyproject.toml)
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _result(path: Path, machine: str, **arrays) -> Path:
    meta = {
        "machine": machine,
        "models": {"m.tflite": "ab"},
        "reference_ops": [],
        "numpy": "2",
        "opencv": "5",
        "edgeskin": "0.1",
        "litert": "2.3",
        "images": ["a.jpg"],
        "digests": {"a/frame": "00"},
    }
    meta.update(arrays.pop("meta", {}))
    np.savez(path, **arrays, __meta__=np.array(json.dumps(meta)))
    return path


def test_identical_results_pass(tmp_path, capsys):
    a = _result(tmp_path / "a.npz", "x86_64", **{"a/0/dx": np.array([0.25, 0.75], np.float32)})
    b = _result(tmp_path / "b.npz", "aarch64", **{"a/0/dx": np.array([0.25, 0.75], np.float32)})
    assert parity_run.compare([a, b]) == 0
    assert "bit-identical" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("other", "meta", "expected"),
    [
        (
            np.array([0.25, np.nextafter(np.float32(0.75), np.float32(1))], np.float32),
            {},
            "max |diff| 5.96e-08 on 1 of 2",
        ),
        (np.array([0.25, 0.75], np.float64), {}, "float32[2] vs float64[2]"),
        (np.array([0.25, 0.75], np.float32), {"digests": {"a/frame": "01"}}, "a/frame: input tensor differs"),
        (np.array([0.25, 0.75], np.float32), {"reference_ops": ["COLOR_RGB2GRAY"]}, "differ from the numpy references"),
        (np.array([0.25, 0.75], np.float32), {"reference_ops": None}, "did not run"),
    ],
)
def test_any_difference_fails_and_is_named(tmp_path, capsys, other, meta, expected):
    a = _result(tmp_path / "a.npz", "x86_64", **{"a/0/dx": np.array([0.25, 0.75], np.float32)})
    b = _result(tmp_path / "b.npz", "aarch64", **{"a/0/dx": other, "meta": meta})
    assert parity_run.compare([a, b]) == 1
    assert expected in capsys.readouterr().out


def test_a_missing_lesion_fails(tmp_path, capsys):
    a = _result(tmp_path / "a.npz", "x86_64", **{"a/lesions": np.array(1), "a/0/box": np.zeros(4, np.float32)})
    b = _result(tmp_path / "b.npz", "aarch64", **{"a/lesions": np.array(0)})
    assert parity_run.compare([a, b]) == 1
    out = capsys.readouterr().out
    assert "a/0/box: only in the first" in out and "a/lesions" in out


@pytest.mark.shared
def test_a_run_on_the_shipped_models_compares_equal_to_itself(tmp_path):
    """The x86 half of the check on two PH2 images: every reported number is stored, and the OpenCV ops pass
    the numpy references here."""
    images = sorted((ROOT.parent / "shared" / "data" / "ph2" / "images").glob("*.jpg"))[:2]
    if len(images) < 2:
        pytest.skip("PH2 images not present")
    out = tmp_path / "x86.npz"
    parity_run.run(out, images)
    stored = np.load(out)
    meta = json.loads(str(stored["__meta__"]))
    assert meta["reference_ops"] == [] and len(meta["models"]) == 4
    lesions = [k for k in stored.files if k.endswith("/dx")]
    assert lesions, "no lesion found on two PH2 images"
    for key in lesions:
        prefix = key[: -len("/dx")]
        for name in ("box", "score", "group", "malignant", "refer", "crop_box", "cam"):
            assert f"{prefix}/{name}" in stored.files
        assert f"{prefix}/classifier_input" in meta["digests"]
    assert parity_run.compare([out, out]) == 0


def test_the_check_script_is_valid_bash_and_outside_make_test():
    script = ROOT / "scripts" / "check-aarch64.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for needed in ("QEMU_CPU", "cortex-a72", "cortex-a76", "/proc/cpuinfo", "--only-binary=:all:", "PIP_CERT"):
        assert needed in text
    makefile = (ROOT / "Makefile").read_text()
    assert "test-arm64:" in makefile and "scripts/check-aarch64.sh" in makefile
    test_recipe = makefile.split("\ntest:")[1].split("\n\n")[0]
    assert "check-aarch64" not in test_recipe and "test-arm64" not in test_recipe
