"""Class views of the product: the 8 ISIC 2019 diagnoses, the 7 HAM10000 diagnoses and the 4 clinical groups.

The shipped classifier predicts the 8 ISIC 2019 diagnoses (``DX8_CLASSES``): HAM10000's ``akiec`` is split into
actinic keratosis (``ak``) and squamous cell carcinoma incl. intraepithelial carcinoma (``scc``). The 7-dx view
(``DX_CLASSES``, HAM10000 / ISIC 2018 Task 3) sums ``ak + scc = akiec``, so ISIC 2018 ground truth still scores.
Models over the 7 classes keep working everywhere: every function here takes the model's own label list.

A group's probability is the sum of the probabilities of its diagnoses: Melanoma (mel), BCC (bcc), SCC (the
keratinocyte lineage: scc + ak, or akiec) and Benign (the rest). Malignant = mel + bcc + scc + ak (= akiec).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np

DX_CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
# The ISIC 2019 diagnoses without UNK, in alphabetical order (the shipped classifier's output order).
DX8_CLASSES: tuple[str, ...] = ("ak", "bcc", "bkl", "df", "mel", "nv", "scc", "vasc")
# Where each 8-class diagnosis goes in the 7-dx view.
DX8_TO_DX7: Mapping[str, str] = {"ak": "akiec", "scc": "akiec"} | {dx: dx for dx in DX_CLASSES if dx != "akiec"}
DX_NAMES: Mapping[str, str] = {
    "akiec": "Actinic keratosis / intraepithelial carcinoma",
    "ak": "Actinic keratosis",
    "scc": "Squamous cell carcinoma",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis-like lesion",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevus",
    "vasc": "Vascular lesion",
}
GROUPS: tuple[str, ...] = ("Melanoma", "BCC", "SCC", "Benign")
DX_TO_GROUP: Mapping[str, str] = {
    "mel": "Melanoma",
    "bcc": "BCC",
    "akiec": "SCC",
    "ak": "SCC",
    "scc": "SCC",
    "bkl": "Benign",
    "df": "Benign",
    "nv": "Benign",
    "vasc": "Benign",
}
MALIGNANT_DX: tuple[str, ...] = ("ak", "akiec", "bcc", "mel", "scc")
# Column order of the ISIC 2018 Task 3 ground-truth CSV.
ISIC2018_COLUMNS: tuple[str, ...] = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
# Column order of the ISIC 2019 training ground-truth CSV (UNK: no diagnosis).
ISIC2019_COLUMNS: tuple[str, ...] = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
# The label sets a dermoscopy classifier may have (any order).
DX_LABEL_SETS: tuple[frozenset[str], ...] = (frozenset(DX_CLASSES), frozenset(DX8_CLASSES))


def is_dx_labels(labels: Sequence[str]) -> bool:
    """True when ``labels`` are the 7 HAM10000 or the 8 ISIC 2019 diagnoses (in any order)."""
    return len(labels) == len(set(labels)) and frozenset(labels) in DX_LABEL_SETS


def dx7_matrix(dx_labels: Sequence[str]) -> np.ndarray:
    """The (n_dx, 7) 0/1 matrix that sums a model's dx probabilities into the 7-dx view (``DX_CLASSES`` order)."""
    matrix = np.zeros((len(dx_labels), len(DX_CLASSES)), dtype=np.float32)
    for i, dx in enumerate(dx_labels):
        if dx not in DX8_TO_DX7 and dx != "akiec":
            raise ValueError(f"unknown diagnosis {dx!r}; expected labels from {DX8_CLASSES} or {DX_CLASSES}")
        matrix[i, DX_CLASSES.index(DX8_TO_DX7.get(dx, dx))] = 1.0
    return matrix


def to_dx7(dx_probabilities: np.ndarray, dx_labels: Sequence[str]) -> np.ndarray:
    """Probabilities (..., n_dx) in the model's label order → the 7-dx view (..., 7) in ``DX_CLASSES`` order."""
    probs = np.asarray(dx_probabilities, dtype=np.float32)
    if probs.shape[-1] != len(dx_labels):
        raise ValueError(f"expected {len(dx_labels)} dx probabilities in the last axis, got shape {probs.shape}")
    return probs @ dx7_matrix(dx_labels)


