"""Cameras, videos and image folders as frame sources, the quality gate, the live loop and the kiosk.

Names are imported on first use, so ``import edgeskin.capture`` does not import OpenCV until needed and
never imports picamera2 or Tkinter (those load inside the functions that need them).
"""

from __future__ import annotations

from edgeskin._lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
