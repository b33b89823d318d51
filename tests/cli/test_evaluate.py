"""``edgeskin evaluate classify|detect``: the JSON report's fields, missing images, plots, one-line errors."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from edgeskin.cli import main
from edgeskin.labels import DX_CLASSES, GROUPS

pytest.importorskip("sklearn", reason="needs scikit-learn (pip install 'edgeskin[eval]')")

PH2_IDS = ("IMD002", "IMD003", "IMD006", "IMD017", "IMD020")


def _link_ph2(shared_file, folder: Path, ids=PH2_IDS) -> tuple[Path, Path]:
    images, masks = folder / "images", folder / "masks"
    images.mkdir()
    masks.mkdir()
    for image_id in ids:
        os.symlink(shared_file(f"data/ph2/images/{image_id}.jpg"), images / f"{image_id}.jpg")
        os.symlink(shared_file(f"data/ph2/masks/{image_id}_segmentation.png"), masks / f"{image_id}_segmentation.png")
    return images, masks


@pytest.mark.shared
@pytest.mark.parametrize("model", ["classical", "classical-otsu"])
def test_detect_on_five_ph2_images_with_the_classical_detector(shared_file, tmp_path, capsys, model):
    images, masks = _link_ph2(shared_file, tmp_path)
    os.symlink(shared_file("data/ph2/masks/IMD021_segmentation.png"), masks / "IMD021_segmentation.png")  # no image
    out = tmp_path / "report.json"
    assert (
        main(
            [
                "evaluate",
                "detect",
                "--images",
                str(images),
                "--masks",
                str(masks),
                "--model",
                model,
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["n"] == 5 and report["missing_images"] == 1
    assert {"mean_iou", "median_iou", "iou50_rate", "map50", "best_box_iou"} <= set(report)
    assert 0.5 < report["mean_iou"] <= 1.0 and 0.0 <= report["iou50_rate"] <= 1.0 and 0.0 <= report["map50"] <= 1.0
    assert report["best_box_iou"]["mean_iou"] >= report["mean_iou"]  # one box per image: equal
    assert report["model"]["path"] == model and report["no_box"] == 0
    assert "mean IoU" in capsys.readouterr().out
    # --limit: a seeded sample of the masks (the one without an image may or may not be drawn)
    arguments = ["--images", str(images), "--masks", str(masks), "--model", model, "--json", str(out)]
    assert main(["evaluate", "detect", *arguments, "--limit", "3"]) == 0
    report = json.loads(out.read_text())
    assert report["n"] + report["missing_images"] == 3


def test_detect_without_masks_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    assert (
        main(
            [
                "evaluate",
                "detect",
                "--images",
                str(tmp_path / "images"),
                "--masks",
                str(tmp_path / "masks"),
                "--model",
                "classical",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("edgeskin: error: --masks: no <id>_segmentation.png file") and err.count("\n") == 1


def test_without_a_default_model_evaluate_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGESKIN_MODELS_DIR", str(tmp_path))
    (tmp_path / "labels.csv").write_text("image_id,dx\nISIC_1,nv\n")
    (tmp_path / "ISIC_1.jpg").write_bytes(b"")
    assert main(["evaluate", "classify", "--images", str(tmp_path), "--labels", str(tmp_path / "labels.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgeskin: error: no default model is installed") and err.count("\n") == 1


def test_a_classifier_without_dx_labels_closes_the_detector_too(tmp_path, monkeypatch, capsys):
    """The error path of ``classify --detect`` closes both models of the pipeline."""
    import cv2
    import numpy as np

    from edgeskin.runtime.interpreter import TFLiteModel

    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "IMD002.jpg"), np.full((64, 64, 3), 128, np.uint8))
    (tmp_path / "labels.csv").write_text("image_id,diagnosis\nIMD002,melanoma\n")
    closed: list[str] = []
    original = TFLiteModel.close
    monkeypatch.setattr(TFLiteModel, "close", lambda self: (closed.append(self.path.name), original(self))[1])
    monkeypatch.setattr("edgeskin.labels.is_dx_labels", lambda labels: False)
    arguments = ["--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels.csv"), "--detect"]
    assert main(["evaluate", "classify", *arguments]) == 2
    assert "expected a classifier over the 8 ISIC 2019 diagnoses" in capsys.readouterr().err
    assert {"edgeskin-mnv2-cls.tflite", "edgeskin-yolov5n-det.tflite"} <= set(closed)


def test_an_unrecognised_csv_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("name,label\na,b\n")
    assert (
        main(
            [
                "evaluate",
                "classify",
                "--images",
                str(tmp_path),
                "--labels",
                str(tmp_path / "labels.csv"),
                "--model",
                "m.tflite",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "unrecognised label CSV" in err and err.count("\n") == 1


def test_evaluate_without_a_task_asks_for_one(capsys):
    assert main(["evaluate"]) == 2
    assert "edgeskin evaluate classify" in capsys.readouterr().err


# -- classify, with the tiny real INT8 classifier on real HAM10000 images ----------------------------------------


def _ham_subset(shared_file, folder: Path, per_class: int = 2) -> tuple[Path, int]:
    """A HAM10000-format CSV with ``per_class`` present images per dx, plus two rows whose image is absent.

    Every row of the shared metadata has an image now, so the absent rows are made here: two real rows
    whose ``image_id`` is changed to one that no image file has.
    """
    metadata = shared_file("data/ham10000/HAM10000_metadata.csv")
    images = shared_file("data/ham10000/images")
    rows, counts = [], dict.fromkeys(DX_CLASSES, 0)
    with metadata.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if counts[row["dx"]] < per_class and (images / f"{row['image_id']}.jpg").is_file():
                counts[row["dx"]] += 1
                rows.append(row)
            if all(c == per_class for c in counts.values()):
                break
    absent = [{**rows[i], "image_id": f"ISIC_99999{i:02d}"} for i in range(2)]
    assert not any((images / f"{row['image_id']}.jpg").exists() for row in absent)
    path = folder / "metadata.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([*rows, *absent])
    return path, len(rows)


@pytest.mark.train
@pytest.mark.shared
def test_classify_report_has_every_field(shared_file, tmp_path, capsys):
    from tiny_models import tiny_classifier

    labels, n = _ham_subset(shared_file, tmp_path)
    images = shared_file("data/ham10000/images")
    out, plots = tmp_path / "report.json", tmp_path / "plots"
    assert main(["evaluate", "classify", "--images", str(images), "--labels", str(labels), "--model", str(tiny_classifier()),
                 "--json", str(out), "--plots", str(plots), "--threads", "1"]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    assert report["n"] == n == 14 and report["missing_images"] == 2 and report["mode"] == "whole-image"
    for section, names in (("dx", DX_CLASSES), ("group", GROUPS)):
        part = report[section]
        assert {"accuracy", "balanced_accuracy", "macro_f1", "auc", "per_class", "confusion_matrix"} <= set(part)
        assert part["labels"] == list(names) and len(part["confusion_matrix"]) == len(names)
        assert set(part["per_class"]) == set(names)
        assert set(part["per_class"][names[0]]) >= {"precision", "recall", "f1", "support"}
        assert sum(map(sum, part["confusion_matrix"])) == n
    assert report["malignant"]["rule"] == "malignant probability (mel + bcc + scc + ak, i.e. akiec) >= 0.3"
    assert {"sensitivity", "specificity"} <= set(report["malignant"])
    assert report["model"]["path"] == str(tiny_classifier()) and len(report["model"]["sha256"]) == 64
    assert sorted(p.name for p in plots.iterdir()) == [
        "confusion_dx.png",
        "confusion_group.png",
        "roc_dx.png",
        "roc_group.png",
        "roc_malignant.png",
    ]
    assert "balanced" in capsys.readouterr().out


@pytest.mark.train
@pytest.mark.shared
def test_classify_reads_isic2018_ground_truth_and_detect_mode_counts_misses(shared_file, tmp_path):
    from tiny_models import tiny_classifier

    images = shared_file("data/ham10000/images")
    ids = sorted(p.stem for p in images.glob("ISIC_*.jpg"))[:4]
    columns = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    lines = ["image," + ",".join(columns)]
    for i, image_id in enumerate([*ids, "ISIC_9999999"]):
        onehot = ["0.0"] * 7
        onehot[i % 7] = "1.0"
        lines.append(f"{image_id}," + ",".join(onehot))
    gt = tmp_path / "ISIC2018_Task3_GroundTruth.csv"
    gt.write_text("\n".join(lines) + "\n")
    out = tmp_path / "report.json"
    assert main(["evaluate", "classify", "--images", str(images), "--labels", str(gt), "--model", str(tiny_classifier()),
                 "--detect", "--detector", "classical", "--json", str(out)]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    assert report["n"] == 4 and report["missing_images"] == 1 and report["label_format"] == "isic2018"
    assert report["mode"] == "pipeline" and 0 <= report["detect"]["no_lesion_found"] <= 4
    assert report["detect"]["detector"] == "classical"


# -- the shipped models (skip until they are installed) ---------------------------------------------------------


@pytest.mark.shared
def test_the_shipped_detector_beats_half_iou_on_ph2(shared_file, tmp_path):
    from tiny_models import shipped_model_paths

    shipped_model_paths()
    images, masks = _link_ph2(shared_file, tmp_path)
    out = tmp_path / "report.json"
    assert main(["evaluate", "detect", "--images", str(images), "--masks", str(masks), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n"] == 5 and report["mean_iou"] > 0.5 and report["model"]["name"] == "edgeskin-yolov5n-det"


@pytest.mark.shared
def test_classify_scores_the_shipped_8_dx_model_on_isic2019_ground_truth(
    shared_file, isic2019_subset, tmp_path, capsys
):
    """ISIC 2019 ground truth (AK and SCC apart) on the shipped 8-dx classifier: the 8 classes, the 7-dx view
    (ak + scc = akiec), SCC vs AK and the melanoma section; PH2 labels are read too."""
    from edgeskin.labels import DX8_CLASSES

    labels, _ = isic2019_subset({"AK": 2, "SCC": 2, "MEL": 2, "NV": 2, "BCC": 1})
    images = shared_file("data/ham10000/images")
    out = tmp_path / "report.json"
    assert main(["evaluate", "classify", "--images", str(images), "--labels", str(labels),
                 "--json", str(out), "--threads", "1"]) == 0  # fmt: skip
    report = json.loads(out.read_text())
    assert report["n"] == 9 and report["dx8"]["labels"] == list(DX8_CLASSES)
    assert report["dx"]["labels"] == list(DX_CLASSES)
    assert report["scc_vs_ak"]["ak"]["support"] == 2 and report["scc_vs_ak"]["scc"]["support"] == 2
    # ak and scc both count as akiec in the 7-dx view: 4 akiec lesions there.
    assert report["dx"]["per_class"]["akiec"]["support"] == 4
    assert report["melanoma"]["n_melanoma"] == 2 and report["malignant"]["n_malignant"] == 7

    ph2 = tmp_path / "ph2.json"
    assert main(["evaluate", "classify", "--images", str(shared_file("data/ph2/images")), "--labels",
                 str(shared_file("data/ph2/labels.csv")), "--limit", "12", "--json", str(ph2), "--threads", "1"]) == 0  # fmt: skip
    report = json.loads(ph2.read_text())
    assert report["label_format"] == "ph2" and report["n"] == 12 and "dx8" in report
    # Stratified: PH2's first 12 rows hold no melanoma, a fifth of the file is one.
    assert report["sample"]["counts"]["mel"] in (2, 3) and report["melanoma"]["n_melanoma"] in (2, 3)
    assert "a stratified sample: mel " in capsys.readouterr().out
