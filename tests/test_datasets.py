"""Ground-truth loaders (HAM10000, ISIC 2019, ISIC 2017 Part 3, the multi-source table) and the 8/7-dx views."""

from __future__ import annotations

import numpy as np
import pytest

from edgeskin.datasets import (
    grouped_stratified_split,
    load_isic2017_part3,
    load_isic2019,
    load_labelled_images,
    load_multisource,
    source_holdout,
)
from edgeskin.labels import (
    DX8_CLASSES,
    DX_CLASSES,
    GROUPS,
    is_dx_labels,
    malignant_probability,
    to_dx7,
    to_groups,
)


def _touch_images(folder, ids):
    folder.mkdir(parents=True, exist_ok=True)
    for image_id in ids:
        (folder / f"{image_id}.jpg").write_bytes(b"")


def test_the_8_dx_view_sums_ak_and_scc_into_akiec_and_keeps_groups_and_malignant():
    rng = np.random.default_rng(0)
    p8 = rng.dirichlet(np.ones(8), size=50).astype(np.float32)
    p7 = to_dx7(p8, DX8_CLASSES)
    akiec = DX_CLASSES.index("akiec")
    np.testing.assert_allclose(
        p7[:, akiec], p8[:, DX8_CLASSES.index("ak")] + p8[:, DX8_CLASSES.index("scc")], rtol=1e-6
    )
    np.testing.assert_allclose(p7.sum(1), 1.0, rtol=1e-5)
    # The views computed from 8 classes equal those from the 7-dx view.
    np.testing.assert_allclose(to_groups(p8, DX8_CLASSES), to_groups(p7, DX_CLASSES), rtol=1e-5)
    np.testing.assert_allclose(malignant_probability(p8, DX8_CLASSES), malignant_probability(p7, DX_CLASSES), rtol=1e-5)
    scc = GROUPS.index("SCC")
    np.testing.assert_allclose(to_groups(p8, DX8_CLASSES)[:, scc], p7[:, akiec], rtol=1e-5)


@pytest.mark.parametrize(
    ("labels", "ok"),
    [
        (DX8_CLASSES, True),
        (tuple(reversed(DX8_CLASSES)), True),
        (DX_CLASSES, True),
        (("ak", "scc", "akiec", "bcc", "bkl", "df", "mel", "nv"), False),
        (("mel", "nv"), False),
        (("ak", "ak", "bcc", "bkl", "df", "mel", "nv", "vasc"), False),
    ],
)
def test_dx_label_sets(labels, ok):
    assert is_dx_labels(labels) is ok


def test_isic2019_loader_skips_and_counts_rows_without_image_and_unk(tmp_path):
    csv = tmp_path / "ISIC_2019_Training_GroundTruth.csv"
    csv.write_text(
        "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\n"
        "ISIC_1,0,0,0,1.0,0,0,0,0,0\n"
        "ISIC_2,0,0,0,0,0,0,0,1.0,0\n"
        "ISIC_3,1.0,0,0,0,0,0,0,0,0\n"
        "ISIC_4,0,0,0,0,0,0,0,0,1.0\n"
    )
    (tmp_path / "ISIC_2019_Training_Metadata.csv").write_text(
        "image,age_approx,anatom_site_general,lesion_id,sex\nISIC_1,50,back,L1,male\nISIC_2,50,back,,male\n"
    )
    _touch_images(tmp_path / "images", ["ISIC_1", "ISIC_2", "ISIC_4"])
    data = load_isic2019(csv, tmp_path / "images")
    assert data.image_ids == ("ISIC_1", "ISIC_2")
    assert [DX8_CLASSES[i] for i in data.labels] == ["ak", "scc"]
    assert data.groups == ("L1", "ISIC_2")  # the image id where no lesion id is known
    assert data.missing == 1 and data.extras["unlabelled"] == 1
    assert [DX_CLASSES[i] for i in data.dx7_labels()] == ["akiec", "akiec"]
    # The CLI's format detection picks the same loader.
    assert load_labelled_images(csv, tmp_path / "images").image_ids == data.image_ids


def test_isic2019_loader_refuses_a_row_that_is_not_one_hot(tmp_path):
    csv = tmp_path / "gt.csv"
    csv.write_text("image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\nISIC_1,1.0,1.0,0,0,0,0,0,0,0\n")
    with pytest.raises(ValueError, match="not one-hot"):
        load_isic2019(csv, tmp_path)


def test_isic2017_part3_loader_maps_melanoma_keratosis_and_naevus(tmp_path):
    csv = tmp_path / "ISIC-2017_Training_Part3_GroundTruth.csv"
    csv.write_text(
        "image_id,melanoma,seborrheic_keratosis\nISIC_1,1.0,0.0\nISIC_2,0.0,1.0\nISIC_3,0.0,0.0\nISIC_9,0.0,0.0\n"
    )
    _touch_images(tmp_path / "images", ["ISIC_1", "ISIC_2", "ISIC_3"])
    data = load_labelled_images(csv, tmp_path / "images")
    assert data.classes == DX8_CLASSES and data.missing == 1
    assert [DX8_CLASSES[i] for i in data.labels] == ["mel", "bkl", "nv"]
    assert data is not None and load_isic2017_part3(csv, tmp_path / "images").image_ids == data.image_ids


