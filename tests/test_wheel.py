"""The package as shipped: build the wheel, install it in a fresh venv outside the checkout, run the CLI there.

The venv has no access to this checkout or to the development venv's packages (no ``--system-site-packages``,
no ``PYTHONPATH``); pip installs the runtime dependencies the usual way (the configured registry and pip's
cache). Every command runs in an empty working directory, which must still be empty afterwards: nothing is
written unless an ``--out`` asks for it. The extras are absent there, so ``bench report`` gives the
runtime-only rows and names the extra each missing row needs.

Takes about a minute (about 30 s of it installing numpy, OpenCV and LiteRT from pip's cache).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = REPO_ROOT / "examples" / "IMD080.jpg"
SUBCOMMANDS = ("predict", "classify", "info", "evaluate", "run", "kiosk", "ui", "bench")


class Installed:
    """A fresh venv with the wheel installed, and an empty working directory to run its ``edgeskin`` in."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cwd = root / "cwd"
        self.cwd.mkdir()
        self.bin = root / "venv" / "bin"
        self.timings: dict[str, float] = {}

    def env(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "TMPDIR", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT")
        env = {k: os.environ[k] for k in keep if k in os.environ}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        return env  # no PYTHONPATH, no EDGESKIN_CHECKOUT / EDGESKIN_MODELS_DIR

    def edgeskin(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "edgeskin"), *args],
            cwd=self.cwd, env=self.env(), capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def python(self, code: str) -> str:
        done = subprocess.run(
            [str(self.bin / "python"), "-c", code], cwd=self.cwd, env=self.env(), capture_output=True, text=True,
            timeout=120, check=True,
        )  # fmt: skip
        return done.stdout.strip()


def _run(cmd: list[str], **kwargs) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    out = Installed(root)
    # Build from a copy holding only what the wheel is made of, so the checkout gets no build/ or egg-info.
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, src / name)
    shutil.copytree(REPO_ROOT / "edgeskin", src / "edgeskin", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    started = time.perf_counter()
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(root / "dist"),
        ]
    )
    out.timings["build_wheel_s"] = time.perf_counter() - started
    wheels = list((root / "dist").glob("edgeskin-*.whl"))
    assert len(wheels) == 1, wheels
    started = time.perf_counter()
    _run([sys.executable, "-m", "venv", str(root / "venv")])
    _run([str(out.bin / "python"), "-m", "pip", "install", "-q", str(wheels[0])], env=out.env(), cwd=out.cwd)
    out.timings["venv_and_install_s"] = time.perf_counter() - started
    print(f"wheel test setup: {out.timings}")
    return out


def test_installed_package_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    location = Path(installed.python("import edgeskin; print(edgeskin.__file__)"))
    assert installed.root / "venv" in location.parents
    assert REPO_ROOT not in location.parents
    # The runtime alone: none of the extras came with it.
    absent = installed.python(
        "import importlib.util as u; print(','.join(m for m in ('tensorflow', 'torch', 'sklearn', 'matplotlib', "
        "'training', 'convert', 'benchmarks') if u.find_spec(m) is None))"
    )
    assert absent.split(",") == ["tensorflow", "torch", "sklearn", "matplotlib", "training", "convert", "benchmarks"]


@pytest.mark.parametrize("subcommand", (None, *SUBCOMMANDS))
def test_every_help_works(installed: Installed, subcommand: str | None) -> None:
    done = installed.edgeskin(*([subcommand] if subcommand else []), "--help", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_predict_and_classify_on_the_shipped_models(installed: Installed) -> None:
    done = installed.edgeskin("predict", str(EXAMPLE), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["lesions"], "the bundled example is a lesion: the shipped detector must find it"
    model = installed.python("from edgeskin.models import default_classifier_path as p; print(p())")
    done = installed.edgeskin("classify", str(EXAMPLE), "--model", model, "--json")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "mel" in text and "nv" in text


def test_quick_bench_json(installed: Installed) -> None:
    done = installed.edgeskin("bench", "--json", "-", "--runs", "3", "--warmup", "1")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["end_to_end_ms"]["p50"] > 0


def test_bench_report_writes_runtime_rows_and_names_the_missing_extras(installed: Installed) -> None:
    report = installed.root / "report"
    started = time.perf_counter()
    done = installed.edgeskin("bench", "report", "--out", str(report), "--runs", "3", "--retries", "0", timeout=600)
    installed.timings["bench_report_s"] = time.perf_counter() - started
    print(f"wheel test timings: {installed.timings}")
    assert done.returncode == 0, done.stderr[-3000:]
    page = (report / "report.md").read_text()
    results = json.loads((report / "report.json").read_text())
    assert results["latency"]["pipeline-2t"]["end_to_end_ms"]["p50"] > 0  # the runtime rows are measured
    assert "| 768x576 | 2 |" in page
    assert "plots need" in done.stderr or "need matplotlib" in done.stderr
    assert not list(report.glob("*.png"))  # no [eval]: no plots, and it says so
    # The float rows say what they lacked instead of failing the report.
    missing = results["latency"]["classifier-keras"]["missing"]
    assert "edgeskin[train]" in missing, missing
    assert "edgeskin[train]" in results["latency"]["detector-torch"]["missing"]
    assert "not given (--classifier-split)" in results["accuracy"]["classifier"]["missing"]


def test_nothing_was_written_to_the_working_directory(installed: Installed) -> None:
    # Runs last in this module (pytest keeps definition order): every command above used this directory.
    assert sorted(p.name for p in installed.cwd.iterdir()) == []
