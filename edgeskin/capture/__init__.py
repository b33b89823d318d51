"""Cameras, videos and image folders as frame sources, the quality gate, the live loop and the kiosk.

Names are imported on first use, so ``import edgeskin.capture`` does not import OpenCV until needed and
never imports picamera2 or Tkinter (those load inside the functions that need them).
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module (relative to this package)
_EXPORTS: dict[str, str] = {
    "Frame": "sources",
    "FrameSource": "sources",
    "CameraLostError": "sources",
    "Picamera2Source": "sources",
    "OpenCVSource": "sources",
    "ImageFolderSource": "sources",
    "open_source": "sources",
    "QualityGate": "quality",
    "QualityReport": "quality",
    "QualityThresholds": "quality",
    "assess_quality": "quality",
    "LiveLoop": "live",
    "LiveFrame": "live",
    "LiveSummary": "live",
    "StillAnalysis": "live",
    "DiagnosisSmoother": "live",
    "KioskApp": "kiosk",
    "run_kiosk": "kiosk",
}


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = list(_EXPORTS)