def test_multisource_table_prefers_isic2019_reports_conflicts_and_unlabelled(tmp_path):
    truth = tmp_path / "truth"
    truth.mkdir()
    (truth / "ISIC_2019_Training_GroundTruth.csv").write_text(
        "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\n"
        "H1,0,0,0,0,0,0,0,1.0,0\n"  # HAM akiec -> scc
        "H2,1.0,0,0,0,0,0,0,0,0\n"  # HAM says nv: a conflict, ISIC 2019 kept
        "I1,1.0,0,0,0,0,0,0,0,0\n"  # 2017 says nv: a conflict
        "Z9,0,1.0,0,0,0,0,0,0,0\n"  # no image anywhere: ignored
    )
    (truth / "ISIC-2017_Training_Part3_GroundTruth.csv").write_text(
        "image_id,melanoma,seborrheic_keratosis\nI1,0.0,0.0\nI2,0.0,1.0\n"
    )
    ham_csv = tmp_path / "HAM10000_metadata.csv"
    ham_csv.write_text(
        "lesion_id,image_id,dx,dx_type,age,sex,localization\n"
        "HAM_1,H1,akiec,histo,50,male,back\nHAM_2,H2,nv,histo,50,male,back\nHAM_2,H3,nv,histo,50,male,back\n"
        "HAM_3,H4,akiec,histo,50,male,back\n"
    )
    _touch_images(tmp_path / "ham", ["H1", "H2", "H3", "H4"])
    _touch_images(tmp_path / "isic", ["I1", "I2", "I3"])
    data = load_multisource(ham_csv, tmp_path / "ham", tmp_path / "isic", truth)
    table = {i: (DX8_CLASSES[label], group, source) for i, label, group, source in
             zip(data.image_ids, data.labels, data.groups, data.image_sources, strict=True)}  # fmt: skip
    assert table == {
        "H1": ("scc", "HAM_1", "ham10000"),
        "H2": ("mel", "HAM_2", "ham10000"),
        "H3": ("nv", "HAM_2", "ham10000"),
        "I1": ("mel", "I1", "isic2017"),
        "I2": ("bkl", "I2", "isic2017"),
    }
    report = data.extras["per_source"]
    assert report["ham10000"]["conflicts"] == 1 and report["ham10000"]["unlabelled"] == 1  # H4: akiec, no 2019 label
    assert report["isic2017"]["conflicts"] == 1 and report["isic2017"]["unlabelled"] == 1  # I3


@pytest.mark.shared
def test_the_real_multisource_table_and_its_splits(shared_file):
    data = load_multisource(
        shared_file("data/ham10000/HAM10000_metadata.csv"),
        shared_file("data/ham10000/images"),
        shared_file("data/isic2018_task1/images"),
        shared_file("data/isic_ground_truth"),
    )
    counts = data.counts()
    assert len(data) == 12038 and counts["ak"] == 130 and counts["scc"] == 197 and counts["mel"] == 1113 + 411
    report = data.extras["per_source"]
    assert report["isic2017"]["unlabelled"] == 571 and report["ham10000"]["conflicts"] == 0
    held = source_holdout(data, "isic2017", 1 / 3, seed=0)
    assert 600 < len(held) < 750 and source_holdout(data, "isic2017", 1 / 3, seed=0) == held
    sources = dict(zip(data.image_ids, data.image_sources, strict=True))
    assert {sources[i] for i in held} == {"isic2017"}
    rest = data.subset([i for i, image_id in enumerate(data.image_ids) if image_id not in set(held)])
    split = grouped_stratified_split(rest, 0.15, seed=0)
    lesions = dict(zip(rest.image_ids, rest.groups, strict=True))
    assert not {lesions[i] for i in split["train"]} & {lesions[i] for i in split["val"]}  # no lesion in both
    val_sources = [sources[i] for i in split["val"]]
    share = val_sources.count("isic2017") / len(val_sources)
    assert 0.08 < share < 0.16  # stratified by source: about its share of the rest (1348 / 11363)


def test_ph2_labels_are_read_as_naevus_and_melanoma(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("image_id,diagnosis\nIMD1,common_nevus\nIMD2,atypical_nevus\nIMD3,melanoma\nIMD4,melanoma\n")
    _touch_images(tmp_path / "images", ["IMD1", "IMD2", "IMD3"])
    data = load_labelled_images(csv, tmp_path / "images")
    assert data.source == "ph2" and data.missing == 1
    assert [DX8_CLASSES[i] for i in data.labels] == ["nv", "nv", "mel"]
    csv.write_text("image_id,diagnosis\nIMD1,blue_nevus\n")
    with pytest.raises(ValueError, match="unknown PH2 diagnosis"):
        load_labelled_images(csv, tmp_path / "images")
