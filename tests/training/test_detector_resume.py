"""The detector's time budget stops ultralytics at an epoch boundary with a resumable checkpoint, and --resume ends
the run where an unbroken one ends. Real ultralytics on a tiny generated data set (no download, CPU)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.train
pytest.importorskip("ultralytics", reason="needs the [train] extra (scripts/install.sh train)")


def tiny_dataset(folder: Path) -> Path:
    """Eight frames with one dark ellipse each (train and val share them), in the YOLO layout."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (folder / "images" / split).mkdir(parents=True)
        (folder / "labels" / split).mkdir(parents=True)
        for i in range(8):
            frame = np.full((64, 64, 3), 200, np.uint8)
            cx, cy, a, b = (int(v) for v in rng.integers([20, 20, 6, 6], [44, 44, 14, 14]))
            cv2.ellipse(frame, (cx, cy), (a, b), 0, 0, 360, (60, 40, 30), -1)
            cv2.imwrite(str(folder / "images" / split / f"f{i}.jpg"), frame)
            line = f"0 {cx / 64:.4f} {cy / 64:.4f} {2 * a / 64:.4f} {2 * b / 64:.4f}\n"
            (folder / "labels" / split / f"f{i}.txt").write_text(line)
    (folder / "data.yaml").write_text(f"path: {folder}\ntrain: images/train\nval: images/val\nnames:\n  0: lesion\n")
    return folder


def test_budget_stop_then_resume_completes_the_run(tmp_path) -> None:
    import torch

    import training.train_detector as script

    script.apply_offline_settings(tmp_path / "yolo_config")
    dataset = tiny_dataset(tmp_path / "dataset")
    run = tmp_path / "run"
    options = {"model": "yolov5n.yaml", "imgsz": 64, "epochs": 2, "batch": 4, "workers": 0, "seed": 0,
               "mosaic": 0.0, "val": True}  # fmt: skip
    # A budget of one second: the first epoch ends past it, so the run stops there with a resumable checkpoint.
    script.train(dataset, run, options, budget_s=1.0)
    stopped = run / "weights" / script.RESUME_CHECKPOINT
    assert stopped.is_file()
    checkpoint = torch.load(stopped, map_location="cpu", weights_only=False)
    assert checkpoint["epoch"] == 0 and checkpoint["optimizer"] is not None and checkpoint["ema"] is not None

    script.train(dataset, run, options, resume=True)
    assert not stopped.exists()  # spent: the run reached its last epoch
    results = (run / "results.csv").read_text().strip().splitlines()
    assert [line.split(",")[0].strip() for line in results[1:]] == ["1", "2"]  # epoch 1 once, then epoch 2


def test_resume_without_a_checkpoint_says_so(tmp_path) -> None:
    import training.train_detector as script

    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        script.train(tmp_path, tmp_path / "run", {"model": "yolov5n.yaml"}, resume=True)
