"""Where the benchmark tools find things in a source checkout: the defaults the package itself does not know.

``edgeskin.report`` takes every input as an argument (:class:`~edgeskin.report.common.ReportInputs`); these are
the checkout's answers: the data beside the checkout (``../shared/data``), the training records committed in
``training/runs/``, the local training outputs in ``artifacts/`` (a fresh run's copy wins), and the committed
reference results under ``benchmarks/``.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeskin.report.common import ReportInputs

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
ARTIFACTS = REPO / "artifacts"
CLASSIFIER_RUN = ARTIFACTS / "classifier"
DETECTOR_WORK = ARTIFACTS / "detector"
BENCH_ARTIFACTS = ARTIFACTS / "bench"
RUNS = REPO / "training" / "runs"
REFERENCE_DIR = REPO / "benchmarks" / "reference"
GPU_BASELINE = REPO / "benchmarks" / "gpu" / "float-baseline.json"
# The committed reference report, measured on the machine it names: written only on purpose (--reference).
REFERENCE_REPORT = REPO / "docs" / "benchmarks"
REPORT_DIR = ARTIFACTS / "report"


def _first_file(*candidates: Path) -> Path:
    """The first candidate that is a file (else the first: the report then says it is missing there)."""
    return next((path for path in candidates if path.is_file()), candidates[0])


def classifier_split() -> Path:
    """The classifier's split: a fresh training run's copy under artifacts/, else the committed record's."""
    return _first_file(CLASSIFIER_RUN / "split.json", RUNS / "classifier" / "split.json")


def detector_split() -> Path:
    """The detector's PH2 split: a fresh dataset's copy under artifacts/, else the committed record's."""
    return _first_file(DETECTOR_WORK / "dataset" / "ph2_split.json", RUNS / "detector" / "ph2_split.json")


def float_classifier(classifier_int8: Path) -> Path:
    """The spec's ``provenance.checkpoint`` (a file of the classifier run in artifacts/), else its model.keras."""
    spec = json.loads(classifier_int8.with_suffix(".json").read_text())
    name = (spec.get("provenance") or {}).get("checkpoint") or "model.keras"
    return Path(name) if Path(name).is_absolute() else CLASSIFIER_RUN / Path(name).name


def float_detector(detector_int8: Path) -> Path:
    """The spec's ``provenance.weights`` (committed with its training record), else the local run's best.pt."""
    spec = json.loads(detector_int8.with_suffix(".json").read_text())
    weights = (spec.get("provenance") or {}).get("weights")
    return REPO / weights if weights else DETECTOR_WORK / "run" / "weights" / "best.pt"


def checkout_inputs(classifier_int8: Path, detector_int8: Path) -> ReportInputs:
    """Every report input, from this checkout, for these INT8 models."""
    return ReportInputs(
        data=DATA,
        classifier_split=classifier_split(),
        detector_split=detector_split(),
        float_classifier=float_classifier(classifier_int8),
        float_detector=float_detector(detector_int8),
        float_dir=BENCH_ARTIFACTS,
        trained_dir=ARTIFACTS,
        gpu_baseline=GPU_BASELINE,
        reference_dir=REFERENCE_DIR,
        work=BENCH_ARTIFACTS,
    )
