"""The benchmark helpers that score stored or out-of-distribution results: GPU float rows, the PH2 check."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from edgeskin.labels import DX_CLASSES
from edgeskin.report.accuracy import gpu_baseline_rows


def _val(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(DX_CLASSES)
    return SimpleNamespace(image_ids=[f"ISIC_{i:07d}" for i in range(n)], labels=labels, rng=rng)


def test_gpu_rows_are_scored_here_on_the_same_images_in_any_order(tmp_path):
    val = _val()
    perfect = np.eye(len(DX_CLASSES))[val.labels] * 0.9 + 0.1 / len(DX_CLASSES)
    order = np.random.default_rng(1).permutation(len(val.image_ids))
    runs = {
        "good": {
            "image_ids": [val.image_ids[i] for i in order],
            "probs": perfect[order].tolist(),
            "device": "GPU (test)",
            "latency": {"batch1_p50_ms": 1.0},
        },
        "other_split": {"image_ids": ["ISIC_9"] * 40, "probs": perfect.tolist()},
        "broken": {"missing": "it crashed"},
    }
    path = tmp_path / "float-baseline.json"
    path.write_text(json.dumps({"date": "2026-11-28", "runs": runs}))
    out = gpu_baseline_rows(val, threshold=0.5, path=path)
    good = out["rows"]["good"]
    assert good["balanced_accuracy"] == pytest.approx(1.0) and good["auc"] == pytest.approx(1.0)
    assert good["device"] == "GPU (test)" and good["latency"] == {"batch1_p50_ms": 1.0}
    np.testing.assert_allclose(good["_probs"], perfect)  # put back in this split's order
    assert "not this validation split" in out["rows"]["other_split"]["missing"]
    assert out["rows"]["broken"] == {"missing": "it crashed"}


def test_no_gpu_file_says_so(tmp_path):
    out = gpu_baseline_rows(_val(), threshold=None, path=tmp_path / "absent.json")
    assert "no GPU float-baseline file" in out["missing"]
    assert "--gpu-baseline" in gpu_baseline_rows(_val(), threshold=None, path=None)["missing"]


@pytest.mark.shared
def test_the_ph2_check_scores_the_shipped_classifier_on_real_ph2_images(shared_dir):
    from benchmarks.ph2_classification import score_model
    from edgeskin.models import default_classifier_path
    from edgeskin.runtime.spec import sha256_file
    from training.detector_data import load_ph2

    if not (shared_dir / "data" / "ph2" / "labels.csv").is_file():
        pytest.skip("needs ../shared/data/ph2")
    items = load_ph2(shared_dir / "data" / "ph2")
    subset = [i for i in items if i.diagnosis == "melanoma"][:3] + [i for i in items if i.diagnosis != "melanoma"][:5]
    result = score_model(default_classifier_path(), subset)
    assert result["sha256"] == sha256_file(default_classifier_path())
    assert (result["melanomas"], result["naevi"]) == (3, 5)
    for view in ("lesion_box", "whole_frame"):
        row = result[view]
        assert 0.0 <= row["melanoma_auc_p_mel"] <= 1.0 and 0.0 <= row["melanoma_auc_p_malignant"] <= 1.0
        assert 0.0 <= row["melanomas_referred"] <= 1.0 and 0.0 <= row["naevi_referred"] <= 1.0


def _detector_with_weights(tmp_path, weights_sha: str | None) -> tuple:
    int8 = tmp_path / "det.tflite"
    int8.write_bytes(b"int8")
    weights = tmp_path / "record" / "best.pt"
    weights.parent.mkdir()
    weights.write_bytes(b"float weights")
    provenance = {"weights": "record/best.pt"}
    if weights_sha:
        provenance["weights_sha256"] = weights_sha
    int8.with_suffix(".json").write_text(json.dumps({"provenance": provenance}))
    return int8, weights


def test_detector_baseline_is_the_given_weights_checked_against_the_spec(tmp_path):
    import hashlib

    from edgeskin.report import common

    int8, weights = _detector_with_weights(tmp_path, hashlib.sha256(b"float weights").hexdigest())
    given = common.ReportInputs(float_detector=weights)
    assert common.detector_baseline(given, int8) == weights
    # Other weights under that name are not the INT8 model's source.
    weights.write_bytes(b"retrained")
    with pytest.raises(common.Missing, match="sha256"):
        common.detector_baseline(given, int8)
    weights.unlink()
    with pytest.raises(common.Missing, match="provenance.weights"):
        common.detector_baseline(given, int8)
    with pytest.raises(common.Missing, match="not given \\(--float-detector\\)"):
        common.detector_baseline(common.ReportInputs(), int8)


def test_the_checkout_gives_the_shipped_detectors_committed_float_weights():
    from benchmarks.checkout import RUNS, checkout_inputs
    from edgeskin.report import common

    given = checkout_inputs(*common.models())
    path = common.detector_baseline(given, common.models()[1])
    assert path.is_file() and path.is_relative_to(RUNS)


def test_report_inputs_travel_to_a_job_as_options_and_back(tmp_path):
    import argparse

    from edgeskin.report.common import ReportInputs, add_input_arguments

    given = ReportInputs(data=tmp_path / "data", detector_split=tmp_path / "split.json", work=tmp_path / "w")
    parser = argparse.ArgumentParser()
    add_input_arguments(parser)
    assert ReportInputs.from_args(parser.parse_args(given.argv())) == given
    assert ReportInputs.from_args(parser.parse_args([])) == ReportInputs()
    assert given.argv()[:2] == ["--data", str(tmp_path / "data")]


def test_rows_whose_input_was_not_given_say_which_option(tmp_path):
    from edgeskin.report.common import Missing, ReportInputs, ham_validation, ph2_validation

    with pytest.raises(Missing, match="--detector-split"):
        ph2_validation(ReportInputs())
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"val": ["IMD002"]}))
    with pytest.raises(Missing, match="the data folder: not given \\(--data\\)"):
        ph2_validation(ReportInputs(detector_split=split))
    with pytest.raises(Missing, match="--classifier-split"):
        ham_validation(ReportInputs(data=tmp_path))


def test_ultralytics_baselines_get_both_sides_of_a_non_square_detector_input():
    from edgeskin.report.common import ultralytics_imgsz

    assert ultralytics_imgsz((320, 320)) == 320
    # One side would letterbox a 288x384 model's frames to 288 pixels on their long side.
    assert ultralytics_imgsz((288, 384)) == [288, 384]


def _detector_spec(folder, name: str, layout: str, weights_sha: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.tflite").write_bytes(b"model")
    spec = {"layout": layout, "provenance": {"weights": "runs/best.pt", "weights_sha256": weights_sha}}
    (folder / f"{name}.json").write_text(json.dumps(spec))
    return folder / f"{name}.tflite"


def test_peers_run_an_in_graph_export_of_the_same_weights_when_the_shipped_one_decodes_outside(tmp_path):
    from edgeskin.report.common import Missing
    from edgeskin.report.peers import peer_model

    peers = tmp_path / "peers"
    in_graph = _detector_spec(tmp_path / "models", "in-graph", "yolo", "a" * 64)
    assert peer_model(in_graph, peers) == in_graph  # ultralytics decodes it: compared as it is
    shipped = _detector_spec(tmp_path / "models", "det", "yolo_dfl", "a" * 64)
    with pytest.raises(Missing, match="--decode graph"):
        peer_model(shipped, peers)
    _detector_spec(peers, "other-weights", "yolo", "b" * 64)
    _detector_spec(peers, "same-weights-dfl", "yolo_dfl", "a" * 64)
    with pytest.raises(Missing, match="no export of its weights"):
        peer_model(shipped, peers)
    match = _detector_spec(peers, "same-weights", "yolo", "a" * 64)
    assert peer_model(shipped, peers) == match


def test_edge_task_latency_records_the_classifiers_batched_invokes():
    """The classifier's test-time views run as one batch on a sibling interpreter; its invoke time is counted."""
    from tiny_models import shipped_model_paths

    from edgeskin.report.latency import _time_edge_task
    from edgeskin.tasks.classifier import Classifier

    classifier_path, _ = shipped_model_paths()
    image = np.random.default_rng(0).integers(0, 256, (200, 240, 3), np.uint8)
    row = _time_edge_task(Classifier, "classify_with_features", classifier_path, [image], 1, 3, "test")
    assert row["invoke_ms"]["p50"] > 0
    assert row["invoke_ms"]["p50"] < row["latency_ms"]["p50"]


