"""training.detector_data: mask → box, the PH2 loader and split, compositing and YOLO labels."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.detector_data import (
    DatasetConfig,
    box_is_plausible,
    composite_scene,
    ham_to_4x3,
    load_mask_boxes,
    load_ph2,
    mask_to_box,
    scale_mask,
    skin_background,
    split_ph2,
    yolo_line,
)


@pytest.mark.parametrize(
    "rows,cols,expected",
    [
        (slice(10, 20), slice(5, 9), [5, 10, 9, 20]),
        (slice(0, 1), slice(0, 1), [0, 0, 1, 1]),
        (slice(0, 48), slice(0, 64), [0, 0, 64, 48]),
        (slice(47, 48), slice(63, 64), [63, 47, 64, 48]),
    ],
)
def test_mask_to_box_is_tight_and_exclusive(rows: slice, cols: slice, expected: list[int]) -> None:
    mask = np.zeros((48, 64), np.uint8)
    mask[rows, cols] = 255
    assert mask_to_box(mask).tolist() == expected


def test_mask_boxes_from_an_isic_style_folder(tmp_path: Path) -> None:
    first = np.zeros((30, 40), np.uint8)
    first[5:15, 10:30] = 255
    cv2.imwrite(str(tmp_path / "ISIC_0000001_segmentation.png"), first)
    cv2.imwrite(str(tmp_path / "ISIC_0000002_segmentation.png"), np.zeros((30, 40), np.uint8))  # empty: skipped
    cv2.imwrite(str(tmp_path / "unrelated.png"), first)
    boxes = load_mask_boxes(tmp_path)
    assert list(boxes) == ["ISIC_0000001"]
    assert boxes["ISIC_0000001"].tolist() == [10, 5, 30, 15]


def test_yolo_line_normalises_and_clips() -> None:
    assert yolo_line(np.array([10, 20, 30, 60]), 100, 80) == "0 0.200000 0.500000 0.200000 0.500000"
    assert yolo_line(np.array([-5, 0, 50, 90]), 100, 80).split()[1:] == ["0.250000", "0.500000", "0.500000", "1.000000"]


@pytest.mark.parametrize(
    "box,ok",
    [
        ([100, 60, 200, 160], True),  # central, ~15% of the frame
        ([0, 0, 300, 225], False),  # the whole frame
        ([140, 100, 150, 110], False),  # too small
        ([0, 0, 300, 200], False),  # touches three borders
        ([10, 100, 290, 120], False),  # a sliver
        (None, False),
    ],
)
def test_box_plausibility(box, ok: bool) -> None:
    assert box_is_plausible(None if box is None else np.array(box, np.float32), 300, 225) is ok


@pytest.mark.parametrize("factor", [1.0, 1.067, 1.2, 0.9])
def test_scale_mask_scales_the_box_about_its_centre(factor: float) -> None:
    mask = np.zeros((200, 300), bool)
    mask[50:150, 100:200] = True  # box 100 x 100 centred at (150, 100)
    box = mask_to_box(scale_mask(mask, factor, factor))
    assert np.allclose(box, [150 - 50 * factor, 100 - 50 * factor, 150 + 50 * factor, 100 + 50 * factor], atol=1.5)


def test_scale_mask_is_clipped_to_the_image() -> None:
    mask = np.zeros((100, 100), bool)
    mask[0:50, 0:50] = True
    assert mask_to_box(scale_mask(mask, 1.5, 1.5)).tolist()[:2] == [0, 0]


def test_ham_images_are_restored_to_4x3() -> None:
    assert ham_to_4x3(np.zeros((224, 224, 3), np.uint8), 300).shape == (225, 300, 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_composite_box_matches_the_pasted_lesion(seed: int) -> None:
    """The returned box is the box of the lesion pixels that really landed in the scene."""
    rng = np.random.default_rng(seed)
    lesion = np.full((120, 160, 3), 210, np.uint8)  # bright skin
    mask = np.zeros((120, 160), bool)
    cv2.ellipse(mask.view(np.uint8), (80, 60), (30, 20), 0, 0, 360, 1, -1)
    lesion[mask] = (40, 20, 10)  # a dark lesion
    scene = np.full((360, 480, 3), 200, np.uint8)
    out, box = composite_scene(scene, lesion, mask, rng)
    assert box is not None
    dark = out.astype(int).sum(axis=2) < 300
    truth = mask_to_box(dark)
    assert np.abs(box - truth).max() <= 3.0, (box, truth)
    w = box[2] - box[0]
    assert 0.06 * 480 <= w <= 0.5 * 480
    untouched = np.ones((360, 480), bool)  # the scene away from the paste is untouched
    x0, y0, x1, y1 = box.astype(int)
    pad = int(max(x1 - x0, y1 - y0))
    untouched[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad] = False
    assert (out[untouched] == 200).all()


def test_composite_avoids_occupied_boxes() -> None:
    rng = np.random.default_rng(5)
    lesion = np.full((100, 100, 3), 210, np.uint8)
    mask = np.zeros((100, 100), bool)
    mask[40:60, 40:60] = True
    scene = np.full((360, 480, 3), 200, np.uint8)
    occupied = [np.array([0, 0, 240, 360], np.float32)]
    for _ in range(5):
        _, box = composite_scene(scene, lesion, mask, rng, occupied=occupied)
        if box is not None:
            assert box[0] >= 240 - 1e-3


def test_skin_background_is_deterministic_and_sized() -> None:
    a = skin_background(np.random.default_rng(3), (120, 90))
    b = skin_background(np.random.default_rng(3), (120, 90))
    assert a.shape == (90, 120, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)


# --------------------------------------------------------------------------------------- real PH2 data
@pytest.fixture(scope="module")
def ph2_items(shared_dir: Path):
    root = shared_dir / "data" / "ph2"
    if not (root / "labels.csv").is_file():
        pytest.skip(f"needs PH2 in {root}, which is absent")
    return load_ph2(root)


@pytest.mark.shared
def test_ph2_loader(ph2_items) -> None:
    assert len(ph2_items) == 100
    assert {item.diagnosis for item in ph2_items} == {"common_nevus", "atypical_nevus", "melanoma"}
    first = ph2_items[0]
    assert Path(first.image_path).is_file() and first.mask_path.endswith(f"{first.image_id}_segmentation.png")


@pytest.mark.shared
def test_ph2_split_is_deterministic_disjoint_and_stratified(ph2_items) -> None:
    a, b = split_ph2(ph2_items, 50, seed=0), split_ph2(ph2_items, 50, seed=0)
    assert a == b
    assert json.loads(json.dumps(a)) == a  # JSON-serialisable as saved
    assert len(a["val"]) == 50 and len(a["train"]) == 50
    assert not set(a["train"]) & set(a["val"])
    assert set(a["train"]) | set(a["val"]) == {item.image_id for item in ph2_items}
    assert split_ph2(ph2_items, 50, seed=1)["val"] != a["val"]
    dx = {item.image_id: item.diagnosis for item in ph2_items}
    for name in ("common_nevus", "atypical_nevus", "melanoma"):
        total = sum(1 for v in dx.values() if v == name)
        in_val = sum(1 for i in a["val"] if dx[i] == name)
        assert abs(in_val - total / 2) <= 1.5


def test_split_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="n_val"):
        split_ph2([], 5)


def test_dataset_config_defaults_hold_out_half_of_ph2() -> None:
    assert DatasetConfig().ph2_val == 50
