"""The ISIC challenge format: files of ``edgeskin evaluate classify --predictions/--truth`` scored by the official
scorer (``isic-challenge-scoring`` 5.6) give ``evaluate``'s balanced accuracy and per-class AUC.

The scorer's 5.6 release calls ``DataFrame.applymap``, which pandas 3 removed (and a pandas old enough to have it
brings numpy 1.x back): these tests alias ``applymap`` to ``DataFrame.map``, the same element-wise call under its
new name, instead of running the scorer in an environment of its own.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("isic_challenge_scoring") is None:
    pytest.skip(
        "needs the official ISIC scorer, which is absent: scripts/install.sh dev installs isic-challenge-scoring",
        allow_module_level=True,
    )

import pandas as pd  # noqa: E402  (the scorer's own dependency)
from isic_challenge_scoring.classification import ClassificationMetric, ClassificationScore  # noqa: E402

from edgeskin.calibration import softmax  # noqa: E402
from edgeskin.cli import main  # noqa: E402
from edgeskin.evaluation import classification_metrics, isic_csv  # noqa: E402
from edgeskin.labels import DX8_CLASSES, DX_CLASSES, ISIC2018_COLUMNS, ISIC2019_COLUMNS  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::Warning:isic_challenge_scoring")  # its pandas deprecations


@pytest.fixture(autouse=True)
def _applymap_is_map(monkeypatch) -> None:
    if not hasattr(pd.DataFrame, "applymap"):
        monkeypatch.setattr(pd.DataFrame, "applymap", pd.DataFrame.map, raising=False)


def _official(truth: str | Path, predictions: str | Path) -> ClassificationScore:
    """The official score of two CSV texts (or files)."""
    if isinstance(truth, Path):
        truth, predictions = truth.read_text(), Path(predictions).read_text()
    return ClassificationScore.from_stream(
        io.StringIO(truth), io.StringIO(predictions), ClassificationMetric.BALANCED_ACCURACY
    )


def _assert_same(score: ClassificationScore, ours: dict) -> None:
    assert score.aggregate["balanced_accuracy"] == pytest.approx(ours["balanced_accuracy"], abs=1e-6)
    for column, auc in score.per_category["auc"].items():
        assert auc == pytest.approx(ours["per_class"][column.lower()]["auc"], abs=1e-6), column


@pytest.mark.parametrize("dx_labels", [DX_CLASSES, DX8_CLASSES])
def test_the_official_scorer_agrees_with_classification_metrics(dx_labels):
    rng = np.random.default_rng(0)
    k = len(dx_labels)
    y = np.concatenate([np.arange(k), rng.integers(0, k, 150)])  # every class has positives: the scorer needs them
    logits = rng.normal(0.0, 1.5, (len(y), k))
    logits[np.arange(len(y)), y] += 1.0
    probabilities = softmax(logits)
    ids = [f"ISIC_{i:07d}" for i in rng.permutation(len(y))]  # the scorer sorts the rows by image
    ours = classification_metrics(y, probabilities, dx_labels)
    _assert_same(_official(isic_csv(ids, np.eye(k)[y], dx_labels), isic_csv(ids, probabilities, dx_labels)), ours)


def _write(path: Path, columns: list[str], rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.shared
@pytest.mark.parametrize("label_format", ["isic2019", "isic2018"])
def test_evaluate_predictions_score_the_same_with_the_official_scorer(
    shared_file, isic2019_subset, tmp_path, label_format
):
    """The shipped classifier on 3 images of each dx: 8 dx against ISIC 2019 ground truth, or the 7-dx view
    (ak + scc = akiec) against the same images in the ISIC 2018 Task 3 layout."""
    labels, rows = isic2019_subset(dict.fromkeys(ISIC2019_COLUMNS[:-1], 3))
    if label_format == "isic2018":
        for row in rows:
            row["AKIEC"] = str(float(row["AK"]) + float(row["SCC"]))
        labels = _write(tmp_path / "isic2018.csv", ["image", *ISIC2018_COLUMNS], rows)
    out, predictions, truth = tmp_path / "report.json", tmp_path / "predictions.csv", tmp_path / "truth.csv"
    assert main(["evaluate", "classify", "--images", str(shared_file("data/ham10000/images")), "--labels", str(labels),
                 "--json", str(out), "--predictions", str(predictions), "--truth", str(truth), "--threads", "1"]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    ours = report["dx8"] if label_format == "isic2019" else report["dx"]
    assert report["n"] == len(rows) == 24 and report["predictions_csv"] == str(predictions)
    _assert_same(_official(truth, predictions), ours)
    # The user's own ground truth file scores the same (for ISIC 2019: without its UNK column, which has no positive).
    own = pd.read_csv(labels).drop(columns=["UNK"], errors="ignore").to_csv(index=False)
    _assert_same(_official(own, predictions.read_text()), ours)
