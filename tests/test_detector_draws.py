"""benchmarks/detector_draws.py: composites and close-ups of several draws, per model and pooled."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.detector_draws import POOLED, format_table, main, score_draws


def _draw(root: Path, composites: int, closeups: int) -> Path:
    """A dataset folder with a validation split: each image has one truth box [20, 20, 60, 60] in a 100x80 frame."""
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    for prefix, count in (("comp_val_", composites), ("close_val_", closeups), ("ham_", 2)):
        for k in range(count):
            cv2.imwrite(str(root / "images" / "val" / f"{prefix}{k:05d}.jpg"), np.full((80, 100, 3), 128, np.uint8))
            # YOLO label: class cx cy w h, normalised
            (root / "labels" / "val" / f"{prefix}{k:05d}.txt").write_text("0 0.4 0.5 0.4 0.5\n")
    return root


def _predictor(box, score):
    return lambda image: (np.asarray([box], np.float32), np.asarray([score], np.float32))


def test_score_draws_counts_hits_per_draw_and_pooled(tmp_path: Path) -> None:
    draws = {"a": _draw(tmp_path / "a", composites=3, closeups=1), "b": _draw(tmp_path / "b", composites=1, closeups=0)}
    predictors = {
        "exact": _predictor([20, 20, 60, 60], 0.9),
        "shifted": _predictor([40, 20, 80, 60], 0.9),  # IoU 1/3 with the truth
        "faint": _predictor([20, 20, 60, 60], 0.1),  # right box, score under 0.25
    }
    result = score_draws(draws, predictors)
    assert result["a"]["composite_val"]["exact"] == {"n": 3, "top_iou50": 1.0, "mean_iou": 1.0, "hit_at_0.25": 1.0}
    assert result["a"]["composite_val"]["shifted"]["top_iou50"] == 0.0
    assert result["a"]["composite_val"]["shifted"]["mean_iou"] == pytest.approx(1 / 3, abs=1e-3)
    assert result["a"]["composite_val"]["faint"]["top_iou50"] == 1.0
    assert result["a"]["composite_val"]["faint"]["hit_at_0.25"] == 0.0
    # Whole images of other kinds ("ham_") are not composites or close-ups.
    assert result["a"]["closeup_val"]["exact"]["n"] == 1 and result["b"]["closeup_val"]["exact"]["n"] == 0
    assert result[POOLED]["composite_val"]["exact"]["n"] == 4
    assert result[POOLED]["closeup_val"]["shifted"]["n"] == 1
    table = format_table(result)
    assert "n=  0" in table and POOLED in table


def test_a_draw_without_validation_images_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "images" / "val").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no validation composites"):
        score_draws({"empty": empty}, {"m": _predictor([0, 0, 1, 1], 0.5)})


def test_cli_runs_the_shipped_detector_and_writes_json(tmp_path: Path, capsys) -> None:
    from edgeskin.models import default_detector_path

    model = default_detector_path()
    if not Path(model).is_file():
        pytest.fail(f"the shipped detector is committed: {model}")
    draw = _draw(tmp_path / "d", composites=2, closeups=1)
    out = tmp_path / "draws.json"
    assert main(["--draw", f"d={draw}", "--model", f"shipped={model}", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["d"]["composite_val"]["shipped"]["n"] == 2 and result[POOLED]["closeup_val"]["shipped"]["n"] == 1
    assert "shipped" in capsys.readouterr().out
    assert main(["--draw", f"x={tmp_path / 'nowhere'}", "--model", f"shipped={model}"]) == 2
    with pytest.raises(SystemExit, match="NAME=PATH"):
        main(["--draw", "nowhere", "--model", f"shipped={model}"])
