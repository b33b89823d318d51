"""Privacy: nothing is written unless ``--out`` (or ``--json OUT`` / ``--plots DIR``, or an explicit save) asks,
and logs hold no pixel data.

The CLI runs in a fresh process with its working folder, HOME, TMPDIR and the XDG folders pointed at empty
temporary folders; those trees, the input folder, the models folder and the package folder are snapshotted
before and after.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from robustness_cases import changed, good_image, labelled_folder, snapshot

from edgeskin.models import CLASSIFIER_NAME, DETECTOR_NAME

PACKAGE = Path(__file__).resolve().parents[2] / "edgeskin"
XDG = ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR")


def package_files() -> dict[str, tuple[int, int]]:
    """The package tree without its __pycache__ folders (bytecode of the package itself is allowed)."""
    return {p: v for p, v in snapshot(PACKAGE).items() if "__pycache__" not in p and not p.endswith(".pyc")}


@pytest.fixture
def sandbox(tmp_path) -> dict[str, Path]:
    """Empty folders for the working folder, HOME, TMPDIR and each XDG folder; inputs go in ``inputs``."""
    folders = {name: tmp_path / name for name in ("cwd", "home", "tmp", "inputs", *XDG)}
    for folder in folders.values():
        folder.mkdir()
    return folders


def run_sandboxed(edgeskin_cli, sandbox, *args, models_dir: Path | None = None):
    env = {"HOME": str(sandbox["home"]), "TMPDIR": str(sandbox["tmp"]), "TEMP": str(sandbox["tmp"])}
    env.update({name: str(sandbox[name]) for name in XDG})
    return edgeskin_cli(*args, cwd=sandbox["cwd"], models_dir=models_dir, env=env)


def assert_writes_nothing(edgeskin_cli, sandbox, runs, models_dir: Path) -> None:
    watched = [*sandbox.values(), models_dir]
    before, package_before, bytecode_before = snapshot(*watched), package_files(), snapshot(PACKAGE)
    for args in runs:
        proc = run_sandboxed(edgeskin_cli, sandbox, *args, models_dir=models_dir)
        assert proc.returncode == 0, (args, proc.stderr)
        assert changed(before, snapshot(*watched)) == [], f"{args} wrote files"
    assert changed(package_before, package_files()) == []
    bytecode = changed(bytecode_before, snapshot(PACKAGE))
    if bytecode:  # allowed (Python's own cache of the package), but worth knowing
        warnings.warn(
            f"the runs wrote {len(bytecode)} bytecode file(s) into the package, e.g. {bytecode[0]}", stacklevel=1
        )


def cli_runs(models_dir: Path, sandbox: dict[str, Path]) -> list[tuple]:
    image = good_image(sandbox["inputs"])
    images, labels, masks = labelled_folder(sandbox["inputs"])
    classifier = models_dir / f"{CLASSIFIER_NAME}.tflite"
    detector = models_dir / f"{DETECTOR_NAME}.tflite"
    return [
        ("predict", image),
        ("predict", image, "--json", "-v"),
        ("predict", image, "--detector", "classical"),
        ("classify", image, "--model", classifier),
        ("classify", image, "--model", classifier, "--json"),
        ("info", classifier),
        ("evaluate", "classify", "--images", images, "--labels", labels),
        ("evaluate", "classify", "--images", images, "--labels", labels, "--detect", "--json", "-"),
        ("evaluate", "detect", "--images", images, "--masks", masks, "--model", detector),
    ]


def test_the_cli_writes_nothing_without_out(edgeskin_cli, models_dir, sandbox):
    assert_writes_nothing(edgeskin_cli, sandbox, cli_runs(models_dir, sandbox), models_dir)


def test_out_writes_only_where_it_is_told(edgeskin_cli, models_dir, sandbox, tmp_path):
    runs = cli_runs(models_dir, sandbox)
    watched = list(sandbox.values())
    before = snapshot(*watched)
    out = tmp_path / "results"
    proc = run_sandboxed(edgeskin_cli, sandbox, *runs[0], "--out", out, models_dir=models_dir)
    assert proc.returncode == 0, proc.stderr
    assert changed(before, snapshot(*watched)) == []
    assert sorted(p.name for p in out.iterdir()) == ["square.json", "square_annotated.png"]
    report = tmp_path / "report.json"
    proc = run_sandboxed(edgeskin_cli, sandbox, *runs[6], "--json", report, models_dir=models_dir)
    assert proc.returncode == 0, proc.stderr
    assert changed(before, snapshot(*watched)) == [] and report.is_file()


# -- logs hold no pixel data ------------------------------------------------------------------------------------

NUMBER_RUN = re.compile(r"(?:-?\d+(?:\.\d+)?(?:e[-+]?\d+)?[\s,;\]\[()]+){16,}")
MAX_MESSAGE = 400


def assert_no_pixel_data(messages: list[str]) -> None:
    for message in messages:
        assert "array(" not in message, message
        assert not NUMBER_RUN.search(message), f"a run of numbers in a log message: {message[:300]}"
        assert len(message) <= MAX_MESSAGE, f"a {len(message)}-character log message: {message[:300]}"


@pytest.fixture
def debug_records(caplog):
    """Every record of the "edgeskin" loggers at DEBUG, also when an earlier in-process CLI run stopped the
    "edgeskin" logger from propagating to the root logger."""
    root = logging.getLogger("edgeskin")
    saved = (root.level, root.propagate, root.handlers[:])
    root.handlers[:] = [caplog.handler]
    root.setLevel(logging.DEBUG)
    root.propagate = False
    caplog.handler.setLevel(logging.DEBUG)
    yield caplog
    root.setLevel(saved[0])
    root.propagate = saved[1]
    root.handlers[:] = saved[2]


def frames_to_log() -> list[np.ndarray]:
    """A lesion frame, a blank frame (no lesion), a noisy frame, gray and RGBA frames, a float frame."""
    from tiny_models import frame_with_dark_square

    rng = np.random.default_rng(3)
    return [
        frame_with_dark_square(64, 128, square=(64, 32, 96, 64)),
        np.full((64, 64, 3), 230, np.uint8),
        rng.integers(0, 256, (80, 96, 3), dtype=np.uint8),
        rng.integers(0, 256, (64, 64), dtype=np.uint8),
        rng.integers(0, 256, (64, 64, 4), dtype=np.uint8),
        rng.random((48, 48, 3)).astype(np.float32),
    ]


def run_frames(pipeline) -> None:
    from edgeskin.errors import ImageError

    for frame in frames_to_log():
        pipeline(frame)
    for bad in (np.full((40, 40, 3), np.nan, np.float32), np.zeros((5, 5, 3), np.uint8)):
        with pytest.raises(ImageError) as info:
            pipeline(bad)
        assert_no_pixel_data([str(info.value)])


@pytest.mark.train
def test_pipeline_debug_logs_hold_no_pixel_data(debug_records, tiny_models_dir, monkeypatch):
    from edgeskin.tasks.pipeline import LesionPipeline

    monkeypatch.setenv("EDGESKIN_MODELS_DIR", str(tiny_models_dir))
    logging.getLogger("edgeskin.tasks.pipeline").debug("sentinel")  # the capture itself works
    for detector in (None, "classical", "none"):
        overrides = {} if detector is None else {"detector": None if detector == "none" else detector}
        with LesionPipeline.from_defaults(threads=1, **overrides) as pipeline:
            run_frames(pipeline)
    messages = [record.getMessage() for record in debug_records.records]
    assert "sentinel" in messages
    assert_no_pixel_data(messages)


def test_pipeline_warnings_hold_no_pixel_data(debug_records):
    """A classifier without CAM weights and a detector returning degenerate boxes: the warning and debug
    messages these produce stay short."""
    from edgeskin.labels import DX_CLASSES
    from edgeskin.results import Classification, Detections
    from edgeskin.tasks.pipeline import LesionPipeline

    class Classifier:
        labels = DX_CLASSES
        spec = None

        def classify(self, image):
            return Classification(np.full(7, 1 / 7, np.float32), self.labels)

        def close(self):
            pass

    class Detector:
        def detect(self, image):
            return Detections(np.array([[10, 10, 10, 30], [5, 5, 40, 40]], np.float32), [0.9, 0.8], [0, 0])

    pipeline = LesionPipeline(Classifier(), Detector())
    run_frames(pipeline)
    messages = [record.getMessage() for record in debug_records.records]
    assert any("CAM is off" in m for m in messages) and any("degenerate box" in m for m in messages)
    assert_no_pixel_data(messages)


@pytest.mark.train
def test_cli_debug_output_holds_no_pixel_data(edgeskin_cli, tiny_models_dir, tmp_path):
    image = good_image(tmp_path)
    proc = edgeskin_cli("-vv", "predict", image, "--json", models_dir=tiny_models_dir)
    assert proc.returncode == 0, proc.stderr
    assert_no_pixel_data(proc.stderr.splitlines())
