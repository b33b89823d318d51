"""training.train_detector: its evaluator is edgeskin's one detection evaluator; YOLO label files."""

from __future__ import annotations

import numpy as np
import pytest

from edgeskin.evaluation import detection_report


def _box(x: float, y: float, size: float = 10.0) -> np.ndarray:
    return np.array([x, y, x + size, y + size], np.float32)


def test_evaluate_detector_is_edgeskins_detection_report(tmp_path) -> None:
    """The training records come from the one evaluator: same keys, same figures, per image on top."""
    import cv2

    from training.train_detector import LabelledImage, evaluate_detector

    path = tmp_path / "scene.jpg"
    cv2.imwrite(str(path), np.zeros((64, 64, 3), np.uint8))
    items = [
        LabelledImage("a", str(path), (tuple(_box(0, 0)), tuple(_box(40, 40)))),
        LabelledImage("b", str(path), (tuple(_box(0, 0)),)),
        LabelledImage("negative", str(path), ()),
    ]
    answers = {
        "a": (np.stack([_box(40, 40), _box(1, 0)]), np.array([0.9, 0.6])),
        "b": (np.stack([_box(5, 0)]), np.array([0.7])),
        "negative": (np.stack([_box(20, 20)]), np.array([0.8])),
    }
    calls = iter(["a", "b", "negative"])
    report = evaluate_detector(lambda image: answers[next(calls)], items)
    expected = detection_report(
        [np.stack([_box(0, 0), _box(40, 40)]), _box(0, 0)[None], None],
        list(answers.values()),
        image_ids=list(answers),
    )
    assert report == expected
    assert report["n"] == 2 and report["empty_masks"] == 1
    assert report["per_image"]["a"] == {
        "iou": 1.0, "box": [40.0, 40.0, 50.0, 50.0], "truth": [[0, 0, 10, 10], [40, 40, 50, 50]], "n_boxes": 2
    }  # fmt: skip


def test_read_yolo_boxes_to_pixels(tmp_path) -> None:
    from training.train_detector import read_yolo_boxes

    label = tmp_path / "a.txt"
    label.write_text("0 0.5 0.25 0.2 0.5\n\n0 0.1 0.9 0.2 0.2\n")
    boxes = read_yolo_boxes(label, width=200, height=100)
    np.testing.assert_allclose(boxes, [[80, 0, 120, 50], [0, 80, 40, 100]], atol=1e-4)
    label.write_text("")
    assert read_yolo_boxes(label, 10, 10).shape == (0, 4)  # a hard negative: no box
    label.write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(ValueError, match="class cx cy w h"):
        read_yolo_boxes(label, 10, 10)


def test_a_quick_run_trains_on_a_fraction_and_evaluates_a_sample(tmp_path, monkeypatch) -> None:
    """--fraction reaches ultralytics' options, --limit evaluates a seeded sample of the held-out images."""
    import json

    import training.train_detector as script

    held_out = [LabelledImageStub(f"IMD{i:03d}") for i in range(20)]
    evaluated: list[list[str]] = []
    monkeypatch.setattr(script, "apply_offline_settings", lambda folder: folder)
    monkeypatch.setattr(script, "load_data_config", lambda path: (None, None))
    monkeypatch.setattr(script, "ph2_validation_items", lambda folder, config: held_out)
    monkeypatch.setattr(script, "ultralytics_predictor", lambda weights, imgsz: None)

    def evaluate(predict, items) -> dict:
        evaluated.append([item.image_id for item in items])
        return {"n": len(items)}

    monkeypatch.setattr(script, "evaluate_detector", evaluate)
    arguments = ["--out", str(tmp_path), "--skip-dataset", "--skip-train", "--fraction", "0.25", "--limit", "5"]
    assert script.main(arguments) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["train_options"]["fraction"] == 0.25 and metrics["float"] == {"n": 5}
    assert len(evaluated) == 2 and evaluated[0] == evaluated[1] and len(evaluated[0]) == 5
    assert evaluated[0] != [item.image_id for item in held_out[:5]]  # a sample, not the first five
    for wrong in (["--fraction", "0"], ["--fraction", "1.5"], ["--limit", "0"]):
        with pytest.raises(SystemExit):
            script.main(["--out", str(tmp_path), *wrong])


class LabelledImageStub:
    def __init__(self, image_id: str) -> None:
        self.image_id = image_id
