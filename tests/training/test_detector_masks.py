"""training.detector_masks: boxes from masks, close-up crops, hard negatives, held-out slices, the builder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.detector_masks import (
    DrawnItems,
    MaskDatasetConfig,
    MaskedImage,
    box_from_mask,
    build_mask_dataset,
    check_outside_test_split,
    closeup_crop,
    clutter_negative,
    detector_test_ids,
    draw_items,
    heldout_sets,
    isic_labels,
    load_mask_dataset_config,
    negative_crop,
    photo_negative,
    touches_all_borders,
    write_zoomins,
    zoomin_crop,
)


def _disc(height: int = 120, width: int = 160, centre=(80, 60), radius: int = 30) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    cv2.circle(mask, centre, radius, 1, -1)
    return mask > 0


def _image(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# -- box_from_mask ----------------------------------------------------------------------------------------
def test_box_from_mask_is_tight_with_exclusive_end() -> None:
    mask = np.zeros((50, 60), bool)
    mask[10:20, 5:30] = True
    assert box_from_mask(mask).tolist() == [5, 10, 30, 20]


def test_box_from_mask_drops_a_speck_but_keeps_a_real_second_part() -> None:
    mask = np.zeros((100, 100), bool)
    mask[40:60, 40:60] = True  # 400 px lesion
    mask[2, 97] = True  # 1 px speck (< 1 % of the lesion): ignored
    assert box_from_mask(mask).tolist() == [40, 40, 60, 60]
    mask[5:15, 5:15] = True  # 100 px second part (25 %): part of the lesion box
    assert box_from_mask(mask).tolist() == [5, 5, 60, 60]


def test_box_from_mask_empty_and_full() -> None:
    assert box_from_mask(np.zeros((8, 8), bool)) is None
    box = box_from_mask(np.ones((30, 40), bool))
    assert box.tolist() == [0, 0, 40, 30]
    assert touches_all_borders(box, 40, 30)
    assert not touches_all_borders(np.array([0, 0, 40, 25]), 40, 30)


def test_box_from_mask_rejects_a_colour_mask() -> None:
    with pytest.raises(ValueError, match="expected shape"):
        box_from_mask(np.zeros((4, 4, 3), bool))


# -- zoom-ins (issue 29 part 2) ---------------------------------------------------------------------------
def test_zoomin_crop_lets_the_lesion_fill_and_leave_the_frame() -> None:
    mask = _disc(radius=40)
    made = 0
    for seed in range(10):
        out = zoomin_crop(_image(), mask, np.random.default_rng(seed), out_side=96)
        if out is None:
            continue
        made += 1
        crop, crop_mask, box = out
        height, width = crop_mask.shape
        assert crop.shape[:2] == crop_mask.shape and max(crop.shape[:2]) == 96
        touching = sum((box[0] <= 1, box[1] <= 1, box[2] >= width - 1, box[3] >= height - 1))
        assert touching >= 2, f"seed {seed}: box {box} stays inside a {width}x{height} frame"
        assert crop_mask.mean() > 0.6, "the lesion should fill most of the zoom-in"
    assert made >= 5, f"only {made} of 10 draws gave a zoom-in"


def test_write_zoomins_skips_test_split_and_ph2_images(tmp_path: Path) -> None:
    from training.detector_masks import MaskedImage, SampleWriter

    def loaded(image_id: str, source: str):
        return (MaskedImage(image_id, "", "", source), _image(seed=len(image_id)), _disc(radius=40))

    writer = SampleWriter(tmp_path)
    for split in ("images", "labels"):
        (tmp_path / split / "train").mkdir(parents=True)
    sources = [loaded("ISIC_0000001", "ham10000"), loaded("ISIC_0000002", "isic2018"), loaded("IMD002", "ph2")]
    write_zoomins(writer, 6, sources, np.random.default_rng(0), excluded={"ISIC_0000001", "ISIC_0000002"})
    assert writer.counts == {}, "only excluded or PH2 sources: no zoom-in may be written"
    write_zoomins(writer, 6, sources, np.random.default_rng(0), excluded={"ISIC_0000001"})
    assert writer.counts.get("zoomin_train", 0) >= 1
    assert len(list((tmp_path / "labels" / "train").glob("zoom_train_*.txt"))) == writer.counts["zoomin_train"]


# -- closeup_crop -----------------------------------------------------------------------------------------
def test_closeup_lesion_fills_most_of_the_frame_and_box_matches_mask() -> None:
    image, mask = _image(), _disc()
    rng = np.random.default_rng(1)
    fills, border_touching = [], 0
    for _ in range(40):
        crop, crop_mask, box = closeup_crop(image, mask, rng, out_side=96)
        assert crop.shape[:2] == crop_mask.shape
        assert max(crop.shape[:2]) == 96
        assert box.tolist() == box_from_mask(crop_mask).tolist()
        h, w = crop_mask.shape
        fills.append(float((box[2] - box[0]) * (box[3] - box[1])) / (w * h))
        border_touching += touches_all_borders(box, w, h)
    assert min(fills) >= 0.45
    assert np.median(fills) > 0.6
    assert border_touching > 0  # zoom < 1: the lesion is cut by every border, a normal training answer


def test_closeup_crop_content_is_the_image_region() -> None:
    # A horizontal ramp: the crop's columns must stay increasing (no flip, no foreign pixels).
    ramp = np.tile(np.linspace(0, 255, 160, dtype=np.uint8)[None, :, None], (120, 1, 3))
    crop, _, _ = closeup_crop(ramp, _disc(), np.random.default_rng(0), zoom=(1.2, 1.2), jitter=0.0, out_side=64)
    row = crop[crop.shape[0] // 2, :, 0].astype(int)
    assert np.all(np.diff(row) >= 0)


def test_closeup_of_empty_mask_is_none() -> None:
    assert closeup_crop(_image(), np.zeros((120, 160), bool), np.random.default_rng(0)) is None


def test_closeup_needs_a_big_enough_lesion_share() -> None:
    # A lesion that already fills the frame cannot be zoomed out: crops are the whole frame, full fill.
    mask = np.ones((60, 80), bool)
    crop, _, box = closeup_crop(_image(60, 80), mask, np.random.default_rng(0), out_side=80)
    assert touches_all_borders(box, crop.shape[1], crop.shape[0])
    # min_fill above any reachable fill: refused.
    assert closeup_crop(_image(), _disc(radius=10), np.random.default_rng(0), zoom=(3.0, 3.0), min_fill=0.9) is None


# -- negatives --------------------------------------------------------------------------------------------
def test_negative_crop_never_contains_the_lesion() -> None:
    height, width = 120, 160
    image = np.full((height, width, 3), 200, np.uint8)
    mask = _disc(radius=25)
    image[mask] = 0  # the lesion is black, everything else light
    rng = np.random.default_rng(3)
    made = 0
    for _ in range(30):
        crop = negative_crop(image, mask, rng, out_side=64)
        if crop is not None:
            made += 1
            assert crop.min() > 150
            assert max(crop.shape[:2]) == 64
    assert made > 10


def test_negative_crop_none_when_the_lesion_is_everywhere() -> None:
    assert negative_crop(_image(), np.ones((120, 160), bool), np.random.default_rng(0)) is None


def test_photo_and_clutter_negatives_shape() -> None:
    rng = np.random.default_rng(0)
    photo = photo_negative(_image(200, 300), rng, out_side=128)
    assert photo.dtype == np.uint8 and max(photo.shape[:2]) == 128
    clutter = clutter_negative(rng, (96, 64))
    assert clutter.shape == (64, 96, 3) and clutter.dtype == np.uint8


# -- labels and config ------------------------------------------------------------------------------------
def test_isic_labels_prefer_2019_ground_truth(tmp_path: Path) -> None:
    with (tmp_path / "ISIC-2017_Training_Part3_GroundTruth.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "melanoma", "seborrheic_keratosis"])
        writer.writerows([["ISIC_1", "1.0", "0.0"], ["ISIC_2", "0.0", "1.0"], ["ISIC_3", "0.0", "0.0"]])
    with (tmp_path / "ISIC_2019_Training_GroundTruth.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"])
        writer.writerow(["ISIC_3", 0, 0, 1, 0, 0, 0, 0, 0, 0])
    assert isic_labels(tmp_path) == {"ISIC_1": "mel", "ISIC_2": "bkl", "ISIC_3": "bcc"}


def test_config_rejects_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  recipe: masks\n  ham_train: 3\n")
    assert load_mask_dataset_config(path).ham_train == 3
    path.write_text("data:\n  hamtrain: 3\n")
    with pytest.raises(ValueError, match="unknown data option 'hamtrain'"):
        load_mask_dataset_config(path)


# -- the builder on a tiny fake data tree -----------------------------------------------------------------
def _write_pair(images: Path, masks: Path, image_id: str, rng: np.random.Generator, size=(64, 64)) -> None:
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    image = np.full((size[1], size[0], 3), 190, np.uint8)
    mask = np.zeros((size[1], size[0]), np.uint8)
    centre = (int(rng.integers(20, size[0] - 20)), int(rng.integers(20, size[1] - 20)))
    cv2.circle(mask, centre, int(rng.integers(8, 16)), 255, -1)
    image[mask > 0] = (90, 60, 40)
    cv2.imwrite(str(images / f"{image_id}.jpg"), image)
    cv2.imwrite(str(masks / f"{image_id}_segmentation.png"), mask)


def _fake_data_tree(tmp_path: Path, monkeypatch) -> tuple[Path, list[str], list[str], list[str]]:
    """12 HAM images (2 per lesion; every third mel), 9 ISIC, 6 PH2, with masks; held-out records patched in."""
    import training.detector_masks as dm

    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    ham_ids = [f"ISIC_{i:07d}" for i in range(12)]
    for image_id in ham_ids:
        _write_pair(root / "ham10000" / "images", root / "ham10000" / "masks", image_id, rng)
    with (root / "ham10000" / "HAM10000_metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["lesion_id", "image_id", "dx"])
        for k, image_id in enumerate(ham_ids):
            writer.writerow([f"HAM_{k // 2}", image_id, "mel" if k % 3 == 0 else "nv"])  # 2 images per lesion
    isic_ids = [f"ISIC_{i:07d}" for i in range(100, 109)]
    for image_id in isic_ids:
        _write_pair(root / "isic2018_task1" / "images", root / "isic2018_task1" / "masks", image_id, rng)
    (root / "isic_ground_truth").mkdir()
    ph2_ids = [f"IMD{i:03d}" for i in range(6)]
    for image_id in ph2_ids:
        _write_pair(root / "ph2" / "images", root / "ph2" / "masks", image_id, rng, size=(96, 72))
    with (root / "ph2" / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "diagnosis"])
        writer.writerows([[i, "melanoma"] for i in ph2_ids])
    ph2_split = tmp_path / "ph2_split.json"
    ph2_split.write_text(json.dumps({"seed": 0, "train": ph2_ids[:3], "val": ph2_ids[3:]}))
    holdout = tmp_path / "isic_holdout.json"
    holdout.write_text(json.dumps({"heldout": isic_ids[:3], "ham_val": [ham_ids[0]]}))
    monkeypatch.setattr(dm, "ISIC_HOLDOUT", holdout)
    monkeypatch.setattr(dm, "REPO_ROOT", tmp_path / "repo")
    (tmp_path / "repo" / "training" / "runs" / "detector").mkdir(parents=True)
    (tmp_path / "repo" / "training" / "runs" / "detector" / "ph2_split.json").write_text(ph2_split.read_text())
    monkeypatch.setattr(dm, "_photos", lambda: [np.full((50, 80, 3), 30, np.uint8)])
    return root, ham_ids, isic_ids, ph2_ids


def _tiny_config(root: Path, **changes) -> MaskDatasetConfig:
    """A dataset config for the fake tree: nothing of a kind unless ``changes`` asks for it."""
    nothing = dict.fromkeys(
        ("isic_train", "closeups_train", "composites_train", "neg_skin_train", "neg_scene_train", "neg_photo_train",
         "neg_clutter_train", "isic_val", "closeups_val", "composites_val", "negatives_val"),
        0,
    )  # fmt: skip
    base = dict(data_root=str(root), ham_train=20, ham_val=5, ph2_copies=1, ham_width=64, scene_size=(96, 72))
    return MaskDatasetConfig(**{**nothing, **base, **changes})


def test_build_mask_dataset_keeps_held_out_images_out(tmp_path: Path, monkeypatch) -> None:
    root, ham_ids, isic_ids, ph2_ids = _fake_data_tree(tmp_path, monkeypatch)
    config = _tiny_config(
        root, isic_train=20, ph2_copies=2, closeups_train=5, composites_train=3, neg_skin_train=3, neg_scene_train=1,
        neg_photo_train=1, neg_clutter_train=1, isic_val=5, closeups_val=2, composites_val=2, negatives_val=4,
    )  # fmt: skip
    manifest = build_mask_dataset(tmp_path / "out", config, progress=False)

    train = {p.stem for p in (tmp_path / "out" / "images" / "train").glob("*.jpg")}
    # ham_ids[0] and ham_ids[1] share a lesion: both out of training; the ISIC held-out third too; PH2 val too.
    for image_id in [ham_ids[0], ham_ids[1], *isic_ids[:3]]:
        assert f"ham_{image_id}" not in train and f"isic_{image_id}" not in train
    assert not any(name.startswith(tuple(f"ph2_{i}" for i in ph2_ids[3:])) for name in train)
    assert f"ham_{ham_ids[2]}" in train and f"isic_{isic_ids[3]}" in train
    val = {p.stem for p in (tmp_path / "out" / "images" / "val").glob("*.jpg")}
    assert f"ham_{ham_ids[0]}" in val
    assert manifest["heldout_sizes"] == {"ph2_val": 3, "isic_heldout": 3, "ham_val": 1}
    # Every image has a label file; negatives' are empty, the others hold one valid box per lesion.
    for split in ("train", "val"):
        for image in (tmp_path / "out" / "images" / split).glob("*.jpg"):
            lines = (tmp_path / "out" / "labels" / split / f"{image.stem}.txt").read_text().split("\n")
            lines = [line for line in lines if line]
            if image.stem.startswith("neg_"):
                assert lines == []
            else:
                assert lines
                for line in lines:
                    values = [float(v) for v in line.split()]
                    assert values[0] == 0 and all(0.0 <= v <= 1.0 for v in values[1:]) and values[3] > 0
    assert manifest["counts"]["closeup_train"] == 5
    assert manifest["counts"]["neg_photo_train"] == 1


def test_zoomins_come_last_and_never_from_the_test_split(tmp_path: Path, monkeypatch) -> None:
    import training.detector_masks as masks

    root, ham_ids, isic_ids, _ = _fake_data_tree(tmp_path, monkeypatch)
    options = dict(isic_train=20, ph2_copies=1, closeups_train=2, composites_train=0, isic_val=2, negatives_val=0)
    monkeypatch.setattr(masks, "TEST_SPLIT", tmp_path / "absent.json")
    plain = build_mask_dataset(tmp_path / "plain", _tiny_config(root, **options), progress=False)
    zoomed = build_mask_dataset(tmp_path / "zoomed", _tiny_config(root, **options, zoomins_train=4), progress=False)
    assert zoomed["counts"].pop("zoomin_train") == 4
    assert zoomed["counts"] == plain["counts"]
    for image in (tmp_path / "plain" / "images" / "train").glob("*.jpg"):  # the zoom-ins draw after everything else
        assert (tmp_path / "zoomed" / "images" / "train" / image.name).read_bytes() == image.read_bytes()
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"ids": {"ham10000": ham_ids, "isic2018": isic_ids}}))
    monkeypatch.setattr(masks, "TEST_SPLIT", split)
    with pytest.raises(ValueError, match="detector test split"):  # the recipe's own draws would touch it
        build_mask_dataset(tmp_path / "none", _tiny_config(root, **options, zoomins_train=4), progress=False)


def test_extra_isic_images_skip_picks_and_test_split_and_leave_other_draws_alone(tmp_path: Path, monkeypatch) -> None:
    import training.detector_masks as masks

    root, _, isic_ids, _ = _fake_data_tree(tmp_path, monkeypatch)
    monkeypatch.setattr(masks, "TEST_SPLIT", tmp_path / "absent.json")
    sets = heldout_sets(_tiny_config(root), tmp_path / "ph2_split.json", masks.ISIC_HOLDOUT)
    plain_rng, extra_rng = np.random.default_rng(0), np.random.default_rng(0)
    plain = draw_items(sets, _tiny_config(root, isic_train=2, isic_val=2), plain_rng)
    picked = {it.image_id for it in plain.isic_train}
    in_split = [i for i in isic_ids[3:] if i not in picked][:2]  # two training-pool images the picks left
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"ids": {"isic2018": in_split}}))
    monkeypatch.setattr(masks, "TEST_SPLIT", split)
    extra = draw_items(sets, _tiny_config(root, isic_train=2, isic_val=2, isic_extra_train=50), extra_rng)
    assert plain_rng.integers(1 << 30) == extra_rng.integers(1 << 30)  # the recipe's generator drew the same
    assert extra.isic_train[:2] == plain.isic_train and extra[2:] == plain[2:] and extra.ham_train == plain.ham_train
    ids = [it.image_id for it in extra.isic_train]
    assert len(ids) == len(set(ids)) == 4  # the 6-image pool less the split's 2, each once
    assert not set(ids) & (set(isic_ids[:3]) | set(in_split))  # neither the held-out third nor the split


@pytest.mark.parametrize("slice_index", range(5))
def test_a_recipe_drawing_test_split_images_is_refused(slice_index: int) -> None:
    items = [MaskedImage(f"img{i}", "", "", "ham10000") for i in range(5)]
    drawn = DrawnItems(*([item] if i == slice_index else [] for i, item in enumerate(items)))
    check_outside_test_split(drawn, {"unrelated"})  # outside the split: accepted
    with pytest.raises(ValueError, match=f"1 image.*img{slice_index}"):
        check_outside_test_split(drawn, {f"img{slice_index}"})


def test_the_recorded_split_is_the_default_guard() -> None:
    drawn = DrawnItems([MaskedImage(sorted(detector_test_ids())[0], "", "", "ham10000")], [], [], [], [])
    with pytest.raises(ValueError, match="detector test split"):
        check_outside_test_split(drawn)


def test_ham_boost_adds_training_images_of_the_chosen_diagnoses_only(tmp_path: Path, monkeypatch) -> None:
    root, ham_ids, _, _ = _fake_data_tree(tmp_path, monkeypatch)
    config = _tiny_config(root, ham_train=2, ham_boost_train=50, ham_boost_dx=("mel",), ham_val=1)
    manifest = build_mask_dataset(tmp_path / "out", config, progress=False)
    train = {p.stem.removeprefix("ham_") for p in (tmp_path / "out" / "images" / "train").glob("ham_*.jpg")}
    melanomas = {image_id for k, image_id in enumerate(ham_ids) if k % 3 == 0}
    held_out = set(ham_ids[:2])  # the validation lesion's two images
    # The 2 random picks, plus every melanoma of the training pool (not twice, never a held-out lesion).
    assert melanomas - held_out <= train
    assert len(train - melanomas) <= 2
    assert manifest["counts"]["ham_train"] == len(train) > len(melanomas - held_out)  # each written once
    assert not train & held_out


def test_real_skin_scenes_come_only_from_images_with_a_small_lesion(tmp_path: Path, monkeypatch) -> None:
    from training.detector_data import inpaint_hole
    from training.detector_masks import MaskedImage, read_pair

    root, ham_ids, _, _ = _fake_data_tree(tmp_path, monkeypatch)
    folder = root / "ham10000"
    shares = {}
    for i in ham_ids:  # the masks as the builder reads them (HAM images back to 4:3 at ham_width)
        item = MaskedImage(
            i, str(folder / "images" / f"{i}.jpg"), str(folder / "masks" / f"{i}_segmentation.png"), "ham10000"
        )
        shares[i] = float(inpaint_hole(read_pair(item, 64)[1]).mean())
    training_pool = ham_ids[2:]  # ham_ids[:2] are the validation lesion's images
    assert 0 < sum(shares[i] <= 0.3 for i in training_pool) < len(training_pool)  # the fake tree has both kinds
    counts = {}
    for limit in (0.3, 1.0):
        config = _tiny_config(
            root, composites_train=4, neg_scene_train=2, composites_val=2, background_lesion_share_max=limit
        )
        counts[limit] = build_mask_dataset(tmp_path / f"out{limit}", config, progress=False)["counts"]
    assert counts[0.3]["real_backgrounds_train"] == sum(shares[i] <= 0.3 for i in training_pool)
    assert counts[1.0]["real_backgrounds_train"] == len(training_pool)
    assert (
        counts[0.3]["real_backgrounds_val"] == (shares[ham_ids[0]] <= 0.3) and counts[1.0]["real_backgrounds_val"] == 1
    )
    for limit in (0.3, 1.0):  # scenes are made either way (plain skin when no real one is fit)
        assert counts[limit]["composite_train"] >= 1 and counts[limit]["neg_scene_train"] == 2


def test_real_skin_scene_with_no_fit_background_is_plain_skin(tmp_path: Path, monkeypatch) -> None:
    root, _, _, _ = _fake_data_tree(tmp_path, monkeypatch)
    config = _tiny_config(
        root, composites_train=3, neg_scene_train=1, composites_val=1, negatives_val=4, background_lesion_share_max=0.0
    )
    counts = build_mask_dataset(tmp_path / "out", config, progress=False)["counts"]
    assert counts["real_backgrounds_train"] == counts["real_backgrounds_val"] == 0
    assert counts["composite_train"] >= 1 and counts["neg_scene_train"] == 1


def test_ph2_skin_negatives_come_from_the_training_half_only(tmp_path: Path, monkeypatch) -> None:
    import training.detector_masks as dm

    root, _, _, ph2_ids = _fake_data_tree(tmp_path, monkeypatch)
    for image_id in ph2_ids[3:]:  # the validation half gets a skin colour of its own, to tell its crops apart
        path = root / "ph2" / "images" / f"{image_id}.jpg"
        image = cv2.imread(str(path))
        image[image[..., 0] > 150] = (40, 200, 40)
        cv2.imwrite(str(path), image)
    cut_from = []
    real_crop = dm.negative_crop

    def spy(image, mask, rng, **kwargs):
        crop = real_crop(image, mask, rng, **kwargs)
        cut_from.append((image.shape, None if crop is None else crop.reshape(-1, 3).mean(0)))
        return crop

    monkeypatch.setattr(dm, "negative_crop", spy)
    manifest = build_mask_dataset(tmp_path / "out", _tiny_config(root, neg_skin_ph2_train=6), progress=False)
    assert manifest["counts"]["neg_skin_ph2_train"] == 6
    made = sorted((tmp_path / "out" / "labels" / "train").glob("neg_train_ph2skin*.txt"))
    assert len(made) == 6 and all(p.read_text() == "" for p in made)
    # Every crop was cut from a PH2 image (96x72 scaled to ph2_side; HAM images here are 64x48), and none from
    # the validation half (its skin is green).
    assert cut_from and all(shape[1] > 64 for shape, _ in cut_from)
    means = [mean for _, mean in cut_from if mean is not None]
    assert len(means) == 6 and all(mean[1] < 1.5 * mean[0] for mean in means)
    # The validation half never enters the training split, as an image or as a skin crop.
    train = {p.stem for p in (tmp_path / "out" / "images" / "train").glob("ph2_*.jpg")}
    assert train == {f"ph2_{i}" for i in ph2_ids[:3]}
    assert (
        build_mask_dataset(tmp_path / "none", _tiny_config(root), progress=False)["counts"].get("neg_skin_ph2_train", 0)
        == 0
    )