@pytest.mark.parametrize(
    ("job", "model_index", "timed"), [("classifier-tflite", 0, "Classifier."), ("detector-tflite", 1, "Detector.")]
)
def test_an_edge_task_latency_job_times_its_task_on_the_shipped_model_over_the_images_it_reads(job, model_index, timed):
    from dataclasses import replace

    from tiny_models import shipped_model_paths

    from edgeskin.report.latency import JOB_FUNCTIONS

    image = np.random.default_rng(0).integers(0, 256, (200, 240, 3), np.uint8)
    read: list[int] = []
    quick = replace(JOB_FUNCTIONS[job], images=lambda given, count: read.append(count) or [image] * count)
    row = quick(None, threads=1, runs=2, images=3)
    assert read == [3] and row["latency_ms"]["n"] == 2 and row["threads"] == 1
    assert row["model"] == shipped_model_paths()[model_index].name and row["timed"].startswith(timed)


def test_the_pipeline_profile_times_every_piece_of_the_shipped_models():
    # benchmarks.profile_pipeline once decoded the detector's raw outputs as an in-graph layout and failed on the
    # shipped yolo_dfl model without any test noticing: a few runs of every piece, on the shipped models.
    from benchmarks.profile_pipeline import profile

    result = profile(threads=1, runs=2)
    pieces = result["pieces_ms_min_median"]
    assert "detector: postprocess (candidates, DFL decode, NMS)" in pieces
    assert all(low > 0 and median >= low for low, median in pieces.values())
    assert result["lesions"] >= 1 and set(result["variants"]) == {"batched views", "per-view loop"}
    assert any("Invoke" in row["function"] for row in result["cprofile_predict"])