def group_matrix(dx_classes: Sequence[str] = DX_CLASSES) -> np.ndarray:
    """Return the (n_dx, n_groups) 0/1 matrix that sums dx probabilities into group probabilities."""
    matrix = np.zeros((len(dx_classes), len(GROUPS)), dtype=np.float32)
    for i, dx in enumerate(dx_classes):
        matrix[i, GROUPS.index(DX_TO_GROUP[dx])] = 1.0
    return matrix


def to_groups(dx_probabilities: np.ndarray, dx_classes: Sequence[str] = DX_CLASSES) -> np.ndarray:
    """Sum dx probabilities (..., n_dx) into group probabilities (..., 4) in the order of ``GROUPS``."""
    probs = np.asarray(dx_probabilities, dtype=np.float32)
    if probs.shape[-1] != len(dx_classes):
        raise ValueError(f"expected {len(dx_classes)} dx probabilities in the last axis, got shape {probs.shape}")
    # Sums of the members, not a matrix product: BLAS sums in an ISA-specific order, which can change the
    # last bit between x86 and aarch64 (issue 13); numpy's sum over a few elements runs in index order.
    groups = _group_members(tuple(dx_classes))
    out = np.empty((*probs.shape[:-1], len(groups)), np.float32)
    for g, members in enumerate(groups):  # sum == add.reduce, written straight into its column
        out[..., g] = np.add.reduce(probs[..., members], axis=-1)
    return out


@functools.lru_cache(maxsize=16)
def _group_members(dx_classes: tuple[str, ...]) -> tuple[np.ndarray, ...]:
    """Per group of ``GROUPS``, the (ascending) positions of its diagnoses in ``dx_classes``: built once per label
    list, not per lesion."""
    members = group_matrix(dx_classes) > 0
    index = tuple(np.flatnonzero(members[:, g]) for g in range(members.shape[1]))
    for positions in index:
        positions.setflags(write=False)
    return index


def malignant_index(dx_classes: Sequence[str]) -> list[int]:
    """Positions of the malignant diagnoses (mel, bcc and akiec, or ak and scc) in a label list."""
    return list(_malignant_index(tuple(dx_classes)))


@functools.lru_cache(maxsize=16)
def _malignant_index(dx_classes: tuple[str, ...]) -> tuple[int, ...]:
    index = tuple(i for i, dx in enumerate(dx_classes) if dx in MALIGNANT_DX)
    if not any(dx_classes[i] == "mel" for i in index):
        raise ValueError(f"expected dermoscopy labels that include 'mel', got {list(dx_classes)[:10]}")
    return index


def malignant_probability(dx_probabilities: np.ndarray, dx_classes: Sequence[str] = DX_CLASSES) -> np.ndarray:
    """Probability that the lesion is malignant (mel + bcc + akiec, or mel + bcc + ak + scc), shape (...,)."""
    probs = np.asarray(dx_probabilities, dtype=np.float32)
    return probs[..., list(_malignant_index(tuple(dx_classes)))].sum(axis=-1)


def dx_index_to_group_index(dx_index: np.ndarray, dx_classes: Sequence[str] = DX_CLASSES) -> np.ndarray:
    """Map integer dx labels to integer group labels."""
    lookup = np.array([GROUPS.index(DX_TO_GROUP[dx]) for dx in dx_classes])
    return lookup[np.asarray(dx_index)]


# -- referral: product logic on the label views ---------------------------------------------------------


def refer_rule(threshold: float | None) -> str:
    """The referral rule in words (also written into evaluation reports)."""
    if threshold is None:
        return "most probable group is malignant (Melanoma, BCC or SCC); the model has no triage threshold"
    return f"malignant probability (mel + bcc + scc + ak, i.e. akiec) >= {threshold:g}"


def refer_decision(dx_probabilities: np.ndarray, dx_labels: Sequence[str], threshold: float | None) -> np.ndarray:
    """Whether each lesion should be referred to a doctor, shape (...,) bool.

    With a triage ``threshold`` (the spec's ``triage.malignant_threshold``, chosen on validation for a
    sensitivity of at least 0.85): malignant probability >= threshold. Without one: the most probable of
    the 4 groups is not Benign.
    """
    probs = np.asarray(dx_probabilities, dtype=np.float32)
    if threshold is not None:
        return malignant_probability(probs, dx_labels) >= np.float32(threshold)
    groups = to_groups(probs, dx_labels)
    return groups.argmax(axis=-1) != GROUPS.index("Benign")
