"""The progress bar of long loops: ``edgeskin evaluate`` and the training data builders."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def progress(
    items: Iterable[T],
    description: str,
    *,
    total: int | None = None,
    unit: str = "it",
    enabled: bool | None = None,
    min_interval: float = 0.1,
) -> Iterable[T]:
    """``items`` with a tqdm bar on stderr, or ``items`` themselves when tqdm is not installed (it is optional).

    Args:
        items: What to iterate over.
        description: The bar's label.
        total: The number of items, when ``items`` has no length.
        unit: What one item is ("img").
        enabled: None: a bar only when stderr is a terminal; True: always (e.g. into a log file); False: never.
        min_interval: Seconds between redraws (a few seconds keep a log file short).
    """
    try:
        from tqdm import tqdm
    except ModuleNotFoundError as exc:
        if exc.name != "tqdm":
            raise  # a broken tqdm is an error, not a missing bar
        return items
    return tqdm(
        items,
        desc=description,
        total=total,
        unit=unit,
        file=sys.stderr,
        disable=None if enabled is None else not enabled,
        mininterval=min_interval,
        leave=False,
    )