def test_unsure_band_counts_outcomes_per_kind_and_melanomas_left_without_an_answer():
    from benchmarks.unsure_band import lesion_summary, non_lesion_summary, outcome
    from edgeskin.results import DETECTOR_UNSURE, NOT_SKIN, NOTHING_STANDS_OUT, Classification, Lesion, PipelineResult

    dx = Classification(np.full(len(DX_CLASSES), 1 / len(DX_CLASSES)), DX_CLASSES)
    box = np.array([0, 0, 10, 10], np.float32)

    def lesion(unsure: bool) -> Lesion:
        return Lesion(box, 0.3, dx, dx, 0.5, True, box.astype(int), detector_unsure=unsure)

    assert outcome(PipelineResult((10, 10), (lesion(False),))) == "lesion"
    assert outcome(PipelineResult((10, 10), (lesion(True),), messages=(DETECTOR_UNSURE,))) == "lesion_unsure"
    assert outcome(PipelineResult((10, 10), (), messages=(NOT_SKIN,))) == "not_skin"
    assert outcome(PipelineResult((10, 10), (), messages=(NOTHING_STANDS_OUT,))) == "nothing_stands_out"
    assert outcome(PipelineResult((10, 10), ())) == "no_lesion_found"
    rows = [
        {"dx": "mel", "outcome": "lesion_unsure", "refer": True},
        {"dx": "MEL", "outcome": "nothing_stands_out", "refer": None},
        {"dx": "nv", "outcome": "lesion", "refer": False},
    ]
    summary = lesion_summary(rows)
    assert summary["melanoma"]["n"] == 2 and summary["melanoma"]["lesion_unsure"] == 1
    assert summary["melanoma"]["nothing_stands_out"] == 1 and summary["melanoma"]["referred"] == 1
    frames = [{"kind": "cat", "outcome": "lesion_unsure"}, {"kind": "cat", "outcome": "not_skin"}]
    assert non_lesion_summary(frames)["cat"] == {
        "n": 2, "lesion": 0, "lesion_unsure": 1, "no_lesion_found": 0, "not_skin": 1, "nothing_stands_out": 0,
        "answered": 1, "answered_rate": 0.5,
    }  # fmt: skip
