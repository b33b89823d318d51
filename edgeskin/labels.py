"""Class views of the product: the 7 HAM10000 diagnoses and the 4 clinical groups.

A group's probability is the sum of the probabilities of its diagnoses. Malignant = mel + bcc + akiec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

DX_CLASSES: tuple[str, ...] = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
DX_NAMES: Mapping[str, str] = {
    "akiec": "Actinic keratosis / intraepithelial carcinoma",
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
    "bkl": "Benign",
    "df": "Benign",
    "nv": "Benign",
    "vasc": "Benign",
}
MALIGNANT_DX: tuple[str, ...] = ("akiec", "bcc", "mel")
# Column order of the ISIC 2018 Task 3 ground-truth CSV.
ISIC2018_COLUMNS: tuple[str, ...] = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")


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
    return probs @ group_matrix(dx_classes)


def malignant_probability(dx_probabilities: np.ndarray, dx_classes: Sequence[str] = DX_CLASSES) -> np.ndarray:
    """Probability that the lesion is malignant (mel + bcc + akiec), shape (...,)."""
    probs = np.asarray(dx_probabilities, dtype=np.float32)
    idx = [list(dx_classes).index(dx) for dx in MALIGNANT_DX]
    return probs[..., idx].sum(axis=-1)


def dx_index_to_group_index(dx_index: np.ndarray, dx_classes: Sequence[str] = DX_CLASSES) -> np.ndarray:
    """Map integer dx labels to integer group labels."""
    lookup = np.array([GROUPS.index(DX_TO_GROUP[dx]) for dx in dx_classes])
    return lookup[np.asarray(dx_index)]
