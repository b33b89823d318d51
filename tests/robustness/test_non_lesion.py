"""Non-lesions: everyday photos and plain skin must give "no lesion found" and no diagnosis.

The frames come from the seeded generator of ``benchmarks/non_lesion_fpr.py`` (PH2 skin crops outside the
expert mask, and the four ``../shared/data/non_lesion`` photos with random crops, flips, scales and
brightness). The benchmark measures the false-positive rate on its full set (about 160 frames); here a
subset of 20 runs against a bound chosen from that measurement.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeskin.labels import DX_CLASSES
from edgeskin.results import RETAKE_ADVICE, Classification
from edgeskin.tasks.detector import ClassicalDetector
from edgeskin.tasks.pipeline import NO_LESION_FOUND, NOT_SKIN, LesionPipeline

PHOTOS = ("panda.jpg", "cat.bmp", "bird.bmp", "grace_hopper.bmp")

# Bound on the 20-frame subset (4 photos, 8 augmented photos, 8 PH2-val skin crops) for the shipped models.
# benchmarks/non_lesion_fpr.py with the shipped detector at its presence threshold (0.45): 1 of the 84 natural
# frames of the full 160-frame set has a lesion reported (docs/robustness.md), and 0 of the 12 of this subset (the
# in-graph export of the same weights at 0.46: 0 of 12 too).
# The bound allows one of the 12 (the earlier detectors, at 0.6, had 2 of 12).
MAX_FP_NATURAL_SHIPPED = 1 / 12


class UniformClassifier:
    labels = DX_CLASSES
    spec = None

    def classify(self, image):
        return Classification(np.full(7, 1 / 7, np.float32), self.labels)

    def close(self):
        pass


def assert_no_lesion(result, what: str, reasons: tuple[str, ...] = (NO_LESION_FOUND,)) -> None:
    """No lesion and no diagnosis, and one of ``reasons`` says why."""
    assert result.lesions == (), f"{what}: {len(result.lesions)} lesion(s), top score {result.lesions[0].score:.2f}"
    assert len(result.messages) == 1 and result.messages[0] in reasons, result.messages


def plain_skin(seed: int, size=(480, 640)) -> np.ndarray:
    """Synthetic plain skin: a skin tone with smooth blotches and sensor noise, no dark spot."""
    import cv2

    rng = np.random.default_rng(seed)
    tone = rng.uniform([180, 130, 105], [240, 205, 185])
    blotch = cv2.GaussianBlur(rng.normal(0, 1, size).astype(np.float32), (0, 0), 10)
    blotch *= 6 / max(float(blotch.std()), 1e-6)
    frame = tone + blotch[..., None] + rng.normal(0, 3, (*size, 3))
    return np.clip(frame, 0, 255).astype(np.uint8)


# -- without models: the classical fallback ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_plain_synthetic_skin_has_no_lesion_with_the_classical_detector(seed):
    pipeline = LesionPipeline(UniformClassifier(), ClassicalDetector(), cam=False)
    assert_no_lesion(pipeline(plain_skin(seed)), f"synthetic skin {seed}")


@pytest.mark.shared
@pytest.mark.parametrize("name", PHOTOS)
def test_the_everyday_photos_have_no_lesion_with_the_classical_detector(shared_file, name):
    from edgeskin.image import read_image

    pipeline = LesionPipeline(UniformClassifier(), ClassicalDetector(), cam=False)
    assert_no_lesion(pipeline(read_image(shared_file(f"data/non_lesion/{name}"))), name)


# -- the frame generator ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def subset(non_lesion_benchmark, shared_dir):
    """20 seeded frames: the 4 photos, 2 augmented views of each, and skin crops of 8 PH2 validation images."""
    data = shared_dir / "data"
    if not (data / "ph2" / "masks").is_dir() or not (data / "non_lesion").is_dir():
        pytest.skip(f"needs {data}/ph2 and {data}/non_lesion")
    split = non_lesion_benchmark.ph2_split()
    frames = list(
        non_lesion_benchmark.generate_frames(
            data, seed=1, augmented_per_photo=2, ph2_ids={"val": split["val"][:12], "train": []}
        )
    )
    skin = [f for f in frames if f.source.startswith("skin")][:8]
    natural = [f for f in frames if f.source.startswith("natural")]
    return skin + natural


@pytest.mark.shared
def test_the_generator_is_seeded_and_gives_the_expected_sources(subset, non_lesion_benchmark, shared_dir):
    assert len(subset) == 20
    assert [f.source for f in subset].count("natural (original)") == 4
    assert [f.source for f in subset].count("natural (augmented)") == 8
    assert [f.source for f in subset].count("skin (PH2 val)") == 8
    again = list(
        non_lesion_benchmark.generate_frames(
            shared_dir / "data", seed=1, augmented_per_photo=2, ph2_ids={"val": ["IMD002"], "train": []}
        )
    )
    first = subset[0]
    assert again[0].name == first.name and np.array_equal(again[0].pixels, first.pixels)
    for frame in subset:
        assert frame.pixels.dtype == np.uint8 and frame.pixels.ndim == 3 and min(frame.pixels.shape[:2]) >= 32


def test_skin_crops_avoid_the_dilated_lesion_mask(non_lesion_benchmark):
    """On a synthetic 'dermoscopy' image with a dark lesion, no crop holds a lesion pixel or its margin."""
    rng = np.random.default_rng(0)
    image = np.empty((480, 640, 3), np.uint8)
    image[:] = (220, 180, 160)
    lesion = np.zeros((480, 640), bool)
    yy, xx = np.mgrid[:480, :640]
    lesion[(yy - 240) ** 2 + (xx - 250) ** 2 < 90**2] = True
    image[lesion] = (60, 40, 30)
    margin = np.hypot(*lesion.shape) * 0.05
    crops = non_lesion_benchmark.skin_crops(image, lesion, 5, rng, size=(160, 120))
    assert len(crops) == 5
    for crop in crops:
        assert crop.shape == (120, 160, 3) and crop.min() >= 150  # no dark lesion pixel, even resampled
    allowed = non_lesion_benchmark.skin_region(image, lesion)
    distance_to_lesion = np.hypot(yy - 240, xx - 250) - 90
    assert distance_to_lesion[allowed].min() >= margin - 2


def test_the_benchmark_summary_counts_false_positives(non_lesion_benchmark):
    records = [
        {"source": "skin (PH2 val)", "lesions": 1},
        {"source": "skin (PH2 val)", "lesions": 0},
        {"source": "natural (original)", "lesions": 0},
        {"source": "natural (augmented)", "lesions": 2},
    ]
    table = non_lesion_benchmark.summarise(records)
    assert table["overall"] == {"frames": 4, "false_positives": 2, "fp_rate": 0.5}
    assert table["skin (PH2 val)"]["fp_rate"] == 0.5 and table["natural (all)"]["false_positives"] == 1
    assert "skin (PH2 train)" not in table


# -- the shipped models ------------------------------------------------------------------------------------------


@pytest.fixture
def shipped_acceptance(shipped_models_dir) -> None:
    """The shipped models (the fixture fails when they are missing). Their detector reports a lesion at or above
    its spec's ``thresholds.presence`` (0.44, calibrated by benchmarks/detector_presence.py); below it, down to
    ``thresholds.unsure`` (0.13), the best box is answered only when the frame looks like skin and the box stands
    out from it (edgeskin.core.evidence; figures in benchmarks/unsure_band.py and DETECTOR_CARD.md)."""


# What the shipped pipeline says about each photo: the cat's best box (0.17) is in the unsure band, and the frame
# is a scene, not skin (issue 29: lowering the presence threshold answered it "melanoma, refer"); the others have
# no box at the unsure floor.
PHOTO_REASONS = {"panda.jpg": NO_LESION_FOUND, "cat.bmp": NOT_SKIN, "bird.bmp": NO_LESION_FOUND,
                 "grace_hopper.bmp": NO_LESION_FOUND}  # fmt: skip


@pytest.mark.shared
@pytest.mark.parametrize("name", PHOTOS)
def test_the_shipped_pipeline_finds_no_lesion_in_the_everyday_photos(shipped_acceptance, shared_file, name):
    from edgeskin.image import read_image

    with LesionPipeline.from_defaults(threads=1, cam=False) as pipeline:
        assert_no_lesion(pipeline(read_image(shared_file(f"data/non_lesion/{name}"))), name, (PHOTO_REASONS[name],))


@pytest.mark.shared
def test_predict_on_the_panda_reports_no_lesion_and_no_diagnosis(edgeskin_cli, shipped_acceptance, shared_file):
    panda = shared_file("data/non_lesion/panda.jpg")
    proc = edgeskin_cli("predict", panda)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{panda} (696x613): {NO_LESION_FOUND}"
    assert lines[1] == f"  {RETAKE_ADVICE[NO_LESION_FOUND]}"
    assert lines[2].startswith("  timings ms: ") and len(lines) == 4  # then the "not a diagnosis" notice
    for word in ("#1", "box [", "REFER", "group ", *DX_CLASSES):
        assert word not in "\n".join(lines[:3]), word


@pytest.mark.shared
def test_the_shipped_pipeline_false_positive_rate_on_a_subset(shipped_acceptance, subset, non_lesion_benchmark):
    with LesionPipeline.from_defaults(threads=1, cam=False) as pipeline:
        records = non_lesion_benchmark.measure(pipeline, subset)
    table = non_lesion_benchmark.summarise(records)
    natural = table["natural (all)"]
    assert natural["fp_rate"] <= MAX_FP_NATURAL_SHIPPED, table
    for record in records:  # a false positive still carries no diagnosis when nothing was reported
        assert (record["lesions"] == 0) == bool(record["messages"] and record["messages"][0] in RETAKE_ADVICE)
