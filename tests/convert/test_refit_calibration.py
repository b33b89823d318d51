"""convert/refit_calibration.py: the shipped classifier's calibration refit writes a valid smooth map and its figures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_logits_step_is_the_output_scale():
    from convert.refit_calibration import logits_step
    from edgeskin.models import default_classifier_path

    path = default_classifier_path()
    assert 0.001 < logits_step(path, "logits") < 1.0


@pytest.mark.shared
def test_refit_writes_a_smooth_map_its_sensitivity_and_the_triage(tmp_path, shared_file):
    """On cached logits for the real validation split (random here, so the figures are not the model's):
    the written spec loads, holds a bounded-slope map, the sensitivity report and a refitted threshold."""
    from convert.refit_calibration import main
    from edgeskin.calibration import check_top_label
    from edgeskin.datasets import apply_split, load_ham10000
    from edgeskin.labels import DX_CLASSES
    from edgeskin.runtime.spec import load_spec

    # A HAM10000 7-dx spec (the former shipped model's record): the refit's use case.
    spec_path = ROOT / "edgeskin/models/edgeskin-mnv2-cls.json"
    data = json.loads(spec_path.read_text())
    run = ROOT / "training/runs/classifier-ham7"
    config = json.loads((run / "config.json").read_text())
    data["labels"] = list(DX_CLASSES)
    data.pop("cam", None)
    data["provenance"] = {"training_config": config, "split_file": str((run / "split.json").relative_to(ROOT))}
    metadata = shared_file("data/ham10000/HAM10000_metadata.csv")
    dataset = load_ham10000(metadata, ROOT / config["images"])
    val = apply_split(dataset, json.loads((run / "split.json").read_text()), "val")
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (len(val), len(data["labels"])))
    logits[np.arange(len(val)), val.labels] += 2.0  # better than chance
    np.savez(tmp_path / "logits.npz", logits=logits, image_ids=np.asarray(val.image_ids))
    shutil.copy(spec_path.with_name(data["model_file"]), tmp_path / data["model_file"])
    data["calibration"] = {"temperature": 1.0}
    (tmp_path / spec_path.name).write_text(json.dumps(data))

    assert main(["--spec", str(tmp_path / spec_path.name), "--logits", str(tmp_path / "logits.npz"), "--write"]) == 0
    spec = load_spec(tmp_path / spec_path.name)
    calibration = spec.calibration
    check_top_label(calibration["top_label"])
    assert calibration["top_label"]["max_slope"] == 2.0
    sensitivity = calibration["logit_step_sensitivity"]
    assert sensitivity["smooth_map_after"]["rows"] == len(val) and sensitivity["smooth_map_after"]["max"] <= 0.05
    assert 0 < spec.to_dict()["triage"]["malignant_threshold"] < 1
    assert spec.to_dict()["provenance"]["calibration_refit"]["command"].startswith(
        "python -m convert.refit_calibration"
    )
    # A cache for other images is refused rather than silently used.
    np.savez(tmp_path / "other.npz", logits=logits, image_ids=np.asarray(["x"] * len(val)))
    with pytest.raises(SystemExit, match="other images"):
        main(["--spec", str(tmp_path / spec_path.name), "--logits", str(tmp_path / "other.npz")])
    # A multi-source spec (no HAM10000 folders in its config) is refused with a clear message.
    data["provenance"]["training_config"] = {"data": "several"}
    (tmp_path / spec_path.name).write_text(json.dumps(data))
    with pytest.raises(SystemExit, match="multi-source model"):
        main(["--spec", str(tmp_path / spec_path.name)])
